"""`streamcart deploy kubernetes`: manifests Kubernetes and KEDA accept, that
run and scale every service of the description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from streamcart.bus.keys import Keys
from streamcart.bus.loader import SHOP, load_service
from streamcart.bus.pool import GRACE_S
from streamcart.cli import main

Doc = dict[str, Any]
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
PASSWORD = "pa55-w0rd.x"

# -- KEDA's documented fields (keda.sh/docs: ScaledObject specification, the Redis
# Streams scalers, TriggerAuthentication), the subset these manifests may use.
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_COUNT = {"type": "string", "pattern": r"^[0-9]+$"}
_BOOL = {"type": "string", "enum": ["true", "false"]}
_HOST_PORT = {"type": "string", "pattern": r"^[^\s:,]+:[0-9]+$"}
_COMMON_METADATA = {
    "usernameFromEnv": {"type": "string"},
    "passwordFromEnv": {"type": "string"},
    "stream": {"type": "string", "minLength": 1},
    "consumerGroup": {"type": "string", "minLength": 1},
    "pendingEntriesCount": _COUNT,
    "streamLength": _COUNT,
    "lagCount": _COUNT,
    "activationLagCount": _COUNT,
    "enableTLS": _BOOL,
    "unsafeSsl": _BOOL,
    "databaseIndex": _COUNT,
}
SCALER_METADATA = {
    "redis-streams": {
        "type": "object",
        "properties": {
            **_COMMON_METADATA,
            "address": _HOST_PORT,
            "host": {"type": "string"},
            "port": _COUNT,
            "addressFromEnv": {"type": "string"},
            "hostFromEnv": {"type": "string"},
            "portFromEnv": {"type": "string"},
        },
        "required": ["stream", "address"],
        "dependentRequired": {"lagCount": ["activationLagCount", "consumerGroup"]},
        "additionalProperties": False,
    },
    "redis-cluster-streams": {
        "type": "object",
        "properties": {
            **_COMMON_METADATA,
            "addresses": {"type": "string", "pattern": r"^[^\s:,]+:[0-9]+(, ?[^\s:,]+:[0-9]+)*$"},
            "hosts": {"type": "string"},
            "ports": {"type": "string"},
            "addressesFromEnv": {"type": "string"},
            "hostsFromEnv": {"type": "string"},
            "portsFromEnv": {"type": "string"},
        },
        "required": ["stream", "addresses"],
        "dependentRequired": {"lagCount": ["activationLagCount", "consumerGroup"]},
        "additionalProperties": False,
    },
}
_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRINGS,
        "annotations": _STRINGS,
    },
    "required": ["name"],
    "additionalProperties": False,
}
SCALED_OBJECT = {
    "type": "object",
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                    "required": ["name"],
                    "additionalProperties": False,
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "type": {"enum": sorted(SCALER_METADATA)},
                            "metadata": _STRINGS,
                            "name": {"type": "string"},
                            "useCachedMetrics": {"type": "boolean"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "authenticationRef": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                                "required": ["name"],
                                "additionalProperties": False,
                            },
                        },
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
        },
    },
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
}
TRIGGER_AUTHENTICATION = {
    "type": "object",
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            # The Redis scalers' authentication parameters.
                            "parameter": {
                                "enum": ["username", "password", "tls", "ca", "cert", "key"]
                            },
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["secretTargetRef"],
            "additionalProperties": False,
        },
    },
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
}


# -- helpers -------------------------------------------------------------------
def _render(
    *args: str, group: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> list[Doc]:
    """The documents ``streamcart [GROUP] deploy kubernetes [ARGS]`` prints."""
    result = CliRunner().invoke(main, [*group, "deploy", "kubernetes", *args], env=env)
    assert result.exit_code == 0, result.output
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def _of(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _container(deployment: Doc) -> Doc:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _worker_of(docs: list[Doc], service: str) -> Doc:
    return _of(docs, "Deployment")[f"streamcart-{service}"]


def _check_keda(doc: Doc) -> None:
    if doc["kind"] == "TriggerAuthentication":
        jsonschema.validate(doc, TRIGGER_AUTHENTICATION)
        return
    jsonschema.validate(doc, SCALED_OBJECT)
    for trigger in doc["spec"]["triggers"]:
        jsonschema.validate(trigger["metadata"], SCALER_METADATA[trigger["type"]])


def _description(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    return path


# -- the tests -------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "redis://redis:6379/0",
        f"rediss://app:{PASSWORD}@redis.example:6380/2",
        f"redis+cluster://:{PASSWORD}@node-1:7000",
    ],
)
def test_every_document_passes_the_kubernetes_and_keda_schemas(url: str) -> None:
    docs = _render("--redis-url", url)
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["kind"] in KEDA_KINDS:
            _check_keda(doc)
        else:
            kubernetes_validate.validate(doc, version, strict=True)
    kinds = {doc["kind"] for doc in docs}
    assert {"ConfigMap", "Secret", "Deployment", "Service", "ScaledObject"} <= kinds


def test_the_output_is_plain_yaml_documents() -> None:
    result = CliRunner().invoke(main, ["deploy", "kubernetes"])
    assert result.stdout.startswith("apiVersion: v1\nkind: ConfigMap\n")
    assert "&id" not in result.stdout  # no anchors, shared objects would print as aliases
    assert result.stdout.count("\n---\n") == len(_render()) - 1


def test_the_schemas_catch_what_they_are_meant_to() -> None:
    """The checks above can fail: a misspelt KEDA field and a bad Deployment are refused."""
    scaled = next(iter(_of(_render(), "ScaledObject").values()))
    scaled["spec"]["triggers"][0]["metadata"]["lagcount"] = "5"
    with pytest.raises(jsonschema.ValidationError, match="lagcount"):
        _check_keda(scaled)
    deployment = _worker_of(_render(), "orders")
    _container(deployment)["livenessProbe"]["exec"]["cmd"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_every_shop_service_has_a_deployment_scaled_on_exactly_its_streams() -> None:
    docs = _render()
    deployments, scaled = _of(docs, "Deployment"), _of(docs, "ScaledObject")
    for name in SHOP:
        deployment = deployments[f"streamcart-{name}"]
        assert _container(deployment)["args"][:2] == ["worker", name]
        so = scaled[f"streamcart-{name}"]
        assert so["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 10)
        triggers = so["spec"]["triggers"]
        expected = load_service(name).streams(Keys("sc"))
        assert sorted(t["metadata"]["stream"] for t in triggers) == sorted(expected)
        for trigger in triggers:
            assert trigger["type"] == "redis-streams"
            assert trigger["metadata"]["consumerGroup"] == name
            assert trigger["metadata"]["address"] == "redis:6379"
            assert trigger["metadata"]["lagCount"] == "100"
            assert "authenticationRef" not in trigger  # no password, nothing to authenticate
    assert set(scaled) == {f"streamcart-{name}" for name in SHOP}
    assert "TriggerAuthentication" not in {doc["kind"] for doc in docs}


def test_worker_pods_probe_health_drain_and_run_as_the_image_user() -> None:
    deployment = _worker_of(_render(), "payments")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    probe = ["streamcart", "health", "payments"]
    assert container["readinessProbe"]["exec"]["command"] == probe
    assert container["livenessProbe"]["exec"]["command"] == probe
    assert pod["terminationGracePeriodSeconds"] > GRACE_S
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["resources"]["requests"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": "streamcart-settings"}},
        {"secretRef": {"name": "streamcart-redis"}},
    ]
    assert "replicas" not in deployment["spec"]  # KEDA owns the count
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "payments",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "streamcart",
    }
    assert deployment["spec"]["selector"]["matchLabels"] == labels


def test_every_container_runs_a_command_the_cli_accepts() -> None:
    for deployment in _of(_render(), "Deployment").values():
        args = _container(deployment)["args"]
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


def test_gateway_has_http_probes_and_a_service_on_its_port() -> None:
    docs = _render()
    gateway = _of(docs, "Deployment")["streamcart-gateway"]
    container = _container(gateway)
    assert container["args"] == ["gateway", "--host", "0.0.0.0", "--port", "8080"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["spec"]["replicas"] == 2
    service = _of(docs, "Service")["streamcart-gateway"]
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 8080
    assert _container(_of(docs, "Deployment")["streamcart-monitor"])["args"] == ["monitor"]


def test_a_cluster_url_uses_the_cluster_scaler() -> None:
    docs = _render("--redis-url", "rediss+cluster://node-1:7000")
    for so in _of(docs, "ScaledObject").values():
        for trigger in so["spec"]["triggers"]:
            assert trigger["type"] == "redis-cluster-streams"
            assert trigger["metadata"]["addresses"] == "node-1:7000"
            assert trigger["metadata"]["enableTLS"] == "true"
            assert "address" not in trigger["metadata"]


def test_the_password_lives_in_the_secret_only() -> None:
    url = f"redis://:{PASSWORD}@redis:6379/0"
    docs = _render("--redis-url", url)
    [secret] = _of(docs, "Secret").values()
    assert secret["stringData"]["STREAMCART_REDIS_URL"] == url
    assert PASSWORD in secret["stringData"].values()
    for doc in docs:
        if doc["kind"] != "Secret":
            assert PASSWORD not in json.dumps(doc), doc["kind"]
    [auth] = _of(docs, "TriggerAuthentication").values()
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password"
    assert secret["stringData"][ref["key"]] == PASSWORD
    assert ref["name"] == secret["metadata"]["name"]
    for so in _of(docs, "ScaledObject").values():
        for trigger in so["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}


def test_an_escaped_password_reaches_keda_unescaped() -> None:
    docs = _render("--redis-url", "redis://user:p%40ss@redis:6379/0")
    [secret] = _of(docs, "Secret").values()
    assert secret["stringData"]["STREAMCART_REDIS_PASSWORD"] == "p@ss"
    assert secret["stringData"]["STREAMCART_REDIS_USERNAME"] == "user"


def test_the_description_decides_processes_replicas_and_services(tmp_path: Path) -> None:
    path = _description(
        tmp_path,
        """
monitor = false
[gateway]
replicas = 3
port = 9000
[services.orders]
processes = 3
concurrency = 8
min_replicas = 0
max_replicas = 4
lag_threshold = 25
[services."streamcart.examples.counter:build"]
""",
    )
    docs = _render("--deployment", str(path))
    deployments = _of(docs, "Deployment")
    assert set(deployments) == {"streamcart-orders", "streamcart-counter", "streamcart-gateway"}
    container = _container(deployments["streamcart-orders"])
    assert container["args"] == ["worker", "orders", "--processes", "3", "--concurrency", "8"]
    assert container["resources"]["requests"] == {"cpu": "300m", "memory": "384Mi"}
    so = _of(docs, "ScaledObject")["streamcart-orders"]
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (0, 4)
    assert {t["metadata"]["lagCount"] for t in so["spec"]["triggers"]} == {"25"}
    counter = _container(deployments["streamcart-counter"])
    assert counter["args"][:2] == ["worker", "streamcart.examples.counter:build"]
    assert counter["livenessProbe"]["exec"]["command"][-1] == "streamcart.examples.counter:build"
    gateway = deployments["streamcart-gateway"]
    assert gateway["spec"]["replicas"] == 3
    assert _container(gateway)["ports"][0]["containerPort"] == 9000


def test_namespaces_image_and_key_namespace() -> None:
    image = "reg.example/streamcart:1.2"
    docs = _render(
        "--namespace", "prod", group=("--namespace", "shop"), env={"STREAMCART_IMAGE": image}
    )
    assert {doc["metadata"]["namespace"] for doc in docs} == {"prod"}
    assert {_container(d)["image"] for d in _of(docs, "Deployment").values()} == {image}
    config = _of(docs, "ConfigMap")["streamcart-settings"]
    assert config["data"]["STREAMCART_NAMESPACE"] == "shop"
    streams = {
        t["metadata"]["stream"]
        for so in _of(docs, "ScaledObject").values()
        for t in so["spec"]["triggers"]
    }
    assert "shop:inbox:orders" in streams and all(s.startswith("shop:") for s in streams)


def _redis_conf(docs: list[Doc]) -> dict[str, str]:
    text = _of(docs, "ConfigMap")["streamcart-redis-conf"]["data"]["redis.conf"]
    return dict(line.split(" ", 1) for line in text.splitlines())


def test_the_shipped_redis_conf_fsyncs_before_every_reply_and_never_evicts() -> None:
    conf = _redis_conf(_render())
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "always"
    assert conf["maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--appendfsync", "everysec"], {}), ([], {"STREAMCART_APPENDFSYNC": "everysec"})],
    ids=["option", "env"],
)
def test_the_fsync_policy_of_the_redis_conf_can_be_told(
    args: list[str], env: dict[str, str]
) -> None:
    assert _redis_conf(_render(*args, env=env))["appendfsync"] == "everysec"


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--namespace", "Prod_1"], "is not a Kubernetes namespace"),
        (["--redis-url", "unix:///tmp/redis.sock"], "the scheme must be one of"),
        (["--redis-url", "redis://redis:port/0"], "the port must be a number"),
        (["--redis-url", "redis://redis:6379/zero"], "must be a number"),
        (["--redis-url", "redis://"], "names no host"),
        (["--image", ""], "is not an image reference"),
        (["--deployment", "/nonexistent/shop.toml"], "cannot read it"),
        (["--appendfsync", "sometimes"], "'always', 'everysec', 'no'"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], hint: str) -> None:
    result = CliRunner().invoke(main, ["deploy", "kubernetes", *args])
    assert result.exit_code == 2, result.output
    assert hint in result.output
    assert "apiVersion" not in result.output  # nothing half-printed


def test_a_bad_url_is_reported_without_its_password() -> None:
    url = f"redis://app:{PASSWORD}/more@redis:6379/0"  # an unescaped '/' in the password
    result = CliRunner().invoke(main, ["deploy", "kubernetes", "--redis-url", url])
    assert result.exit_code == 2
    assert "percent-escaped" in result.output
    assert PASSWORD not in result.output


def test_help_says_how_to_apply_and_what_is_needed() -> None:
    result = CliRunner().invoke(main, ["deploy", "kubernetes", "--help"])
    assert result.exit_code == 0
    assert "| kubectl apply -f -" in result.output
    assert "KEDA" in result.output


def test_the_token_signing_key_is_a_mounted_secret_of_the_signer_and_verifier() -> None:
    """Only the users workers (which sign) and the gateway (which verifies) get it,
    as a file from a Secret the operator creates, never in the rendered output."""
    docs = _render()
    mounted = {}
    for name, deployment in _of(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        if "token-secret" in volumes:
            mounted[name] = (volumes["token-secret"], _container(deployment))
    assert set(mounted) == {"streamcart-users", "streamcart-gateway"}
    for volume, container in mounted.values():
        assert volume["secret"]["secretName"] == "streamcart-token"
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "token-secret"]
        assert mount["readOnly"] is True
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {
            "STREAMCART_TOKEN_SECRET_FILE": f"{mount['mountPath']}/current",
            "STREAMCART_TOKEN_SECRET_PREVIOUS_FILE": f"{mount['mountPath']}/previous",
        }
    assert "streamcart-token" not in {d["metadata"]["name"] for d in _of(docs, "Secret").values()}
    result = CliRunner().invoke(main, ["deploy", "kubernetes", "--help"])
    assert "create secret generic streamcart-token" in result.output
