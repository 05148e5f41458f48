"""Secrets from files (``X_FILE``), as Docker secrets and Kubernetes volumes mount them."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ConfigError, load_settings, secrets_from_files


def test_unset_variable_is_read_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "service-token"
    secret.write_text("a-token-of-sixteen-or-more\n")
    env = {"RECKON_SERVICE_TOKEN_FILE": str(secret)}
    secrets_from_files(["RECKON_SERVICE_TOKEN", "DATABASE_URL"], env)
    assert env["RECKON_SERVICE_TOKEN"] == "a-token-of-sixteen-or-more"


def test_a_set_variable_wins_over_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "service-token"
    secret.write_text("from-the-file")
    env = {"RECKON_SERVICE_TOKEN": "from-the-env", "RECKON_SERVICE_TOKEN_FILE": str(secret)}
    secrets_from_files(["RECKON_SERVICE_TOKEN", "DATABASE_URL"], env)
    assert env["RECKON_SERVICE_TOKEN"] == "from-the-env"


def test_an_unreadable_file_names_the_variable(tmp_path: Path) -> None:
    env = {"DATABASE_URL_FILE": str(tmp_path / "missing")}
    with pytest.raises(ConfigError, match="DATABASE_URL_FILE: cannot read"):
        secrets_from_files(["RECKON_SERVICE_TOKEN", "DATABASE_URL"], env)


def test_other_programs_file_variables_are_left_alone(tmp_path: Path) -> None:
    env = {"TF_CLI_CONFIG_FILE": str(tmp_path / "missing")}
    secrets_from_files(["RECKON_SERVICE_TOKEN"], env)
    assert env == {"TF_CLI_CONFIG_FILE": str(tmp_path / "missing")}


def test_settings_read_the_token_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.accounts.config import AccountsSettings

    secret = tmp_path / "service-token"
    secret.write_text("token-from-a-mounted-secret\n")
    monkeypatch.delenv("RECKON_SERVICE_TOKEN", raising=False)
    monkeypatch.setenv("RECKON_SERVICE_TOKEN_FILE", str(secret))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings(AccountsSettings)
    assert settings.service_token.get_secret_value() == "token-from-a-mounted-secret"
