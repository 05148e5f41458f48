"""``RATING_ADDR`` names one rating or several replicas as a gRPC target (ADR 0052)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from services.charging.config import ChargingSettings


def settings(rating_addr: str) -> ChargingSettings:
    return ChargingSettings(
        service_token=SecretStr("test-service-token-0123456789"),
        redis_url="redis://127.0.0.1:6379/0",
        rating_addr=rating_addr,
    )


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:50052", "ipv4:127.0.0.1:50052,127.0.0.1:50062", "dns:///rating:50052"],
)
def test_one_address_or_a_target_naming_replicas(target: str) -> None:
    assert settings(target).rating_addr == target


@pytest.mark.parametrize("target", ["rating", "ipv4:127.0.0.1:50052,127.0.0.1:x"])
def test_a_target_without_a_port_is_refused(target: str) -> None:
    with pytest.raises(ValidationError, match=r"rating_addr|RATING_ADDR"):
        settings(target)
