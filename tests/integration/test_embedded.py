"""The embedded server: it starts, is found, persists through restarts and stays local."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streamcart.bus.embedded import EmbeddedRedis, default_data_dir, ensure_embedded
from streamcart.errors import ConfigurationError, RedisUnavailableError

pytestmark = [pytest.mark.integration, pytest.mark.standalone]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(tmp_path / "data")
    try:
        yield embedded
    finally:
        embedded.stop()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_started_server_answers_and_publishes_its_url(server: EmbeddedRedis) -> None:
    url = server.start(daemonize=False)

    assert url.startswith("redis://127.0.0.1:")
    assert url.endswith("/0")
    assert server.url == url
    assert (server.data_dir / "redis.url").read_text().strip() == url
    with _client(url) as client:
        assert client.ping()


def test_running_url_finds_the_server_until_it_stops(server: EmbeddedRedis) -> None:
    assert server.running_url() is None
    url = server.start(daemonize=False)

    assert EmbeddedRedis(server.data_dir).running_url() == url

    server.stop()
    assert server.running_url() is None
    assert not (server.data_dir / "redis.url").exists()


def test_daemonized_server_is_stopped_from_its_pid_file(tmp_path: Path) -> None:
    starter = EmbeddedRedis(tmp_path, appendonly=False)
    url = starter.start(daemonize=True)
    try:
        assert (tmp_path / "redis.pid").exists()
        assert (tmp_path / "redis.log").exists()

        EmbeddedRedis(tmp_path).stop()

        assert starter.running_url() is None
        assert not (tmp_path / "redis.pid").exists()
        with _client(url) as client, pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        starter.stop()


@pytest.mark.parametrize("daemonize", [False, True], ids=["child", "daemon"])
def test_data_survives_a_graceful_restart_with_aof(tmp_path: Path, daemonize: bool) -> None:
    first = EmbeddedRedis(tmp_path)
    url = first.start(daemonize=daemonize)
    with _client(url) as client:
        client.set("greeting", "hello")
        client.xadd("orders", {"id": "1"})
    first.stop()

    second = EmbeddedRedis(tmp_path, port=_port(url))
    try:
        assert second.start(daemonize=daemonize) == url
        with _client(url) as client:
            assert client.get("greeting") == "hello"
            assert client.xlen("orders") == 1
    finally:
        second.stop()


def test_listens_on_localhost_only_and_never_evicts(server: EmbeddedRedis) -> None:
    url = server.start(daemonize=False)

    with _client(url) as client:
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("save") == {"save": ""}


@pytest.mark.parametrize(("told", "fsync"), [(None, "always"), ("everysec", "everysec")])
def test_the_aof_is_fsynced_before_every_reply_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, told: str | None, fsync: str
) -> None:
    if told is None:
        monkeypatch.delenv("STREAMCART_APPENDFSYNC", raising=False)
    else:
        monkeypatch.setenv("STREAMCART_APPENDFSYNC", told)
    embedded = EmbeddedRedis(tmp_path)
    try:
        with _client(embedded.start(daemonize=False)) as client:
            config = client.config_get("append*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", fsync)
    finally:
        embedded.stop()


def test_an_unknown_fsync_policy_is_refused_before_any_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMCART_APPENDFSYNC", "sometimes")
    embedded = EmbeddedRedis(tmp_path)
    try:
        with pytest.raises(ConfigurationError, match=r"STREAMCART_APPENDFSYNC='sometimes'.*always"):
            embedded.start(daemonize=False)
        assert not (tmp_path / "redis.pid").exists()
    finally:
        embedded.stop()  # stopping needs no valid policy


def test_start_refuses_a_second_server_on_the_same_directory(server: EmbeddedRedis) -> None:
    server.start(daemonize=False)

    with pytest.raises(RedisUnavailableError, match="already running"):
        EmbeddedRedis(server.data_dir).start(daemonize=False)


def test_a_taken_port_fails_fast_naming_the_log(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        embedded = EmbeddedRedis(tmp_path, port=holder.getsockname()[1])

        with pytest.raises(RedisUnavailableError, match=r"redis\.log"):
            embedded.start(daemonize=False)
    assert embedded.running_url() is None


def test_ensure_embedded_starts_once_then_reuses(tmp_path: Path) -> None:
    try:
        url = ensure_embedded(tmp_path)
        assert ensure_embedded(tmp_path) == url
        with _client(url) as client:
            assert client.ping()
    finally:
        EmbeddedRedis(tmp_path).stop()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to tell a reused pid")
def test_stop_leaves_alone_a_process_that_reused_a_stale_pid(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "redis.pid").write_text(f"{bystander.pid}\n")

        EmbeddedRedis(tmp_path).stop()

        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_default_data_dir_honours_streamcart_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMCART_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path

    monkeypatch.delenv("STREAMCART_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == tmp_path / ".streamcart"
