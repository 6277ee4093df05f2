"""Process settings: where Redis is and which namespace to use."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

DEFAULT_NAMESPACE = "sc"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of one process, resolved once at start-up.

    ``redis_url`` is ``None`` when nothing names a server: the caller then
    reuses or starts the embedded one.
    """

    redis_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, redis_url: str | None = None
    ) -> Settings:
        """Resolve settings: the explicit URL, then ``STREAMCART_REDIS_URL``,
        then ``REDIS_URL``; the namespace from ``STREAMCART_NAMESPACE``."""
        env = os.environ if env is None else env
        url = redis_url or env.get("STREAMCART_REDIS_URL") or env.get("REDIS_URL") or None
        namespace = env.get("STREAMCART_NAMESPACE") or DEFAULT_NAMESPACE
        return cls(redis_url=url, namespace=namespace)
