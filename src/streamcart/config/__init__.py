"""Process settings and (later) the Redis-backed config store."""

from streamcart.config.settings import Settings

__all__ = ["Settings"]
