"""deploy/: every Kubernetes manifest validates offline against the Kubernetes JSON schemas bundled in
kubernetes-validate (strict: unknown fields are errors), the KServe InferenceService against the schema in
tests/data/kserve (from KServe's API types, see its $comment), the compose scale-out file against the
compose-spec schema; and the manifests agree with the service (probe routes, drain time, metric names)."""

from __future__ import annotations

import copy
import inspect
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import uvicorn
from fastapi.testclient import TestClient
from referencing import Registry, Resource
from ruamel.yaml import YAML

from app.cli import GRACEFUL_SHUTDOWN_TIMEOUT_S
from app.config import REPO_ROOT, Settings
from app.metrics import ServiceMetrics
from tests.deploy.failover import TEMPLATE, render_server_conf
from tests.unit.test_packaging import _tool

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
#: The oldest Kubernetes minor release still maintained upstream when this was written, and the newest
#: the installed kubernetes-validate bundles.
K8S_VERSIONS = ("1.32", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
KSERVE_SCHEMA = REPO_ROOT / "tests" / "data" / "kserve" / "inferenceservice-v1beta1.schema.json"


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text(encoding="utf-8")) if doc]


def _kustomization(folder: Path) -> dict[str, Any]:
    docs = _load_all(folder / "kustomization.yaml")
    assert len(docs) == 1 and docs[0]["kind"] == "Kustomization"
    return docs[0]


def _merge(base: Any, patch: Any) -> Any:
    """The part of Kubernetes' strategic merge patch the GPU overlay uses: maps merge key by key, lists of
    maps that all have a ``name`` (containers, env, ports, volumes) merge item by item on it, other lists
    are replaced. (``kubectl kustomize`` is not installed here; this stands in for it.)"""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    named = named and all(isinstance(i, dict) and "name" in i for i in [*base, *patch])
    if named:
        by_name = {item["name"]: item for item in base}
        out = [_merge(by_name[i["name"]], i) if i["name"] in by_name else i for i in patch]
        patched = {i["name"] for i in patch}
        return [item for item in base if item["name"] not in patched] + out
    return copy.deepcopy(patch)


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects a kustomization folder produces: its resources (recursively), its patches applied to
    the object of the same kind and name, and its ``labels`` added to every object's metadata."""
    kustomization = _kustomization(folder)
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        objects.extend(render(path) if path.is_dir() else _load_all(path))
    for patch in kustomization.get("patches", []):
        (document,) = _load_all(folder / patch["path"])
        index = next(
            i
            for i, o in enumerate(objects)
            if (o["kind"], o["metadata"]["name"]) == (document["kind"], document["metadata"]["name"])
        )
        objects[index] = _merge(objects[index], document)
    for entry in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
    return objects


def _find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


BASE = render(K8S / "base")
GPU = render(K8S / "overlays" / "gpu")
CPU_ONLY = render(K8S / "overlays" / "cpu-only")
VARIANTS = {"base": BASE, "gpu": GPU, "cpu-only": CPU_ONLY}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_kubernetes_objects_validate_strictly_against_kubernetes_schemas(variant: str, version: str) -> None:
    objects = VARIANTS[variant]
    assert {o["kind"] for o in objects} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment = copy.deepcopy(_find(BASE, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_every_manifest_file_is_used_by_a_kustomization_or_validated_here() -> None:
    used = {(K8S / "base" / r).resolve() for r in _kustomization(K8S / "base")["resources"]}
    used |= {(K8S / "base" / "kustomization.yaml").resolve()}
    for overlay in (K8S / "overlays" / "gpu", K8S / "overlays" / "cpu-only"):
        used |= {(overlay / p["path"]).resolve() for p in _kustomization(overlay)["patches"]}
        used |= {(overlay / "kustomization.yaml").resolve()}
    used |= {(K8S / "prometheus-adapter" / "rules.yaml").resolve()}
    assert {p.resolve() for p in K8S.rglob("*.yaml")} == used


def test_only_the_gpu_overlay_requests_a_gpu() -> None:
    base, gpu = _container(_find(BASE, "Deployment")), _container(_find(GPU, "Deployment"))
    assert "nvidia.com/gpu" not in json.dumps(base["resources"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert base["image"].endswith("-cpu") and not gpu["image"].endswith("-cpu")
    env = {e["name"]: e["value"] for e in gpu["env"]}
    assert env["SENTIMENT_REQUIRE_GPU"] == "true" and env["SENTIMENT_PROVIDERS"].startswith("CUDA")
    # The patch merged into the base container instead of replacing it.
    assert gpu["readinessProbe"] == base["readinessProbe"] and env["SENTIMENT_HOST"] == "0.0.0.0"
    Settings.model_validate({k.removeprefix("SENTIMENT_").lower(): v for k, v in env.items()})


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_probes_and_termination_follow_the_service(variant: str, client: TestClient) -> None:
    deployment = _find(VARIANTS[variant], "Deployment")
    container = _container(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):  # the service (tiny model) answers
        assert client.get(container[probe]["httpGet"]["path"]).status_code == 200
    sleep_s = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The kubelet counts the grace period from the preStop hook's start; SIGTERM follows the hook.
    assert grace_s > sleep_s + GRACEFUL_SHUTDOWN_TIMEOUT_S
    assert container["ports"][0]["containerPort"] == Settings().port
    security = deployment["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == 10001  # the Dockerfile's USER


def test_hpa_scales_on_a_metric_the_adapter_builds_from_the_service_metrics() -> None:
    hpa = _find(BASE, "HorizontalPodAutoscaler")
    kinds = [m["type"] for m in hpa["spec"]["metrics"]]
    # In-progress items per pod and CPU. Not a fallback: with the Pods metric unreadable the HPA scales up
    # on CPU but never down, hence the cpu-only overlay (test below).
    assert kinds == ["Pods", "Resource"]
    pods_metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    (rule,) = YAML(typ="safe").load((K8S / "prometheus-adapter" / "rules.yaml").read_text())["rules"]
    assert rule["name"]["as"] == pods_metric
    exposed = {m.name for m in ServiceMetrics().registry.collect()}
    used = {name for name in exposed if name in rule["metricsQuery"] or name in rule["seriesQuery"]}
    assert used == {"sentiment_batcher_queue_depth", "sentiment_batcher_items_in_flight"}
    gpu_hpa = _find(GPU, "HorizontalPodAutoscaler")
    assert gpu_hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == pods_metric


def test_cpu_only_overlay_scales_on_cpu_alone_and_changes_nothing_else() -> None:
    hpa, base_hpa = _find(CPU_ONLY, "HorizontalPodAutoscaler"), _find(BASE, "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]  # the base list replaced (autoscaling/v2 metrics is an atomic list)
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric == base_hpa["spec"]["metrics"][1]
    assert {k: v for k, v in hpa["spec"].items() if k != "metrics"} == {
        k: v for k, v in base_hpa["spec"].items() if k != "metrics"
    }
    assert [o for o in CPU_ONLY if o["kind"] != "HorizontalPodAutoscaler"] == [
        o for o in BASE if o["kind"] != "HorizontalPodAutoscaler"
    ]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_hpa_owns_the_replica_count(variant: str) -> None:
    """A ``replicas`` in the Deployment would reset the HPA's count at every ``kubectl apply -k``."""
    objects = VARIANTS[variant]
    assert "replicas" not in _find(objects, "Deployment")["spec"]
    hpa = _find(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == _find(objects, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2


# Files that show how to mount another model repository (some as comments).
MOUNT_EXAMPLES = [
    REPO_ROOT / "docs" / "deploy.md",
    REPO_ROOT / "docs" / "operations.md",
    REPO_ROOT / "Dockerfile",
    REPO_ROOT / "docker-compose.yml",
    DEPLOY / "compose" / "docker-compose.scale.yml",
    K8S / "base" / "deployment.yaml",
]


@pytest.mark.parametrize("path", MOUNT_EXAMPLES, ids=lambda p: p.name)
def test_no_model_repository_is_mounted_over_the_baked_one(path: Path) -> None:
    """The voice activity detector is loaded from <package>/../models/detectors = /app/models/detectors
    whatever SENTIMENT_MODEL_DIR says, so a repository mounted over /app/models without detectors/ stops the
    start-up: examples mount at /models and point SENTIMENT_MODEL_DIR there."""
    from app.preprocessing.vad import VAD_MODEL_FILE

    assert VAD_MODEL_FILE.parent == REPO_ROOT / "models" / "detectors"  # i.e. /app/models/detectors
    text = path.read_text(encoding="utf-8")
    assert not re.search(r":/app/models\b|mountPath: */app/models\b", text)
    assert re.search(r":/models:ro\b|mountPath: */models\b", text)
    assert "SENTIMENT_MODEL_DIR=/models" in text or "SENTIMENT_MODEL_DIR: /models" in text


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_volume_is_mounted_over_the_baked_model(variant: str) -> None:
    container = _container(_find(VARIANTS[variant], "Deployment"))
    mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])]
    assert not [m for m in mounts if m == "/app" or m.startswith("/app/models")]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pdb_keeps_a_pod_when_the_hpa_runs_its_minimum(variant: str) -> None:
    objects = VARIANTS[variant]
    pdb, hpa = _find(objects, "PodDisruptionBudget"), _find(objects, "HorizontalPodAutoscaler")
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    labels = _find(BASE, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert _find(BASE, "Service")["spec"]["selector"].items() <= labels.items()


# ------------------------------------------------------------------------------------------ KServe
def _kserve_validator(version: str) -> jsonschema.protocols.Validator:
    """The vendored InferenceService schema with the Kubernetes PodSpec's properties merged into the
    predictor (its ``x-inline-podspec``) and the Kubernetes definitions registered for the ``$ref``s."""
    schema = json.loads(KSERVE_SCHEMA.read_text(encoding="utf-8"))
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}.0-local-strict"
    definitions = json.loads((root / "_definitions.json").read_text(encoding="utf-8"))
    predictor = schema["$defs"]["PredictorSpec"]
    pod_spec = definitions["$defs"][predictor.pop("x-inline-podspec")]
    assert not set(pod_spec["properties"]) & set(predictor["properties"])
    # containers → io.k8s.api.core.v1.Container; the copied "#/$defs/..." references point into the
    # definitions document.
    copied = json.dumps(pod_spec["properties"]).replace('"#/$defs/', f'"{definitions["$id"]}#/$defs/')
    predictor["properties"].update(json.loads(copied))
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


INFERENCE_SERVICE = _load_all(DEPLOY / "kserve" / "inferenceservice.yaml")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kserve_inference_service_validates(version: str) -> None:
    (isvc,) = INFERENCE_SERVICE
    _kserve_validator(version).validate(isvc)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "predictor", "containers", 0, "env", 0, "value"), "v3", "'v3' is not one of"),
        (("spec", "predictor", "scaleMetric"), "gpu", "'gpu' is not one of"),
        (("spec", "predictor", "containers", 0, "livenesProbe"), {}, "livenesProbe"),
        (("spec", "predictor", "minReplica"), 2, "minReplica"),
    ],
)
def test_kserve_schema_refuses_wrong_fields(path: tuple[Any, ...], value: Any, message: str) -> None:
    isvc = copy.deepcopy(INFERENCE_SERVICE[0])
    *parents, last = path
    node = isvc
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(jsonschema.ValidationError, match=message):
        _kserve_validator(K8S_VERSIONS[-1]).validate(isvc)


def test_kserve_predictor_speaks_open_inference_protocol_v2(client: TestClient) -> None:
    (isvc,) = INFERENCE_SERVICE
    container = isvc["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container"  # KServe's name for the predictor container
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    paths = {container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]}
    assert paths == {"/v2/health/ready", "/v2/health/live"}
    assert all(client.get(path).status_code == 200 for path in paths)
    infer = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a lovely day"]}]}
    assert client.post("/v2/models/fused-sentiment/infer", json=infer).status_code == 200
    assert container["ports"][0]["containerPort"] == Settings().port
    assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] > 10 + GRACEFUL_SHUTDOWN_TIMEOUT_S


# ------------------------------------------------------------------------------------------ compose
SCALE_COMPOSE = DEPLOY / "compose" / "docker-compose.scale.yml"


def _seconds(duration: str) -> int:
    """A compose duration written as whole seconds ("40s")."""
    assert re.fullmatch(r"\d+s", duration), duration
    return int(duration[:-1])


def test_scale_out_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(SCALE_COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scale_out_compose_file_puts_replicas_behind_the_tested_nginx_template() -> None:
    services = YAML(typ="safe").load(SCALE_COMPOSE.read_text(encoding="utf-8"))["services"]
    replicas, lb = services["sentiment"], services["lb"]
    assert "ports" not in replicas  # reached through nginx only, so any number of replicas fits
    assert replicas["build"]["target"] == "cpu"
    assert _seconds(replicas["stop_grace_period"]) > GRACEFUL_SHUTDOWN_TIMEOUT_S
    mounts = {m.split(":")[1]: m for m in lb["volumes"]}
    template = mounts["/etc/nginx/templates/default.conf.template"].split(":")[0]
    assert (SCALE_COMPOSE.parent / template).resolve() == (
        DEPLOY / "compose" / "nginx" / "default.conf.template"
    ).resolve()
    assert lb["environment"]["SENTIMENT_UPSTREAM"] == "sentiment:8000"
    assert lb["depends_on"]["sentiment"]["condition"] == "service_healthy"


def test_nginx_template_renders_one_server_line_per_replica_with_passive_health_checks() -> None:
    conf = render_server_conf(
        TEMPLATE.read_text(encoding="utf-8"), listen_port=18080, upstreams=["10.0.0.1:8000", "10.0.0.2:8000"]
    )
    assert "listen 18080;" in conf
    for address in ("10.0.0.1:8000", "10.0.0.2:8000"):
        assert f"server {address} max_fails=3 fail_timeout=10s;" in conf
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in conf


def test_nginx_template_limits_fit_the_service_defaults() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    settings = Settings()
    body = re.search(r"client_max_body_size (\d+)m;", text)
    assert body and int(body[1]) * 2**20 >= settings.max_body_bytes  # the service answers 413 itself
    reads = {location: int(seconds) for location, seconds in _location_read_timeouts(text).items()}
    assert reads["/"] > settings.request_timeout_s  # the service answers 504 itself first
    idle = re.search(r"keepalive_timeout (\d+)s;", text)
    # msa serve keeps uvicorn's default keep-alive timeout; nginx must close idle connections first.
    uvicorn_keep_alive_s = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
    assert idle and int(idle[1]) < uvicorn_keep_alive_s


def _location_read_timeouts(conf: str) -> dict[str, str]:
    """``location`` (its argument, modifier included) → its ``proxy_read_timeout`` seconds."""
    blocks = re.findall(r"location ([^{]+?) *[{]([^}]*)[}]", conf)
    out = {}
    for location, body in blocks:
        read = re.search(r"proxy_read_timeout (\d+)s;", body)
        assert read, f"location {location} sets no proxy_read_timeout"
        out[location.removeprefix("= ").removeprefix("~ ")] = read[1]
    return out


def test_nginx_gives_requests_of_many_items_a_longer_read_timeout() -> None:
    """The service's deadline starts for each item after its preprocessing, so a batch of media can take
    longer than a single request; its own location waits longer (a timeout also counts towards max_fails)."""
    conf = render_server_conf(TEMPLATE.read_text(encoding="utf-8"), listen_port=1, upstreams=["a:1"])
    reads = {location: int(seconds) for location, seconds in _location_read_timeouts(conf).items()}
    batch_routes = [r for r in reads if r != "/"]
    assert "/v1/predict/batch" in batch_routes
    (v2,) = [r for r in batch_routes if r.startswith("^/v2/")]
    for path in ("/v2/models/fused-sentiment/infer", "/v2/models/fused-sentiment/versions/1/infer"):
        assert re.match(v2, path)
    assert not re.match(v2, "/v2/models/fused-sentiment/ready")
    assert all(reads[r] >= 3 * Settings().request_timeout_s for r in batch_routes)
    assert all(reads[r] > reads["/"] for r in batch_routes)
    # Every location proxies to the replicas and inherits the retry policy set once in the server block.
    assert conf.count("proxy_pass http://sentiment_replicas;") == len(reads)
    assert conf.count("proxy_next_upstream error timeout") == 1


def test_nginx_render_refuses_a_template_with_an_unknown_placeholder() -> None:
    with pytest.raises(ValueError, match="NGINX_WORKERS"):
        render_server_conf(
            "server ${SENTIMENT_UPSTREAM};\nworker ${NGINX_WORKERS};", listen_port=1, upstreams=["a:1"]
        )
