"""Finding a service by name (built-in) or by import path (``pkg.module:attr``)."""

from __future__ import annotations

import importlib
import os
import sys

from streamcart.bus.service import Service
from streamcart.errors import ConfigurationError

# The shop's services (contract section 4), each in streamcart.workers.<name>.service.
SHOP = (
    "users",
    "catalog",
    "cart",
    "orders",
    "inventory",
    "payments",
    "logistics",
    "recommendations",
    "analytics",
    "moderation",
    "satisfaction",
)
# Built-in services: name -> "module:factory".
BUILTIN: dict[str, str] = {
    "counter": "streamcart.examples.counter:build",
    **{name: f"streamcart.workers.{name}.service:build" for name in SHOP},
}


def load_service(spec: str) -> Service:
    """Build the service named by ``spec``.

    ``spec`` is a built-in name, or ``module:attr`` where ``attr`` is a
    ``Service`` or a function returning one.

    Raises:
        ConfigurationError: nothing usable is found; the message lists the choices.
    """
    target = BUILTIN.get(spec, spec)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ConfigurationError(
            f"unknown service {spec!r}: use one of {sorted(BUILTIN)} or 'package.module:service'"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `streamcart worker shop:svc` finds ./shop.py
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} for service {spec!r}: {exc}"
        ) from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigurationError(f"{module_name!r} has no attribute {attr!r}")
    service = obj if isinstance(obj, Service) else obj() if callable(obj) else None
    if not isinstance(service, Service):
        raise ConfigurationError(f"{target!r} is not a Service nor a function returning one")
    return service
