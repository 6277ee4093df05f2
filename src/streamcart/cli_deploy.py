"""``streamcart deploy``: manifests that run the shop elsewhere; and the
``--deployment`` option that ``up`` shares with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from streamcart.bus.embedded import APPENDFSYNC_ENV, DEFAULT_APPENDFSYNC, FSYNC_POLICIES
from streamcart.cli_config import CliState
from streamcart.cli_params import checked_by, converted_by
from streamcart.deploy import Target, render
from streamcart.deploy.target import (
    DEFAULT_IMAGE,
    DEFAULT_K8S_NAMESPACE,
    DEFAULT_REDIS_URL,
    check_image,
    check_namespace,
    redis_server,
)
from streamcart.deployment import Deployment, load_deployment
from streamcart.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])


def deployment_option(func: F) -> F:
    """``--deployment FILE``: the command gets the loaded :class:`Deployment`."""
    return click.option(
        "--deployment",
        metavar="FILE",
        envvar="STREAMCART_DEPLOYMENT",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=converted_by(load_deployment),
        help="Deployment description (TOML; env STREAMCART_DEPLOYMENT); default: shop.toml.",
    )(func)


@click.group("deploy")
def deploy_group() -> None:
    """Print manifests that run the shop on a platform."""


@deploy_group.command("kubernetes")
@click.option(
    "--image",
    default=DEFAULT_IMAGE,
    show_default=True,
    envvar="STREAMCART_IMAGE",
    callback=checked_by(check_image),
    help="Image whose entrypoint is `streamcart` (env STREAMCART_IMAGE).",
)
@click.option(
    "--namespace",
    "k8s_namespace",
    default=DEFAULT_K8S_NAMESPACE,
    show_default=True,
    callback=checked_by(check_namespace),
    help="Kubernetes namespace of every object.",
)
@click.option(
    "--redis-url",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    metavar="URL",
    envvar="STREAMCART_REDIS_URL",
    callback=checked_by(redis_server),
    help="Redis as the pods and KEDA reach it (env STREAMCART_REDIS_URL).",
)
@click.option(
    "--appendfsync",
    type=click.Choice(FSYNC_POLICIES),
    default=DEFAULT_APPENDFSYNC,
    show_default=True,
    envvar=APPENDFSYNC_ENV,
    help="When Redis fsyncs its AOF, in the shipped redis.conf (env STREAMCART_APPENDFSYNC); "
    "always: an OS crash loses no acknowledged write, everysec: up to a second of them.",
)
@deployment_option
@click.pass_obj
def kubernetes_command(
    state: CliState,
    image: str,
    k8s_namespace: str,
    redis_url: str,
    appendfsync: str,
    deployment: Deployment,
) -> None:
    """Print the Kubernetes manifests of a deployment as YAML documents.

    For each service a Deployment (probes run `streamcart health SERVICE`) and
    a KEDA ScaledObject scaling it on its consumer-group lag; the gateway
    (Deployment and Service), the monitor, a ConfigMap of settings and a
    Secret holding the Redis URL. KEDA (https://keda.sh) must be installed in
    the cluster, and Redis must be 7 or later (KEDA reads the groups' lag); the
    ConfigMap streamcart-redis-conf holds the redis.conf that Redis must run
    with (AOF fsynced before every reply, no eviction): mount it into it.
    The users workers and the gateway mount the token signing key from the
    Secret streamcart-token, which you create once. Apply them with:

    \b
        kubectl -n NAMESPACE create secret generic streamcart-token \\
            --from-literal=current="$(openssl rand -base64 48)"
        streamcart deploy kubernetes | kubectl apply -f -

    --namespace is the Kubernetes namespace (create it first); the key
    namespace is the group's: `streamcart --namespace NS deploy kubernetes`.
    """
    target = Target(
        image=image,
        namespace=k8s_namespace,
        redis_url=redis_url,
        key_namespace=state.keys.namespace,  # the group's --namespace, as for every command
        appendfsync=appendfsync,
    )
    try:
        manifests = render(deployment, target)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)
