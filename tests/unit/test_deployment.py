"""The deployment description: what it accepts and refuses, and how
`streamcart up` and the pool follow it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamcart import cli
from streamcart.bus import pool
from streamcart.bus.loader import SHOP
from streamcart.bus.pool import DEFAULT_CONCURRENCY, Pool
from streamcart.deployment import ServiceDeployment, load_deployment
from streamcart.errors import ConfigurationError
from tests.unit.support import UpRecorder, record_up

NO_REDIS = "redis://127.0.0.1:1/0"  # `up` must be stopped before it reaches Redis
TWO_SERVICES = """
monitor = false

[gateway]
port = 9100

[services.orders]
processes = 3
concurrency = 8

[services.users]
concurrency = 16
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    return path


# -- the description ---------------------------------------------------------------
def test_the_shipped_description_runs_every_shop_service_once_with_32_handlers() -> None:
    deployment = load_deployment()
    assert list(deployment.services) == list(SHOP)
    for plan in deployment.services.values():
        assert (plan.processes, plan.concurrency) == (1, 32)
        assert plan.min_replicas <= plan.max_replicas
    assert deployment.monitor is True
    assert deployment.gateway.port == 8080


def test_a_description_keeps_its_order_and_fills_in_defaults(tmp_path: Path) -> None:
    deployment = load_deployment(_file(tmp_path, TWO_SERVICES))
    assert list(deployment.services) == ["orders", "users"]
    assert deployment.services["orders"].processes == 3
    assert deployment.services["users"] == ServiceDeployment(concurrency=16)
    assert deployment.monitor is False
    assert (deployment.gateway.port, deployment.gateway.replicas) == (9100, 2)


def test_a_module_spec_is_a_service_too(tmp_path: Path) -> None:
    path = _file(tmp_path, '[services."streamcart.examples.counter:build"]\nprocesses = 2\n')
    deployment = load_deployment(path)
    assert deployment.services["streamcart.examples.counter:build"].processes == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[services.orders\n", "not valid TOML"),
        (
            "[services.orders]\nprocs = 2\n",
            "services.orders: unknown field `procs`; the fields are: processes, concurrency",
        ),
        ("[services.orders]\nprocesses = 0\n", "services.orders.processes: Expected `int` >= 1"),
        ('[services.orders]\nprocesses = "2"\n', "services.orders.processes: Expected `int`"),
        (
            "[services.orders]\nmin_replicas = 5\nmax_replicas = 2\n",
            "services.orders: min_replicas (5) is above max_replicas (2)",
        ),
        ("[gateway]\nprot = 1\n", "gateway: unknown field `prot`; the fields are: replicas, port"),
        ("monitr = 1\n", "unknown field `monitr`; the fields are: services, gateway, monitor"),
        ("[services.ordres]\n", "unknown service 'ordres' in [services]: use one of analytics,"),
        ('[services."nosuch.module:svc"]\n', "cannot import 'nosuch.module'"),
        ("monitor = true\n", "missing the required field `services`"),
        ("[services]\n", "[services] is empty"),
    ],
)
def test_mistakes_name_the_file_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        load_deployment(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


# -- `streamcart up` -----------------------------------------------------------------
@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> UpRecorder:
    return record_up(monkeypatch)


def _up(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["--redis-url", NO_REDIS, "up", *args], env=env)
    return result.exit_code, result.output


def test_up_builds_its_pool_and_helpers_from_the_description(
    recorder: UpRecorder, tmp_path: Path
) -> None:
    code, out = _up("--deployment", str(_file(tmp_path, TWO_SERVICES)))
    assert code == 0, out
    [built] = recorder.pools
    assert built["services"] == {"orders": 3, "users": 1}
    assert built["concurrency"] == {"orders": 8, "users": 16}
    assert [h["name"] for h in recorder.helpers] == ["gateway"]  # the file turns the monitor off
    assert recorder.helpers[0]["args"][3] == 9100  # (url, namespace, host, port, level)
    assert "services: orders, users" in out and "http://127.0.0.1:9100" in out


def test_up_options_override_the_description(recorder: UpRecorder, tmp_path: Path) -> None:
    path = _file(tmp_path, TWO_SERVICES)
    code, out = _up("-p", "2", "--port", "9200", env={"STREAMCART_DEPLOYMENT": str(path)})
    assert code == 0, out
    [built] = recorder.pools
    assert built["services"] == {"orders": 2, "users": 2}
    assert built["concurrency"] == {"orders": 8, "users": 16}  # -p leaves concurrency alone
    assert recorder.helpers[0]["args"][3] == 9200


def test_up_without_a_description_runs_the_whole_shop(recorder: UpRecorder) -> None:
    code, out = _up()
    assert code == 0, out
    [built] = recorder.pools
    assert built["services"] == dict.fromkeys(SHOP, 1)
    assert built["concurrency"] == dict.fromkeys(SHOP, 32)
    assert sorted(h["name"] for h in recorder.helpers) == ["gateway", "monitor"]


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("[services.orders\n", "not valid TOML"),
        ("[services.orders]\nthreads = 4\n", "unknown field `threads`"),
        ("[services.nosuch]\n", "unknown service 'nosuch'"),
    ],
)
def test_up_refuses_a_bad_description_before_starting_anything(
    recorder: UpRecorder, tmp_path: Path, text: str, hint: str
) -> None:
    code, out = _up("--deployment", str(_file(tmp_path, text)))
    assert code == 2
    assert "Invalid value for '--deployment'" in out and hint in out
    assert recorder.pools == [] and recorder.helpers == []


# -- the pool --------------------------------------------------------------------
def test_each_pool_child_gets_its_services_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[Any, ...]] = []

    class Context:
        def Process(self, *, target: Any, args: tuple[Any, ...], name: str) -> _Started:
            started.append(args)
            return _Started()

    monkeypatch.setattr(pool, "_SPAWN", Context())
    workers = Pool(
        {"orders": 2, "users": 1, "cart": 1},
        NO_REDIS,
        concurrency={"orders": 8, "users": 64},
        entry=lambda *args: None,
    )
    for slot in workers.slots:
        workers._start(slot)
    # Child args: (spec, redis_url, namespace, concurrency, token, level, metrics).
    assert [(args[0], args[3]) for args in started] == [
        ("orders", 8),
        ("orders", 8),
        ("users", 64),
        ("cart", DEFAULT_CONCURRENCY),
    ]
    assert Pool({"x": 1}, NO_REDIS, concurrency=5, entry=lambda *a: None).concurrency_of("x") == 5


class _Started:
    pid = 1

    def start(self) -> None:
        pass
