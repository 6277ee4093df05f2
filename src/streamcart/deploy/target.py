"""Where manifests are deployed: image, Kubernetes namespace, Redis server.

Each option is checked here, before any manifest is built, so a mistake is
reported against the option that holds it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import msgspec

from streamcart.bus.connection import CLUSTER_SCHEMES
from streamcart.bus.embedded import DEFAULT_APPENDFSYNC
from streamcart.config.settings import DEFAULT_NAMESPACE
from streamcart.errors import ConfigurationError

DEFAULT_IMAGE = "streamcart:latest"
DEFAULT_K8S_NAMESPACE = "streamcart"
# A Service named `redis` in the same namespace.
DEFAULT_REDIS_URL = "redis://redis:6379/0"
DEFAULT_PORT = 6379

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SCHEMES = ("redis", "rediss", *CLUSTER_SCHEMES)


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """``namespace`` is the Kubernetes one; ``key_namespace`` prefixes Redis keys;
    ``appendfsync`` is the fsync policy of the Redis settings shipped for the bus."""

    image: str = DEFAULT_IMAGE
    namespace: str = DEFAULT_K8S_NAMESPACE
    redis_url: str = DEFAULT_REDIS_URL
    key_namespace: str = DEFAULT_NAMESPACE
    appendfsync: str = DEFAULT_APPENDFSYNC


class RedisServer(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of a Redis URL a scaler outside the pods needs."""

    host: str
    port: int
    database: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cluster: bool = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"{host}:{self.port}"


def check_image(image: str) -> str:
    """Raises:
    ConfigurationError: an empty image reference, or one with whitespace.
    """
    if not image or any(c.isspace() for c in image):
        raise ConfigurationError(f"{image!r} is not an image reference, like 'streamcart:1.0'")
    return image


def check_namespace(namespace: str) -> str:
    """Raises:
    ConfigurationError: not a DNS label (lower case, digits, '-'; 63 at most).
    """
    if not _DNS_LABEL.match(namespace):
        raise ConfigurationError(
            f"{namespace!r} is not a Kubernetes namespace: lower-case letters, digits "
            "and '-', starting and ending with a letter or digit, 63 characters at most"
        )
    return namespace


def redis_server(url: str) -> RedisServer:
    """Parse a streamcart Redis URL (``redis://``, ``rediss://``, or a cluster's
    ``redis+cluster://`` / ``rediss+cluster://``).

    Raises:
        ConfigurationError: another scheme (a unix socket, say), no host, or a
            port or database that is not a number.
    """
    shown = _redacted(url)  # error messages end up in logs
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{shown!r}: the scheme must be one of {', '.join(s + '://' for s in _SCHEMES)} "
            "(the pods and KEDA reach Redis over TCP)"
        )
    if not parts.hostname:
        raise ConfigurationError(f"{shown!r} names no host, like redis://redis:6379/0")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        # Not the parser's message: it may quote a password that holds a '/'.
        raise ConfigurationError(
            f"{shown!r}: the port must be a number up to 65535 (a '/' or '@' in the "
            "password must be percent-escaped: %2F, %40)"
        ) from None
    database = parts.path.lstrip("/") or "0"
    if not database.isdigit():
        raise ConfigurationError(f"{shown!r}: the database ({database!r}) must be a number")
    cluster = parts.scheme in CLUSTER_SCHEMES
    if cluster and database != "0":
        raise ConfigurationError(f"{shown!r}: a Redis Cluster has database 0 only")
    return RedisServer(
        host=parts.hostname,
        port=port,
        database=int(database),
        # redis-py reads `redis://:secret@host` as no user name; percent-escapes are undone.
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=CLUSTER_SCHEMES.get(parts.scheme, parts.scheme) == "rediss",
        cluster=cluster,
    )


def _redacted(url: str) -> str:
    """``url`` without its credentials (all of them: a '/' may hide in a password)."""
    scheme, sep, rest = url.partition("://")
    _, at, location = rest.rpartition("@")
    return f"{scheme}{sep}***@{location}" if at else url
