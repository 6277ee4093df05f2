"""Start-up safety: the server must not evict the bus; timeouts outlast blocking reads."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ResponseError

from streamcart.bus.connection import connect
from streamcart.bus.options import ServiceOptions
from streamcart.bus.preflight import check_server
from streamcart.errors import ConfigurationError


class Server:
    """Stands in for a client: answers INFO and CONFIG GET."""

    def __init__(self, version: str, policy: str | None) -> None:
        self.version = version
        self.policy = policy

    async def info(self, section: str) -> dict[str, Any]:
        return {"redis_version": self.version}

    async def config_get(self, name: str) -> dict[str, str]:
        if self.policy is None:
            raise ResponseError("unknown command 'CONFIG'")
        return {name: self.policy}


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_an_evicting_server_is_refused(policy: str) -> None:
    with pytest.raises(ConfigurationError, match="Set it to noeviction"):
        await check_server(Server("7.2.4", policy))  # type: ignore[arg-type]


async def test_an_old_server_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"needs 7\.0 or newer"):
        await check_server(Server("6.2.14", "noeviction"))  # type: ignore[arg-type]


async def test_a_safe_server_passes_and_a_locked_config_only_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await check_server(Server("7.0.15", "noeviction"))  # type: ignore[arg-type]
    await check_server(Server("8.0.0", None))  # type: ignore[arg-type]
    assert "make sure it is noeviction" in caplog.text


async def test_the_socket_timeout_outlasts_the_blocking_read() -> None:
    options = ServiceOptions(block_ms=5_000)
    client = connect("redis://127.0.0.1:1/0", options=options)
    try:
        timeout = client.connection_pool.connection_kwargs["socket_timeout"]
        assert timeout > options.block_ms / 1000
    finally:
        await client.aclose()
