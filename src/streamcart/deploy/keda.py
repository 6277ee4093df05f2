"""KEDA objects: scale each service's Deployment on its consumer-group lag.

One trigger per stream the service consumes (its inbox and every topic it
subscribes to), each on the service's consumer group; the HPA KEDA builds
follows the most lagging one. ``lagCount`` is the lag one replica should
absorb; ``activationLagCount`` 0 wakes a service scaled to zero at the
first waiting entry. Lag mode needs Redis 7 or later, as streamcart does.
"""

from __future__ import annotations

from typing import Any

from streamcart.bus.keys import Keys
from streamcart.bus.service import Service
from streamcart.deploy.target import RedisServer, Target
from streamcart.deployment import ServiceDeployment

API_VERSION = "keda.sh/v1alpha1"
# Keys of the Secret that KEDA reads (every container sees them too, harmlessly).
USERNAME_KEY = "STREAMCART_REDIS_USERNAME"
PASSWORD_KEY = "STREAMCART_REDIS_PASSWORD"


def scaled_object(
    name: str,
    service: Service,
    plan: ServiceDeployment,
    *,
    target: Target,
    server: RedisServer,
    labels: dict[str, str],
    auth: str | None,
) -> dict[str, Any]:
    """Scale the Deployment ``name`` between the description's replica bounds."""
    trigger_type = "redis-cluster-streams" if server.cluster else "redis-streams"
    triggers: list[dict[str, Any]] = []
    for stream in service.streams(Keys(target.key_namespace)):
        metadata = {
            **connection(server),
            "stream": stream,
            "consumerGroup": service.name,
            "lagCount": str(plan.lag_threshold),
            "activationLagCount": "0",
        }
        trigger: dict[str, Any] = {"type": trigger_type, "metadata": metadata}
        if auth is not None:
            trigger["authenticationRef"] = {"name": auth}
        triggers.append(trigger)
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": target.namespace, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": plan.min_replicas,
            "maxReplicaCount": plan.max_replicas,
            "triggers": triggers,
        },
    }


def connection(server: RedisServer) -> dict[str, str]:
    """Trigger metadata naming the server; never its credentials (those go
    through a TriggerAuthentication)."""
    if server.cluster:
        # One node is enough: the cluster client discovers the others.
        found = {"addresses": server.address}
    else:
        found = {"address": server.address, "databaseIndex": str(server.database)}
    if server.tls:
        found["enableTLS"] = "true"
    return found


def trigger_authentication(
    name: str, secret: str, server: RedisServer, *, target: Target, labels: dict[str, str]
) -> dict[str, Any]:
    """Hand KEDA the Redis credentials (see :func:`credentials`) from ``secret``."""
    params = {USERNAME_KEY: "username", PASSWORD_KEY: "password"}
    refs = [{"parameter": params[key], "name": secret, "key": key} for key in credentials(server)]
    return {
        "apiVersion": API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
        "spec": {"secretTargetRef": refs},
    }


def credentials(server: RedisServer) -> dict[str, str]:
    """The Secret entries :func:`trigger_authentication` refers to."""
    found = {}
    if server.username is not None:
        found[USERNAME_KEY] = server.username
    if server.password is not None:
        found[PASSWORD_KEY] = server.password
    return found
