"""Pure pieces of the suite runner: registry, service environment, token file, suite.json."""

from __future__ import annotations

import itertools
import stat
from pathlib import Path

import pytest

from suite.environment import AddressError, build_service_env, dial_address, plan_addresses
from suite.service_token import TokenError, load_or_create_token
from suite.services import REGISTRY, UnknownServiceError, available_services, select_services
from suite.state import ServiceRecord, SuiteState, read_state, remove_state, write_state


def built(*names: str):
    return lambda module: module.removeprefix("services.") in names


# --- registry ---------------------------------------------------------------------------


def test_only_services_whose_code_exists_are_started_in_registry_order() -> None:
    specs = available_services(built("charging", "accounts"))
    assert [spec.name for spec in specs] == ["accounts", "charging"]
    assert specs[0].module == "services.accounts"
    assert specs[0].default_port == 50051


def test_registry_covers_every_service_of_the_architecture() -> None:
    assert {spec.name for spec in REGISTRY} == {
        "accounts",
        "rating",
        "charging",
        "invoicing",
        "payments",
        "dunning",
        "notifications",
        "gateway",
    }


def test_requested_subset_keeps_start_order() -> None:
    probe = built("accounts", "rating", "charging")
    chosen = select_services(["charging", " Accounts "], probe)
    assert [spec.name for spec in chosen] == ["accounts", "charging"]
    assert select_services(None, probe) == select_services([], probe)


def test_unknown_or_unbuilt_service_is_refused_by_name() -> None:
    with pytest.raises(UnknownServiceError, match=r"unknown service.*billing"):
        select_services(["billing"], built("accounts"))
    with pytest.raises(UnknownServiceError, match="not built yet: dunning"):
        select_services(["dunning"], built("accounts"))


def test_the_real_probe_does_not_find_a_service_that_is_not_built() -> None:
    from suite.services import module_runnable

    assert not module_runnable("services.no_such_service")
    assert not module_runnable("services.common")  # a package, but nothing to run


# --- addresses and environment ----------------------------------------------------------


def test_default_ports_free_ports_and_listen_overrides() -> None:
    specs = available_services(built("accounts", "rating"))
    ports = itertools.count(61000)
    assert plan_addresses(specs, {}, free_ports=False, pick_port=lambda: next(ports)) == {
        "accounts": "127.0.0.1:50051",
        "rating": "127.0.0.1:50052",
    }
    assert plan_addresses(specs, {}, free_ports=True, pick_port=lambda: next(ports)) == {
        "accounts": "127.0.0.1:61000",
        "rating": "127.0.0.1:61001",
    }
    overridden = plan_addresses(
        specs,
        {"ACCOUNTS_LISTEN": "127.0.0.1:7000", "RATING_LISTEN": "127.0.0.1:0"},
        free_ports=False,
        pick_port=lambda: 7001,
    )
    assert overridden == {"accounts": "127.0.0.1:7000", "rating": "127.0.0.1:7001"}


def test_malformed_listen_override_names_the_variable() -> None:
    with pytest.raises(AddressError, match="ACCOUNTS_LISTEN"):
        plan_addresses(
            available_services(built("accounts")),
            {"ACCOUNTS_LISTEN": "nowhere"},
            free_ports=False,
            pick_port=lambda: 1,
        )


def test_wildcard_listen_is_dialled_on_loopback() -> None:
    assert dial_address("0.0.0.0:50051") == "127.0.0.1:50051"
    assert dial_address("127.0.0.1:50051") == "127.0.0.1:50051"


def _env(environ: dict[str, str], receiver: str | None) -> dict[str, str]:
    specs = available_services(built("accounts", "rating"))
    return build_service_env(
        specs[0],
        environ=environ,
        token="t" * 20,
        redis_url="redis://127.0.0.1:1/0",
        data_dir=Path("/srv/reckon"),
        addresses={"accounts": "127.0.0.1:50051", "rating": "0.0.0.0:50052"},
        receiver_endpoint=receiver,
        code_root=Path("/code"),
    )


def test_service_env_carries_token_redis_listen_and_every_peer_address() -> None:
    env = _env({"PATH": "/bin", "DATABASE_URL": "postgresql://db/x", "PYTHONPATH": "/extra"}, None)
    assert env["RECKON_SERVICE_TOKEN"] == "t" * 20
    assert env["REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["RECKON_DATA_DIR"] == "/srv/reckon"
    assert env["ACCOUNTS_LISTEN"] == "127.0.0.1:50051"
    assert "RATING_LISTEN" not in env  # each service is told only where it listens itself
    assert env["ACCOUNTS_ADDR"] == "127.0.0.1:50051"
    assert env["RATING_ADDR"] == "127.0.0.1:50052"
    assert env["DATABASE_URL"] == "postgresql://db/x"  # passed through when the user set it
    assert env["PATH"] == "/bin"
    assert env["PYTHONPATH"].split(":") == ["/code", "/extra"]
    assert env["OTEL_SERVICE_NAME"] == "reckon-accounts"


def test_without_database_url_services_fall_back_to_their_sqlite_file() -> None:
    assert "DATABASE_URL" not in _env({}, None)


def test_embedded_receiver_gets_spans_promptly_and_no_metrics() -> None:
    env = _env({"OTEL_SERVICE_NAME": "everything"}, "http://127.0.0.1:4317")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
    assert env["OTEL_EXPORTER_OTLP_INSECURE"] == "true"
    assert env["OTEL_BSP_SCHEDULE_DELAY"] == "200"
    assert env["OTEL_METRICS_EXPORTER"] == "none"
    assert env["OTEL_SERVICE_NAME"] == "reckon-accounts"


def test_external_collector_settings_pass_through() -> None:
    env = _env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"}, None)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert "OTEL_METRICS_EXPORTER" not in env
    assert "OTEL_BSP_SCHEDULE_DELAY" not in env


# --- token ------------------------------------------------------------------------------


def test_token_is_generated_once_owner_only_and_reused(tmp_path: Path) -> None:
    first = load_or_create_token(tmp_path, {})
    assert first.path == tmp_path / "service-token"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert len(first.value) >= 32
    again = load_or_create_token(tmp_path, {})
    assert again.value == first.value


def test_loosened_token_file_is_tightened_again(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path, {})
    assert token.path is not None
    token.path.chmod(0o644)
    load_or_create_token(tmp_path, {})
    assert stat.S_IMODE(token.path.stat().st_mode) == 0o600


def test_token_from_environment_wins_and_is_not_written(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path, {"RECKON_SERVICE_TOKEN": "from-env-0123456789"})
    assert token.value == "from-env-0123456789"
    assert token.path is None
    assert not (tmp_path / "service-token").exists()


def test_short_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="at least 16"):
        load_or_create_token(tmp_path, {"RECKON_SERVICE_TOKEN": "short"})


# --- suite.json -------------------------------------------------------------------------


def _state(tmp_path: Path, pid: int = 4242) -> SuiteState:
    return SuiteState(
        data_dir=str(tmp_path),
        supervisor_pid=pid,
        started_at="2026-01-01T00:00:00+00:00",
        redis_url="redis://127.0.0.1:6400/0",
        redis_pid=77,
        token_file=str(tmp_path / "service-token"),
        trace_receiver="127.0.0.1:4317",
        otlp_endpoint="http://127.0.0.1:4317",
        traces_file=str(tmp_path / "traces.jsonl"),
        services=[ServiceRecord("accounts", "127.0.0.1:50051", 99, "logs/accounts.log")],
    )


def test_suite_state_round_trips_and_holds_no_token(tmp_path: Path) -> None:
    load_or_create_token(tmp_path, {})
    state = _state(tmp_path)
    path = write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert state.address_of("accounts") == "127.0.0.1:50051"
    assert state.token() not in path.read_text()


def test_suite_json_of_another_supervisor_is_left_alone(tmp_path: Path) -> None:
    write_state(tmp_path, _state(tmp_path, pid=1))
    remove_state(tmp_path, supervisor_pid=2)
    assert read_state(tmp_path).supervisor_pid == 1
    remove_state(tmp_path, supervisor_pid=1)
    assert not (tmp_path / "suite.json").exists()


def test_token_from_environment_must_be_given_to_clients_too(tmp_path: Path) -> None:
    from suite.state import SuiteStateError

    state = SuiteState(**{**_state(tmp_path).__dict__, "token_file": None})
    with pytest.raises(SuiteStateError, match="RECKON_SERVICE_TOKEN"):
        state.token({})
    assert state.token({"RECKON_SERVICE_TOKEN": "x" * 16}) == "x" * 16
