"""Process settings, and the Redis-backed config store with hot reload."""

from streamcart.config.settings import Settings
from streamcart.config.store import ConfigStore
from streamcart.config.watch import config_watcher

__all__ = ["ConfigStore", "Settings", "config_watcher"]
