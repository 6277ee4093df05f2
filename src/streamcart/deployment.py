"""A deployment description: which services run, how many processes, how they scale.

One TOML file serves both `streamcart up` (processes and concurrency of the
local pool, the gateway port, the monitor) and `streamcart deploy kubernetes`
(the same per pod, plus replicas and the lag each replica should absorb)::

    monitor = true

    [gateway]
    replicas = 2
    port = 8080

    [services.orders]
    processes = 1
    concurrency = 32
    min_replicas = 1
    max_replicas = 10
    lag_threshold = 100

A service is a built-in name or a ``package.module:attr`` spec, as
``streamcart worker`` takes. The shop's own description ships as ``shop.toml``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from streamcart.bus.loader import BUILTIN, load_service
from streamcart.errors import ConfigurationError

DEFAULT_FILE = "shop.toml"

Count = Annotated[int, msgspec.Meta(ge=1)]


class ServiceDeployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one service runs: per pod (or local pool) and across replicas.

    ``lag_threshold`` is the consumer-group lag (entries not yet delivered)
    that one replica is meant to absorb; more lag adds replicas.
    """

    processes: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 32
    min_replicas: Annotated[int, msgspec.Meta(ge=0)] = 1
    max_replicas: Count = 10
    lag_threshold: Count = 100

    def __post_init__(self) -> None:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )


class GatewayDeployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    replicas: Count = 2
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8080


class Deployment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole description; ``services`` keeps the file's order."""

    services: dict[str, ServiceDeployment]
    gateway: GatewayDeployment = GatewayDeployment()
    monitor: bool = True


# The Struct found at a location, so an unknown field can be answered with the known ones.
_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "": Deployment,
    "gateway": GatewayDeployment,
    "services.*": ServiceDeployment,
}


def load_deployment(path: Path | None = None) -> Deployment:
    """Read the description at ``path``, or the shop's default one.

    Raises:
        ConfigurationError: the file cannot be read, is not TOML, has an
            unknown or invalid field, or names a service that does not
            exist; the message names the file and the field.
    """
    source: Traversable = path or resources.files("streamcart").joinpath(DEFAULT_FILE)
    name = str(path) if path is not None else f"{DEFAULT_FILE} (built in)"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{name}: cannot read it: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{name}: not valid TOML: {exc}") from exc
    deployment = _convert(data, name)
    if not deployment.services:
        raise ConfigurationError(f"{name}: [services] is empty; add at least one service")
    for spec in deployment.services:
        _check_service(spec, name)
    return deployment


def _convert(data: dict[str, Any], name: str) -> Deployment:
    # Each service alone first: msgspec's path does not say which key of a table failed.
    services = data.get("services")
    if isinstance(services, dict):
        for spec, entry in services.items():
            try:
                msgspec.convert(entry, ServiceDeployment)
            except msgspec.ValidationError as exc:
                raise _invalid(name, exc, f"services.{spec}", "services.*") from None
    try:
        return msgspec.convert(data, Deployment)
    except msgspec.ValidationError as exc:
        raise _invalid(name, exc, "", "") from None


def _invalid(name: str, exc: msgspec.ValidationError, at: str, section: str) -> ConfigurationError:
    message, _, where = str(exc).partition(" - at `")
    inner = where.rstrip("`").removeprefix("$").lstrip(".")
    field = ".".join(part for part in (at, inner) if part)
    unknown = message.removeprefix("Object contains unknown field ")
    if unknown != message:
        struct = _SECTIONS.get(".".join(p for p in (section, inner) if p), Deployment)
        known = ", ".join(f.name for f in msgspec.structs.fields(struct))
        message = f"unknown field {unknown}; the fields are: {known}"
    message = message.replace("Object missing required field", "missing the required field")
    return ConfigurationError(f"{name}: {field}: {message}" if field else f"{name}: {message}")


def _check_service(spec: str, name: str) -> None:
    if spec in BUILTIN:
        return
    if ":" not in spec:
        raise ConfigurationError(
            f"{name}: unknown service {spec!r} in [services]: use one of "
            f"{', '.join(sorted(BUILTIN))}, or 'package.module:service'"
        )
    try:
        load_service(spec)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{name}: services.{spec}: {exc}") from exc
