#!/usr/bin/env bash
# Contract checks for protos/ with buf, offline.
#
#   bash tools/buf.sh lint       buf lint (rules in buf.yaml: STANDARD)
#   bash tools/buf.sh breaking   buf breaking against main (see "Against what" below)
#   bash tools/buf.sh            both
#   bash tools/buf.sh setup      only install buf (make setup), so that
#                                `node_modules/.bin/buf lint` and `buf generate`
#                                (buf.gen.yaml) work at the repository root; a
#                                warning, not a failure, without npm
#
# Exits non-zero when buf finds a problem (or cannot run).
#
# buf comes from npm (@bufbuild/buf, version pinned by package.json and
# package-lock.json), installed with `npm ci` into ./node_modules on first use.
#
# Imports: buf cannot fetch buf.build/googleapis/googleapis here (no network to
# the BSR), so each check runs on a temporary copy of the workspace:
#   $tmp/buf.yaml                  the committed buf.yaml
#   $tmp/protos/                   our protos (working tree, or a git revision)
#   $tmp/third_party/googleapis/   google/type, google/rpc, google/api ... .proto
#                                  from the installed googleapis-common-protos
#                                  (the same files tools/gen_protos.py compiles
#                                  against); buf.yaml excludes them from lint and
#                                  breaking.
# google/protobuf/*.proto (well-known types) are buf's own copies.
#
# Against what ("buf breaking against main"), first match wins:
#   1. BUF_AGAINST=<git revision> if set (e.g. CI that knows the previous main).
#   2. On a branch (HEAD is not main's tip; main = origin/main, else local main):
#      the merge-base of HEAD and main, so only this branch's changes count, not
#      main's newer ones. Uncommitted changes count too.
#   3. On main with uncommitted changes under protos/: HEAD.
#   4. On main with a clean protos/ (CI in a fresh clone of main): the parent of
#      the last commit that changed protos/, i.e. that change is checked again.
#      A fresh clone cannot know where the previous push ended, so an earlier
#      breaking commit in the same push is caught only by rules 1-3.
#   Nothing to compare (no protos/ at the chosen revision, or protos/ first
#   appeared in the root commit): breaking passes trivially and says so.
#   Shallow clone without the needed history: fails, asking for more history.
#
# Environment: PYTHON (interpreter with googleapis-common-protos; default
# .venv/bin/python, else python3), BUF_AGAINST (see above).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUF="$ROOT/node_modules/.bin/buf"

die() { echo "buf.sh: $*" >&2; exit 2; }

ensure_buf() {
    command -v npm >/dev/null || die "npm is needed to install @bufbuild/buf (apt-get install nodejs npm)"
    local want have=""
    want=$(node -p "require('./package-lock.json').packages['node_modules/@bufbuild/buf'].version") \
        || die "cannot read the pinned @bufbuild/buf version from package-lock.json"
    [[ -x "$BUF" ]] && have=$("$BUF" --version 2>/dev/null || true)
    if [[ "$have" != "$want" ]]; then
        echo "buf.sh: installing @bufbuild/buf $want from npm (npm ci)" >&2
        npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed"
        have=$("$BUF" --version) || die "buf did not install"
        [[ "$have" == "$want" ]] || die "installed buf $have, expected $want"
    fi
}

python_bin() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"
    else echo python3
    fi
}

# Copies the .proto files of googleapis-common-protos (never google/protobuf, which
# is buf's) into $1/third_party/googleapis.
vendor_googleapis() {
    "$(python_bin)" - "$1/third_party/googleapis" <<'PY' || die "googleapis-common-protos not importable (run make setup, or set PYTHON)"
import shutil
import sys
from importlib.metadata import distribution
from pathlib import Path

target = Path(sys.argv[1])
dist = distribution("googleapis-common-protos")
copied = 0
for entry in dist.files or ():
    name = str(entry)
    if name.endswith(".proto") and name.startswith("google/") and not name.startswith("google/protobuf/"):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dist.locate_file(entry), destination)
        copied += 1
if not copied:
    sys.exit("no .proto files in googleapis-common-protos")
PY
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/reckon-buf.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# workspace DIR SOURCE: SOURCE is "worktree" or a git revision. Returns 1 when that
# revision has no protos/.
workspace() {
    local dir=$1 source=$2
    mkdir -p "$dir"
    cp buf.yaml "$dir/buf.yaml"
    if [[ "$source" == worktree ]]; then
        cp -R protos "$dir/protos"
    else
        git cat-file -e "$source:protos" 2>/dev/null || return 1
        git archive --format=tar "$source" protos | tar -x -C "$dir"
    fi
    find "$dir/protos" -name '*.proto' | grep -q . || return 1
    if [[ -d "$TMP/googleapis-cache" ]]; then
        cp -R "$TMP/googleapis-cache" "$dir/third_party"
    else
        vendor_googleapis "$dir"
        cp -R "$dir/third_party" "$TMP/googleapis-cache"
    fi
}

main_ref() {
    local ref
    for ref in refs/remotes/origin/main refs/heads/main; do
        if git rev-parse -q --verify "$ref^{commit}" >/dev/null; then echo "$ref"; return; fi
    done
}

need_history() {
    if [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
        die "shallow clone: cannot find $1; fetch more history (git fetch --unshallow) or set BUF_AGAINST"
    fi
    die "cannot find $1"
}

# Prints "<revision> <why>" for breaking, or nothing when there is nothing to compare.
against() {
    if [[ -n "${BUF_AGAINST:-}" ]]; then
        git rev-parse -q --verify "$BUF_AGAINST^{commit}" >/dev/null || need_history "BUF_AGAINST=$BUF_AGAINST"
        echo "$BUF_AGAINST BUF_AGAINST"
        return
    fi
    git rev-parse -q --verify 'HEAD^{commit}' >/dev/null || return 0 # no commits yet
    local main head base last
    main=$(main_ref)
    head=$(git rev-parse HEAD)
    if [[ -n "$main" && "$(git rev-parse "$main")" != "$head" ]]; then
        base=$(git merge-base HEAD "$main") || need_history "the merge-base of HEAD and $main"
        echo "$base merge-base of HEAD and ${main#refs/*/}"
    elif [[ -n "$(git status --porcelain --untracked-files=all -- protos)" ]]; then
        echo "HEAD HEAD (uncommitted changes under protos/)"
    else
        last=$(git rev-list -1 HEAD -- protos)
        [[ -n "$last" ]] || return 0
        if git rev-parse -q --verify "$last^" >/dev/null; then
            echo "$last^ parent of $(git rev-parse --short "$last"), the last commit that changed protos/"
        elif [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
            need_history "the parent of $last"
        fi # else protos/ arrived with the root commit: nothing before it
    fi
}

run_lint() {
    ensure_buf
    workspace "$TMP/current" worktree || die "no .proto files under protos/"
    echo "buf lint (STANDARD, buf.yaml) on protos/" >&2
    (cd "$TMP/current" && "$BUF" lint)
    echo "buf lint: ok" >&2
}

run_breaking() {
    ensure_buf
    local spec revision why
    spec=$(against)
    if [[ -z "$spec" ]]; then
        echo "buf breaking: nothing to compare against (no earlier protos/); ok" >&2
        return 0
    fi
    revision=${spec%% *}
    why=${spec#* }
    [[ -d "$TMP/current" ]] || workspace "$TMP/current" worktree || die "no .proto files under protos/"
    if ! workspace "$TMP/against" "$revision"; then
        echo "buf breaking: $why has no protos/; nothing to break; ok" >&2
        return 0
    fi
    echo "buf breaking (buf.yaml) against $(git rev-parse --short "$revision"): $why" >&2
    (cd "$TMP/current" && "$BUF" breaking . --against "$TMP/against")
    echo "buf breaking: ok" >&2
}

case "${1:-all}" in
    setup)
        if command -v npm >/dev/null; then ensure_buf; else
            echo "buf.sh: no npm, buf not installed (apt-get install nodejs npm)" >&2
        fi
        ;;
    lint) run_lint ;;
    breaking) run_breaking ;;
    all) run_lint && run_breaking ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "usage: bash tools/buf.sh [lint|breaking|all]" ;;
esac
