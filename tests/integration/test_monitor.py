"""`streamcart monitor` against live workers: alerts in the stream and at a webhook."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from streamcart.cli import main
from tests.integration.support import child_env, cli, poll_until
from tests.webhook import Receiver, webhook

pytestmark = pytest.mark.chaos


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with webhook(fail_first=0) as receiver:
        yield receiver


def _config(url: str, namespace: str, *args: str) -> None:
    result = CliRunner().invoke(
        main, ["--redis-url", url, "--namespace", namespace, "config", *args]
    )
    assert result.exit_code == 0, result.output


def _alerts(client: redis.Redis, namespace: str) -> list[dict[str, object]]:
    entries = client.xrange(f"{namespace}:events:system")
    return [json.loads(f["data"]) for _, f in entries if f["type"] == "system.alert"]


def test_failing_handlers_and_lag_raise_alerts_at_the_webhook(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path, hook: Receiver
) -> None:
    for key, value in (("interval_s", "0.5"), ("min_errors", "3"), ("error_rate", "0.3"),
                       ("lag", "20"), ("webhook_url", hook.url)):  # fmt: skip
        _config(redis_url, namespace, "set", "monitor", key, value)
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp_path / "procs.log", "wb")  # noqa: SIM115
    try:
        for args in (("worker", "tests.integration.services:fast_counter"), ("monitor",)):
            procs.append(subprocess.Popen(cli(redis_url, namespace, *args), env=child_env(),
                                          stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        inbox = f"{namespace}:inbox:counter"
        poll_until(lambda: sync_redis.exists(f"{namespace}:services") == 1, what="registration")
        for i in range(10):  # always failing: the error rate goes to 100%
            sync_redis.xadd(inbox, {"type": "counter.fail", "data": f'{{"name": "f{i}"}}'})

        def alerted(kind: str) -> bool:
            return any(a["kind"] == kind for a in _alerts(sync_redis, namespace))

        poll_until(lambda: alerted("error_rate"), within=30, what="an error-rate alert")

        procs[0].terminate()  # no worker left: what arrives now is lag
        assert procs[0].wait(30) == 0
        for _ in range(30):
            sync_redis.xadd(inbox, {"type": "counter.increment", "data": '{"name": "x"}'})
        poll_until(lambda: alerted("lag"), within=30, what="a lag alert")

        def posted() -> bool:
            kinds = {body["alert"]["kind"] for body in hook.received}  # type: ignore[index]
            return kinds >= {"error_rate", "lag"}

        poll_until(posted, within=15, what="both alerts at the webhook")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    [rate] = [a for a in _alerts(sync_redis, namespace) if a["kind"] == "error_rate"][:1]
    assert rate["severity"] == "critical" and rate["service"] == "counter"
