"""Kubernetes manifests for a deployment description, as plain dicts.

:func:`render` returns, in apply order: the settings (a ConfigMap, a Secret
with the Redis URL and, when the URL has credentials, the KEDA
TriggerAuthentication that reads them), then for each service a Deployment
and the KEDA ScaledObject that scales it, then the gateway (Deployment and
Service) and the monitor; last, the settings of the Redis the bus lives on, as a
``redis.conf`` for that server to load. Every container reads the settings through
``envFrom``; the image's entrypoint is ``streamcart``, so ``args`` is a streamcart command.

The token signing keys are not rendered (a new one at every render would
log everyone out at every apply): the users workers and the gateway mount
the Secret ``streamcart-token``, which the operator creates, its ``current``
entry as ``STREAMCART_TOKEN_SECRET_FILE`` and its optional ``previous`` one
(a key being retired) as ``STREAMCART_TOKEN_SECRET_PREVIOUS_FILE``. Without
that Secret those pods do not start.
"""

from __future__ import annotations

import math
import re
from typing import Any

from streamcart.bus.loader import load_service
from streamcart.bus.pool import GRACE_S
from streamcart.bus.service import Service
from streamcart.deploy import keda
from streamcart.deploy.target import Target, redis_server
from streamcart.deployment import Deployment, GatewayDeployment, ServiceDeployment
from streamcart.errors import ConfigurationError
from streamcart.workers.users.accounts import SERVICE as USERS
from streamcart.workers.users.signing_keys import PREVIOUS_FILE_ENV, SECRET_FILE_ENV

PART_OF = "streamcart"
SETTINGS = "streamcart-settings"
SECRET = "streamcart-redis"
TOKEN_SECRET = "streamcart-token"
TOKEN_DIR = "/var/run/secrets/streamcart-token"
REDIS_CONF = "streamcart-redis-conf"
# The user the image runs as.
UID = 10001
# After the drain: the last heartbeat, deregistering, flushing spans, exiting.
EXIT_MARGIN_S = 15
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Manifest = dict[str, Any]


def render(deployment: Deployment, target: Target) -> list[Manifest]:
    """Every manifest of ``deployment`` on ``target``; no two share an object,
    so YAML output has no anchors.

    Raises:
        ConfigurationError: a bad Redis URL, a service that cannot be loaded,
            or two objects that would get the same name.
    """
    server = redis_server(target.redis_url)
    credentials = keda.credentials(server)
    manifests = [config_map(target), secret(target, credentials)]
    auth = None
    if credentials:
        auth = SECRET
        labels = _labels("redis", "settings")
        manifests.append(
            keda.trigger_authentication(auth, SECRET, server, target=target, labels=labels)
        )
    for spec, plan in deployment.services.items():
        service = load_service(spec)
        name = _name(service.name)
        manifests.append(worker(name, spec, service, plan, target))
        labels = _labels(service.name, "worker")
        manifests.append(
            keda.scaled_object(
                name, service, plan, target=target, server=server, labels=labels, auth=auth
            )
        )
    manifests += gateway(deployment.gateway, target)
    if deployment.monitor:
        manifests.append(monitor(target))
    manifests.append(redis_config(target))
    _check_unique(manifests)
    return manifests


def config_map(target: Target) -> Manifest:
    """Settings every process reads; add OTEL_* and the like here."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(SETTINGS, target, "settings", "settings"),
        "data": {"STREAMCART_NAMESPACE": target.key_namespace},
    }


def secret(target: Target, credentials: dict[str, str]) -> Manifest:
    """The Redis URL, and its credentials alone for KEDA, which cannot parse a URL."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(SECRET, target, "redis", "settings"),
        "type": "Opaque",
        "stringData": {"STREAMCART_REDIS_URL": target.redis_url, **credentials},
    }


def redis_config(target: Target) -> Manifest:
    """What the Redis holding the bus must run with, as a ``redis.conf`` to mount into it
    (``redis-server /etc/redis/redis.conf``): the AOF fsynced before every reply (unless
    ``target`` says otherwise), so an OS crash loses no write a client was told about;
    a torn last record dropped on load; and no eviction, which would drop whole streams."""
    lines = [
        "appendonly yes",
        f"appendfsync {target.appendfsync}",
        "aof-load-truncated yes",
        "maxmemory-policy noeviction",
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(REDIS_CONF, target, "redis", "settings"),
        "data": {"redis.conf": "\n".join(lines) + "\n"},
    }


def worker(
    name: str, spec: str, service: Service, plan: ServiceDeployment, target: Target
) -> Manifest:
    """The pods of one service; KEDA owns their number (no ``replicas`` here,
    or every apply would reset what it scaled to)."""
    processes, concurrency = str(plan.processes), str(plan.concurrency)
    container = _container(
        "worker",
        target,
        ["worker", spec, "--processes", processes, "--concurrency", concurrency],
        per_process(plan.processes, cpu_m=100, mem_mi=128),
    )
    # Ready once an instance on this pod heartbeats; restarted only after
    # minutes of silence, so a short Redis outage does not restart every pod.
    container["readinessProbe"] = _health(spec, periodSeconds=10, failureThreshold=3)
    container["livenessProbe"] = _health(
        spec, initialDelaySeconds=30, periodSeconds=30, failureThreshold=4
    )
    # Workers drain in-flight messages on SIGTERM; a pool kills after GRACE_S.
    grace_s = math.ceil(max(GRACE_S, service.options.shutdown_grace_s)) + EXIT_MARGIN_S
    deployment = _deployment(name, target, service.name, "worker", container, grace_s=grace_s)
    if service.name == USERS:  # the service that signs tokens
        _mount_token_secret(deployment)
    return deployment


def gateway(plan: GatewayDeployment, target: Target) -> list[Manifest]:
    """The HTTP gateway's pods and the Service in front of them."""
    name = _name("gateway")
    args = ["gateway", "--host", "0.0.0.0", "--port", str(plan.port)]
    container = _container("gateway", target, args, {"cpu": "200m", "memory": "192Mi"})
    container["ports"] = [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}]
    container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}}
    # Not ready without Redis or a live users instance: taken out of the Service.
    container["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
    }
    deployment = _deployment(
        name, target, "gateway", "gateway", container, grace_s=30, replicas=plan.replicas
    )
    _mount_token_secret(deployment)  # it verifies tokens
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, target, "gateway", "gateway"),
        "spec": {
            "selector": _labels("gateway", "gateway"),
            "ports": [{"name": "http", "port": plan.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def monitor(target: Target) -> Manifest:
    """One monitor: two would raise every alert twice, hence Recreate on updates."""
    container = _container("monitor", target, ["monitor"], {"cpu": "50m", "memory": "96Mi"})
    deployment = _deployment(
        _name("monitor"), target, "monitor", "monitor", container, grace_s=30, replicas=1
    )
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    return deployment


def _mount_token_secret(deployment: Manifest) -> None:
    """The token Secret as read-only files, named to the container by env."""
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"].append(
        {"name": "token-secret", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o444}}
    )
    [container] = pod["containers"]
    container["volumeMounts"].append(
        {"name": "token-secret", "mountPath": TOKEN_DIR, "readOnly": True}
    )
    container["env"] = [
        {"name": SECRET_FILE_ENV, "value": f"{TOKEN_DIR}/current"},
        {"name": PREVIOUS_FILE_ENV, "value": f"{TOKEN_DIR}/previous"},
    ]


def per_process(processes: int, *, cpu_m: int, mem_mi: int) -> dict[str, str]:
    return {"cpu": f"{cpu_m * processes}m", "memory": f"{mem_mi * processes}Mi"}


def _health(spec: str, **timing: int) -> dict[str, Any]:
    # A generous timeout: the probe starts a Python process.
    return {"exec": {"command": ["streamcart", "health", spec]}, "timeoutSeconds": 10, **timing}


def _container(
    name: str, target: Target, args: list[str], requests: dict[str, str]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": target.image,
        "args": args,
        "envFrom": [{"configMapRef": {"name": SETTINGS}}, {"secretRef": {"name": SECRET}}],
        "resources": {"requests": requests},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # The one writable place (a pool's metrics files, temporary files).
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _deployment(
    name: str,
    target: Target,
    app: str,
    component: str,
    container: dict[str, Any],
    *,
    grace_s: int,
    replicas: int | None = None,
) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, target, app, component),
        "spec": {
            **({} if replicas is None else {"replicas": replicas}),
            "selector": {"matchLabels": _labels(app, component)},
            "template": {
                "metadata": {"labels": _labels(app, component)},
                "spec": {
                    "terminationGracePeriodSeconds": grace_s,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _meta(name: str, target: Target, app: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": target.namespace, "labels": _labels(app, component)}


def _labels(app: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def _name(base: str) -> str:
    # Service names may hold '_', which Kubernetes names may not.
    name = f"{PART_OF}-{base.replace('_', '-')}"
    if len(name) > 63 or not _NAME.match(name):
        raise ConfigurationError(
            f"{name!r} is not usable as a Kubernetes name: rename the service {base!r}"
        )
    return name


def _check_unique(manifests: list[Manifest]) -> None:
    seen: set[tuple[str, str]] = set()
    for manifest in manifests:
        key = (manifest["kind"], manifest["metadata"]["name"])
        if key in seen:
            raise ConfigurationError(
                f"two {key[0]}s would be named {key[1]!r}: a service's name collides "
                "with another service or with the gateway or monitor; rename it"
            )
        seen.add(key)
