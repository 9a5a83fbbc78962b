"""`serveplane convert`: KubeRay's RayService (or a RayCluster plus a Serve config) -> serveplane's resources.

Table tests of the pure mapping, then every KubeRay v1.5.0 sample of tests/fixtures/kuberay: it converts, every
document validates against its model, every leaf of the input is mapped or named in a `# not converted:` comment,
`serveplane render` accepts the output (and Serve's own schema its Serve config), and one sample checked by hand.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import io
import re
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from serveplane.operator import cli, convert
from serveplane.operator.api.application import ServeApplicationSpec
from serveplane.operator.api.cluster import ServeClusterSpec, ServeOptions
from serveplane.operator.api.deployment import (
    AutoscalingConfig,
    InlineDeployment,
    RayActorOptions,
    ServeDeploymentSpec,
)
from serveplane.operator.render import render

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "kuberay"
SERVICES = sorted(FIXTURES.glob("ray-service.*.yaml"))
CLUSTERS = sorted(FIXTURES.glob("ray-cluster.*.yaml"))
SERVE_CONFIG = FIXTURES / "serve-config.yaml"
SPECS: dict[str, type[BaseModel]] = {
    "ServeCluster": ServeClusterSpec,
    "ServeApplication": ServeApplicationSpec,
    "ServeDeployment": ServeDeploymentSpec,
}
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The first line of a note (a long one goes on in `#   ` lines): the path has no spaces.
NOTE = re.compile(r"^# not converted: (?P<path>\(the whole document\)|\S+?):(?: |$)")


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def serve_config() -> dict[str, Any]:
    loaded = yaml.safe_load(SERVE_CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def converted(path: Path) -> convert.Conversion:
    """A sample converted as the CLI would: a RayCluster with the Serve config of these tests."""
    docs = load(path)
    with_config = any(d.get("kind") == "RayCluster" for d in docs)
    return convert.convert(docs, serve_config() if with_config else None)


def active(conversion: convert.Conversion) -> list[dict[str, Any]]:
    """The documents printed as YAML (not commented out)."""
    return [o.obj for o in conversion.outputs if o.obj is not None and not o.disabled]


def leaves(value: Any, path: str = "") -> list[str]:
    """Every leaf of a document (scalars, empty maps and lists) by its path, written independently of the module
    under test; a RayService's serveConfigV2 (a YAML string) counts by the leaves of what it holds."""
    if isinstance(value, dict) and value:
        found = []
        for key, item in value.items():
            where = convert.child(path, str(key))
            if where.endswith("serveConfigV2") and isinstance(item, str):
                item = yaml.safe_load(item)
            found += leaves(item, where)
        return found
    if isinstance(value, list) and value:
        return [leaf for index, item in enumerate(value) for leaf in leaves(item, convert.child(path, index))]
    return [path]


def noted_paths(text: str) -> list[str]:
    """The paths named in the `# not converted:` comments of the printed YAML."""
    paths = []
    for line in text.splitlines():
        match = NOTE.match(line)
        if match:
            path = match["path"]
            paths.append("" if path == "(the whole document)" else path)
    return paths


# --- the pure mapping ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serve_name", "k8s"),
    [
        ("fruit_app", "fruit-app"),
        ("MangoStand", "mango-stand"),
        ("math_app-Router", "math-app-router"),
        ("llm", "llm"),
        ("__", "default"),
        ("a" * 80, "a" * 63),
        ("Summarizer v2!", "summarizer-v2"),
    ],
)
def test_serve_names_become_kubernetes_names(serve_name: str, k8s: str) -> None:
    assert convert.k8s_name(serve_name) == k8s
    assert DNS_NAME.match(convert.k8s_name(serve_name))


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        ("", "spec", "spec"),
        ("spec", "rayClusterConfig", "spec.rayClusterConfig"),
        ("spec.containers", 0, "spec.containers[0]"),
        ("metadata.annotations", "ray.io/ft-enabled", 'metadata.annotations["ray.io/ft-enabled"]'),
        ("spec.rayStartParams", "num-cpus", "spec.rayStartParams.num-cpus"),
    ],
)
def test_paths(path: str, key: str | int, expected: str) -> None:
    assert convert.child(path, key) == expected
    assert convert.within(expected, path)
    assert not convert.within(path + "x", expected) or path == ""


def test_a_nested_serve_setting_maps_key_by_key_and_an_unknown_one_is_noted() -> None:
    out = convert.Output(None, "test")
    mapped = convert.map_onto(
        InlineDeployment,
        {"ray_actor_options": {"num_cpus": 0.5, "no_such_option": 1}, "max_ongoing_requests": 5, "bogus": True},
        "d",
        out,
    )
    assert mapped == {"ray_actor_options": {"num_cpus": 0.5}, "max_ongoing_requests": 5}
    assert out.mapped == {"d.ray_actor_options.num_cpus", "d.max_ongoing_requests"}
    assert [n.path for n in out.notes] == ["d.ray_actor_options.no_such_option", "d.bogus"]
    assert "RayActorOptions has no field no_such_option" in out.notes[0].reason


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("num_replicas", "auto", "InlineDeployment.num_replicas refuses \"auto\""),
        ("num_replicas", 0, "greater than or equal to 1"),
        ("max_queued_requests", -2, "greater than or equal to -1"),
        ("autoscaling_config", {"min_replicas": -1}, "AutoscalingConfig.min_replicas refuses -1"),
    ],
)
def test_a_value_the_field_refuses_is_noted_not_emitted(key: str, value: Any, refused: str) -> None:
    out = convert.Output(None, "test")
    assert convert.map_onto(InlineDeployment, {key: value}, "d", out) == {}
    assert not out.mapped
    assert len(out.notes) == 1 and out.notes[0].path.startswith(f"d.{key}")
    assert refused in out.notes[0].reason


def test_a_field_the_models_gain_is_picked_up_without_a_change_to_the_converter() -> None:
    class Tomorrow(InlineDeployment):
        brand_new_option_s: float | None = None

    out = convert.Output(None, "test")
    assert convert.map_onto(Tomorrow, {"brand_new_option_s": 2}, "d", out) == {"brand_new_option_s": 2}
    assert out.mapped == {"d.brand_new_option_s"} and not out.notes


def _sample_value(model: type[BaseModel], name: str) -> Any:
    """A value the field takes whatever its type: its default when it has one (None for optional fields)."""
    info = model.model_fields[name]
    return None if info.is_required() or info.default is None else info.get_default(call_default_factory=True)


@pytest.mark.parametrize(
    ("model", "handled_apart"),
    [
        (InlineDeployment, {"name"}),
        (AutoscalingConfig, set()),
        (RayActorOptions, set()),
        # cluster: the ServeCluster's name; deployments: split into inline entries and ServeDeployments; the import
        # path (a colon may be added) and the gRPC servicers (from grpc_options) are mapped apart.
        (ServeApplicationSpec, {"cluster", "deployments", "import_path", "grpc_servicer_functions"}),
    ],
)
def test_every_field_of_the_models_is_reached_by_its_serve_name(
    model: type[BaseModel], handled_apart: set[str]
) -> None:
    """No field list lives in the converter: whatever field a model has (now, or once added) is found by name."""
    names = [n for n, info in model.model_fields.items() if n not in handled_apart and not info.is_required()]
    out = convert.Output(None, "test")
    mapped = convert.map_onto(model, {n: _sample_value(model, n) for n in names}, "x", out)
    assert not out.notes, out.notes
    assert set(mapped) == set(names)


def test_every_cluster_level_serve_option_is_reached() -> None:
    """ServeOptions' fields from the top level of a Serve config, and from its http_options/grpc_options sections by
    the model's naming (http_port, grpc_port, grpc_<option>; the HTTP proxy's others unprefixed)."""
    out = convert.Output(None, "test")
    config: dict[str, Any] = {"http_options": {}, "grpc_options": {}}
    for name in ServeOptions.model_fields:
        value = _sample_value(ServeOptions, name)
        if name.startswith("grpc_"):
            config["grpc_options"][name.removeprefix("grpc_")] = value
        elif name == "http_port":
            config["http_options"]["port"] = value
        else:
            config[name] = value
    options = convert.serve_options(config, "c", out)
    assert not out.notes, out.notes
    assert set(options) == set(ServeOptions.model_fields)


@pytest.mark.parametrize(
    ("section", "key", "field"),
    [
        ("http_options", "port", "http_port"),
        ("grpc_options", "port", "grpc_port"),
        ("http_options", "request_timeout_s", "request_timeout_s"),
    ],
)
def test_serve_option_sections_map_to_serve_options(section: str, key: str, field: str) -> None:
    out = convert.Output(None, "test")
    assert convert.serve_options({section: {key: 30}}, "c", out) == {field: 30}
    assert out.mapped == {f"c.{section}.{key}"}


def test_http_host_has_no_equivalent() -> None:
    out = convert.Output(None, "test")
    assert convert.serve_options({"http_options": {"host": "0.0.0.0"}, "target_capacity": 50}, "c", out) == {}
    assert {n.path: n.reason for n in out.notes} == {
        "c.http_options.host": "serveplane's proxies listen on all of the pod's addresses (0.0.0.0)",
        "c.target_capacity": "serveplane sets Serve's target_capacity itself while it upgrades a cluster",
    }


def test_reserved_ray_params_are_the_runtimes() -> None:
    """The converter cannot import the runtime (import contract), so it keeps the list; they must agree."""
    from serveplane.runtime.args import RESERVED_RAY_PARAMS

    assert convert.RESERVED_RAY_PARAMS == RESERVED_RAY_PARAMS


def test_the_converter_stays_in_the_pure_layer() -> None:
    """operator/convert/ imports nothing the pure layer's import contract forbids (nor any file or network module)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if "pure layer" in c["name"])
    forbidden = set(contract["forbidden_modules"]) | {"subprocess", "socket", "urllib", "os", "pathlib", "requests"}
    sources = sorted((ROOT / "operator" / "convert").glob("*.py"))
    assert sources
    tree = ast.Module([node for source in sources for node in ast.parse(source.read_text()).body], [])
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "serveplane.operator" + ("." + node.module if node.module else "") if node.level else node.module
            imported.add(str(base))
    assert not {m for m in imported for f in forbidden if m == f or m.startswith(f + ".")}


# --- RayService pieces ---------------------------------------------------------------------------------------------


def ray_service(serve: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A minimal RayService with one head and the given Serve config and spec fields."""
    cluster = spec.pop("rayClusterConfig", None) or {
        "headGroupSpec": {
            "rayStartParams": {},
            "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.46.0"}]}},
        }
    }
    config = serve if serve is not None else {"applications": [{"name": "app", "import_path": "m:app"}]}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "svc"},
        "spec": {"serveConfigV2": yaml.safe_dump(config), "rayClusterConfig": cluster, **spec},
    }


def cluster_spec(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    first = convert.convert([doc], **kw).outputs[0]
    assert first.obj is not None and first.obj["kind"] == "ServeCluster"
    spec: dict[str, Any] = first.obj["spec"]
    return spec


def notes_of(doc: dict[str, Any]) -> dict[str, str]:
    return {n.path: n.reason for o in convert.convert([doc]).outputs for n in o.notes}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"type": "NewCluster"}, {"type": "BlueGreen", "oldGenerationDelaySeconds": 30}),
        ({"type": "NewClusterWithIncrementalUpgrade"}, {"type": "Incremental", "oldGenerationDelaySeconds": 30}),
    ],
)
def test_upgrade_strategy(strategy: dict[str, Any], expected: dict[str, Any]) -> None:
    doc = ray_service(upgradeStrategy=strategy, rayClusterDeletionDelaySeconds=30)
    assert cluster_spec(doc)["upgradeStrategy"] == expected


def test_upgrade_strategies_without_an_equivalent_are_noted() -> None:
    options = {"maxSurgePercent": 50, "stepSizePercent": 10, "intervalSeconds": 30, "gatewayClassName": "istio"}
    doc = ray_service(upgradeStrategy={"type": "None", "clusterUpgradeOptions": options})
    notes = notes_of(doc)
    assert "always rolls a change out as a new generation" in notes["spec.upgradeStrategy.type"]
    assert "no percentages, interval or Gateway" in notes["spec.upgradeStrategy.clusterUpgradeOptions"]
    assert "upgradeStrategy" not in cluster_spec(doc)


def test_autoscaler() -> None:
    cluster = ray_service()["spec"]["rayClusterConfig"]
    cluster |= {
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Conservative", "idleTimeoutSeconds": 120, "version": "v1",
                              "resources": {"limits": {"cpu": "500m"}}},
    }
    doc = ray_service(rayClusterConfig=cluster)
    assert cluster_spec(doc)["autoscaling"] == {"enabled": True, "idleTimeoutSeconds": 120, "upscalingSpeed": 1.0}
    notes = notes_of(doc)
    assert "v2 autoscaler only" in notes["spec.rayClusterConfig.autoscalerOptions.version"]
    assert "autoscaler's container" in notes["spec.rayClusterConfig.autoscalerOptions.resources"]


def test_gcs_fault_tolerance_options() -> None:
    cluster = ray_service()["spec"]["rayClusterConfig"]
    cluster["gcsFaultToleranceOptions"] = {
        "redisAddress": "redis:6379",
        "externalStorageNamespace": "mine",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}},
        "redisUsername": {"value": "ray"},
    }
    doc = ray_service(rayClusterConfig=cluster)
    assert cluster_spec(doc)["gcsFaultTolerance"] == {
        "redisAddress": "redis:6379",
        "redisPassword": {"secretKeyRef": {"name": "redis", "key": "password"}},
        "externalStorageNamespace": "mine",
    }
    assert "user name" in notes_of(doc)["spec.rayClusterConfig.gcsFaultToleranceOptions.redisUsername"]


def test_a_redis_password_in_plain_text_is_not_converted() -> None:
    cluster = ray_service()["spec"]["rayClusterConfig"]
    cluster["gcsFaultToleranceOptions"] = {"redisAddress": "redis:6379", "redisPassword": {"value": "hunter2"}}
    doc = ray_service(rayClusterConfig=cluster)
    assert cluster_spec(doc)["gcsFaultTolerance"] == {"redisAddress": "redis:6379"}
    assert "from a Secret key only" in notes_of(doc)["spec.rayClusterConfig.gcsFaultToleranceOptions.redisPassword"]
    assert "hunter2" not in convert.to_yaml(convert.convert([doc]))


def test_the_ray_container() -> None:
    """KubeRay's first container is Ray's: what serveplane owns is noted, the rest goes to the podTemplate's `ray`."""
    cluster = ray_service()["spec"]["rayClusterConfig"]
    container = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    container |= {
        "resources": {"limits": {"cpu": "2"}},
        "env": [{"name": "A", "value": "1"}],
        "command": ["ray", "start"],
        "lifecycle": {"preStop": {"exec": {"command": ["ray", "stop"]}}},
        "volumeMounts": [{"name": "logs", "mountPath": "/tmp/ray"}],
        "ports": [{"name": "gcs-server", "containerPort": 6379}, {"name": "custom", "containerPort": 7777}],
        "imagePullPolicy": "Always",
    }
    cluster["headGroupSpec"]["template"]["spec"] |= {
        "volumes": [{"name": "logs", "emptyDir": {}}],
        "nodeSelector": {"pool": "cpu"},
        "containers": [container, {"name": "fluentbit", "image": "fluent/fluent-bit"}],
    }
    cluster["headGroupSpec"]["rayStartParams"] = {"num-cpus": 0, "dashboard-host": "0.0.0.0", "include-dashboard": True}
    doc = ray_service(rayClusterConfig=cluster)
    head = cluster_spec(doc)["head"]
    assert head == {
        "resources": {"limits": {"cpu": "2"}},
        "rayStartParams": {"num-cpus": "0", "include-dashboard": "true"},
        "env": [{"name": "A", "value": "1"}],
        "podTemplate": {
            "spec": {
                "volumes": [{"name": "logs", "emptyDir": {}}],
                "nodeSelector": {"pool": "cpu"},
                "containers": [
                    {
                        "name": "ray",
                        "volumeMounts": [{"name": "logs", "mountPath": "/tmp/ray"}],
                        "ports": [{"name": "custom", "containerPort": 7777}],
                        "imagePullPolicy": "Always",
                    },
                    {"name": "fluentbit", "image": "fluent/fluent-bit"},
                ]
            }
        },
    }
    notes = notes_of(doc)
    prefix = "spec.rayClusterConfig.headGroupSpec"
    container_path = f"{prefix}.template.spec.containers[0]"
    assert {f"{container_path}.command", f"{container_path}.lifecycle", f"{container_path}.ports[0]",
            f"{prefix}.rayStartParams.dashboard-host"} <= set(notes)
    assert "drains the node" in notes[f"{container_path}.lifecycle"]


def test_worker_groups_replicas_images_and_names() -> None:
    cluster = ray_service()["spec"]["rayClusterConfig"]
    template = {"spec": {"containers": [{"name": "w", "image": "rayproject/ray:2.46.0-gpu"}]}}
    cluster["workerGroupSpecs"] = [
        {"groupName": "GPU_Group", "replicas": 9, "minReplicas": 1, "maxReplicas": 4, "rayStartParams": {},
         "template": template, "idleTimeoutSeconds": 30, "numOfHosts": 1},
        {"groupName": "cpu", "minReplicas": 2, "maxReplicas": 3, "rayStartParams": {}, "template": template,
         "numOfHosts": 2},
    ]
    doc = ray_service(rayClusterConfig=cluster)
    groups = cluster_spec(doc)["workerGroups"]
    gpu_template = {"spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.46.0-gpu"}]}}
    assert groups == [
        {"name": "gpu-group", "replicas": 4, "minReplicas": 1, "maxReplicas": 4, "podTemplate": gpu_template},
        {"name": "cpu", "replicas": 2, "minReplicas": 2, "maxReplicas": 3, "podTemplate": gpu_template},
    ]
    notes = notes_of(doc)
    assert "one idle timeout" in notes["spec.rayClusterConfig.workerGroupSpecs[0].idleTimeoutSeconds"]
    assert "multi-host" in notes["spec.rayClusterConfig.workerGroupSpecs[1].numOfHosts"]
    assert "spec.rayClusterConfig.workerGroupSpecs[0].numOfHosts" not in notes


def test_image_option_replaces_every_ray_image() -> None:
    cluster = ray_service()["spec"]["rayClusterConfig"]
    template = {"spec": {"containers": [{"name": "w", "image": "rayproject/ray:2.46.0-gpu"}]}}
    cluster["workerGroupSpecs"] = [{"groupName": "gpu", "replicas": 1, "rayStartParams": {}, "template": template}]
    spec = cluster_spec(ray_service(rayClusterConfig=cluster), image="me/runtime:1")
    assert spec["image"] == "me/runtime:1"
    assert "podTemplate" not in spec["workerGroups"][0]


def test_serve_service_and_excluded_head() -> None:
    service = {"metadata": {"name": "mine", "annotations": {"lb": "internal"}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    doc = ray_service(serveService=service, excludeHeadPodFromServeSvc=True)
    assert cluster_spec(doc)["service"] == {"type": "LoadBalancer", "annotations": {"lb": "internal"}}
    notes = notes_of(doc)
    expected = {"spec.serveService.metadata.name", "spec.serveService.spec.ports", "spec.excludeHeadPodFromServeSvc"}
    assert expected <= set(notes)


def test_legacy_gcs_fault_tolerance_from_annotations_and_head_env() -> None:
    doc = next(d for d in load(FIXTURES / "ray-cluster.deprecate-gcs-ft.yaml") if d["kind"] == "RayCluster")
    spec = cluster_spec(doc)
    assert spec["gcsFaultTolerance"] == {
        "redisAddress": "redis:6379",
        "redisPassword": {"secretKeyRef": {"name": "redis-password-secret", "key": "password"}},
    }
    # Used by the GCS fault tolerance, so neither in the head's env nor in its flags.
    assert "env" not in spec["head"]
    assert spec["head"]["rayStartParams"] == {"num-cpus": "0"}


def test_applications_deployments_and_servicers() -> None:
    serve = {
        "grpc_options": {"port": 9100, "grpc_servicer_functions": ["pkg.a_pb2_grpc.add_AServicer_to_server"]},
        "applications": [
            {"name": "first_app", "import_path": "pkg.first", "route_prefix": "/first", "args": {"k": 1},
             "deployments": [
                 {"name": "Model", "num_replicas": "auto", "max_ongoing_requests": 3},
                 {"name": "Router", "autoscaling_config": {"min_replicas": 0, "max_replicas": 2}},
             ]},
            {"name": "second", "import_path": "pkg.second:app", "route_prefix": None},
        ],
    }
    outputs = convert.convert([ray_service(serve)]).outputs
    by_name = {o.obj["metadata"]["name"]: o for o in outputs if o.obj}
    first = by_name["first-app"].obj
    assert first is not None
    assert first["spec"] == {
        "cluster": "svc",
        "importPath": "pkg:first",
        "routePrefix": "/first",
        "args": {"k": 1},
        "grpcServicerFunctions": ["pkg.a_pb2_grpc.add_AServicer_to_server"],
        "deployments": [{"name": "Model", "maxOngoingRequests": 3}],  # Router: only its replicas, in a ServeDeployment
    }
    router = by_name["first-app-router"].obj
    assert router is not None
    assert router["spec"] == {"application": "first-app", "deploymentName": "Router",
                              "autoscalingConfig": {"minReplicas": 0, "maxReplicas": 2}}
    assert "first-app-model" not in by_name  # its num_replicas "auto" was refused: no ServeDeployment
    notes = {n.path: n.reason for o in outputs for n in o.notes}
    assert "refuses \"auto\"" in notes["spec.serveConfigV2.applications[0].deployments[0].num_replicas"]
    assert "without an HTTP route" in notes["spec.serveConfigV2.applications[1].route_prefix"]
    second = by_name["second"].obj
    assert second is not None and "routePrefix" not in second["spec"]
    assert by_name["svc"].obj is not None and by_name["svc"].obj["spec"]["serve"] == {"grpcPort": 9100}


def test_an_application_the_model_refuses_is_printed_commented_out() -> None:
    serve = {"applications": [{"name": "dashed", "import_path": "samples/dag:DagNode",
                               "deployments": [{"name": "D", "num_replicas": 2, "user_config": {"x": 1}}]}]}
    conversion = convert.convert([ray_service(serve)])
    app, sdep = conversion.outputs[1:]
    assert app.disabled and sdep.disabled
    assert [n.path for n in app.notes] == ["spec.serveConfigV2.applications[0]"]
    text = convert.to_yaml(conversion)
    assert "#   importPath: samples/dag:DagNode" in text
    assert "#   deployments:\n#   - name: D\n#     userConfig:" in text
    assert [d["kind"] for d in yaml.safe_load_all(text) if d] == ["ServeCluster"]


def test_other_documents_pass_through_and_other_ray_kinds_are_noted() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    job = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"}, "spec": {}}
    conversion = convert.convert([ray_service(), None, secret, job])
    assert conversion.sources == ["RayService svc", "passed through: Secret s", "RayJob j"]
    text = convert.to_yaml(conversion)
    assert "# not converted: (the whole document): RayJob is not converted" in text
    assert secret in list(yaml.safe_load_all(text))


@pytest.mark.parametrize(
    ("docs", "serve", "message"),
    [
        ([{"apiVersion": "v1", "kind": "Secret"}], None, "no RayService or RayCluster"),
        ([ray_service()], {"applications": []}, "exactly one RayCluster; the input has 0"),
    ],
)
def test_what_cannot_be_converted_at_all(docs: list[dict[str, Any]], serve: dict[str, Any] | None,
                                         message: str) -> None:
    with pytest.raises(convert.ConvertError, match=message):
        convert.convert(docs, serve)


# --- every KubeRay sample ------------------------------------------------------------------------------------------


SAMPLES = SERVICES + CLUSTERS


def test_the_samples_are_there() -> None:
    assert len(SERVICES) == 13 and len(CLUSTERS) >= 3


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_output_validates_against_the_models(sample: Path) -> None:
    conversion = converted(sample)
    docs = active(conversion)
    ours = [d for d in docs if d["apiVersion"] == "serveplane.dev/v1alpha1"]
    assert [d["kind"] for d in ours].count("ServeCluster") == 1
    for doc in ours:
        SPECS[doc["kind"]].model_validate(doc["spec"])
        assert DNS_NAME.match(doc["metadata"]["name"]), doc["metadata"]
    # What the text says is what the outputs are.
    assert [d for d in yaml.safe_load_all(convert.to_yaml(conversion)) if d] == docs


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_leaf_of_the_input_is_mapped_or_named_in_a_comment(sample: Path) -> None:
    """Per KubeRay document: each leaf is under a path the conversion mapped, or one a `# not converted:` comment
    of the printed output names; and each of those paths is really in the input."""
    for doc in load(sample):
        if doc.get("apiVersion") != "ray.io/v1":
            continue
        extra = serve_config() if doc["kind"] == "RayCluster" else None
        conversion = convert.convert([doc], extra)
        accounted = set().union(*(o.mapped for o in conversion.outputs))
        accounted |= set(noted_paths(convert.to_yaml(conversion)))
        inputs = leaves(doc) + (leaves(extra, convert.SERVE_CONFIG_FILE) if extra else [])
        missing = [leaf for leaf in inputs if not any(convert.within(leaf, path) for path in accounted)]
        assert not missing, f"{sample.name}: neither mapped nor noted: {missing}"
        stray = [path for path in accounted if not any(convert.within(leaf, path) for leaf in inputs)]
        assert not stray, f"{sample.name}: paths not in the input: {stray}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_serveplane_render_accepts_the_output(sample: Path) -> None:
    """The dry run composes a Serve config Serve's own schema accepts, and every resource is composed."""
    docs = active(converted(sample))
    sections = dict(render(docs, "serveplane/runtime:test"))
    assert not [title for title in sections if "invalid" in title], sections
    configs = [content for title, content in sections.items() if title.startswith("Serve config")]
    assert len(configs) == 1
    ServeDeploySchema.model_validate(configs[0])
    verdicts = sections["Verdicts"]
    apps = [d["metadata"]["name"] for d in docs if d["kind"] == "ServeApplication"]
    assert sorted(verdicts["applications"]) == sorted(apps)
    assert all(v.startswith("ok ") for table in verdicts.values() for v in table.values()), verdicts
    assert [a["name"] for a in configs[0]["applications"]] == sorted(apps)


def test_the_cli_prints_what_render_accepts(tmp_path: Path) -> None:
    sample = FIXTURES / "ray-cluster.complete.yaml"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as done:
        cli.main(["convert", str(sample), "--serve-config", str(SERVE_CONFIG), "--image", "me/runtime:1"])
    assert done.value.code == 0
    assert stdout.getvalue() == convert.to_yaml(convert.convert(load(sample), serve_config(), image="me/runtime:1"))
    converted_file = tmp_path / "converted.yaml"
    converted_file.write_text(stdout.getvalue())
    rendered = io.StringIO()
    with contextlib.redirect_stdout(rendered), pytest.raises(SystemExit) as done:
        cli.main(["render", str(converted_file)])
    assert done.value.code == 0
    assert "image: me/runtime:1" in rendered.getvalue()


def test_the_cli_says_what_it_cannot_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "secret.yaml"
    other.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
    with pytest.raises(SystemExit) as done:
        cli.main(["convert", str(other)])
    assert done.value.code == 1
    assert "serveplane convert: no RayService or RayCluster" in capsys.readouterr().err


# --- one sample, checked by hand -----------------------------------------------------------------------------------


def test_ray_service_sample_by_hand() -> None:
    """KubeRay's ray-service.sample.yaml: fruit_app at /fruit (MangoStand 2 replicas, its three others 1) and
    math_app at /calc (Adder, Multiplier, Router 1 each), on a head of 2 CPUs and one small-group worker (1-5)."""
    conversion = converted(FIXTURES / "ray-service.sample.yaml")
    docs = active(conversion)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("ServeCluster", "rayservice-sample"),
        ("ServeApplication", "fruit-app"),
        ("ServeDeployment", "fruit-app-mango-stand"),
        ("ServeDeployment", "fruit-app-orange-stand"),
        ("ServeDeployment", "fruit-app-pear-stand"),
        ("ServeDeployment", "fruit-app-fruit-market"),
        ("ServeApplication", "math-app"),
        ("ServeDeployment", "math-app-adder"),
        ("ServeDeployment", "math-app-multiplier"),
        ("ServeDeployment", "math-app-router"),
    ]
    cluster, fruit, math = docs[0]["spec"], docs[1]["spec"], docs[6]["spec"]
    assert cluster == {
        "image": "rayproject/ray:2.46.0",
        "head": {"resources": {"limits": {"cpu": 2, "memory": "5Gi"}, "requests": {"cpu": 2, "memory": "2Gi"}}},
        "workerGroups": [
            {"name": "small-group", "replicas": 1, "minReplicas": 1, "maxReplicas": 5,
             "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "2Gi"}}},
        ],
    }
    working_dir = "https://github.com/ray-project/test_dag/archive/78b4a5da38796123d9f9ffff59bab2792a043e95.zip"
    assert (fruit["routePrefix"], fruit["importPath"], fruit["runtimeEnv"]) == (
        "/fruit", "fruit:deployment_graph", {"working_dir": working_dir}
    )
    assert fruit["deployments"][0] == {
        "name": "MangoStand", "rayActorOptions": {"numCpus": 0.1}, "userConfig": {"price": 3}, "maxReplicasPerNode": 1
    }
    assert (math["routePrefix"], math["importPath"], [d["name"] for d in math["deployments"]]) == (
        "/calc", "conditional_dag:serve_dag", ["Adder", "Multiplier"]  # Router sets nothing but its replicas
    )
    replicas = {d["spec"]["deploymentName"]: d["spec"]["numReplicas"] for d in docs if d["kind"] == "ServeDeployment"}
    assert replicas == {"MangoStand": 2, "OrangeStand": 1, "PearStand": 1, "FruitMarket": 1, "Adder": 1,
                        "Multiplier": 1, "Router": 1}
    assert {d["spec"]["application"] for d in docs if d["kind"] == "ServeDeployment"} == {"fruit-app", "math-app"}
    assert noted_paths(convert.to_yaml(conversion)) == ["spec.rayClusterConfig.rayVersion"]


@pytest.mark.parametrize("text", ["8403e57", "1e3", "-2E-5", "0o17"])
def test_strings_kubectl_would_read_as_numbers_are_quoted(text: str) -> None:
    """PyYAML writes these plain (to YAML 1.1 they are strings); kubectl's reader would make numbers of them."""
    printed = convert.document_text(convert.Output({"args": {"revision": text}}, "test"))
    assert f"revision: '{text}'" in printed
    assert yaml.safe_load(printed) == {"args": {"revision": text}}


def test_names_stay_unique_across_the_documents_of_one_file() -> None:
    first, second = ray_service(), ray_service()
    second["metadata"]["name"] = "other"
    names = [o.obj["metadata"]["name"] for o in convert.convert([first, second]).outputs if o.obj]
    assert names == ["svc", "app", "other", "app-2"]


def _mangled(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The document with one part at a time replaced by a value of another shape (a serveConfigV2 part too)."""
    opened = copy.deepcopy(doc)
    if isinstance(opened["spec"].get("serveConfigV2"), str):
        opened["spec"]["serveConfigV2"] = yaml.safe_load(opened["spec"]["serveConfigV2"])

    def parts(value: Any, keys: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        yield keys
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, item in items:
            yield from parts(item, (*keys, key))

    # Not apiVersion or kind: without them nothing is a RayService any more.
    for keys in [k for k in parts(opened, ()) if k and k[0] not in ("apiVersion", "kind")]:
        for odd in (None, 7, "x", [], {}):
            mangled = copy.deepcopy(opened)
            target = mangled
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = odd
            if isinstance(mangled.get("spec"), dict) and isinstance(mangled["spec"].get("serveConfigV2"), dict | list):
                mangled["spec"]["serveConfigV2"] = yaml.safe_dump(mangled["spec"]["serveConfigV2"])
            yield f"{keys} = {odd!r}", mangled


@pytest.mark.parametrize("sample", ["ray-service.high-availability.yaml", "ray-cluster.deprecate-gcs-ft.yaml"])
def test_malformed_input_is_noted_never_a_crash(sample: str) -> None:
    """Every part of a sample replaced in turn by a value of the wrong shape: the conversion still finishes, its
    documents validate, and every leaf of the input is still mapped or named in a comment."""
    doc = next(d for d in load(FIXTURES / sample) if d["apiVersion"] == "ray.io/v1")
    extra = serve_config() if doc["kind"] == "RayCluster" else None
    for change, mangled in _mangled(doc):
        conversion = convert.convert([mangled], extra)
        for obj in active(conversion):
            SPECS[obj["kind"]].model_validate(obj["spec"])
        accounted = set().union(*(o.mapped for o in conversion.outputs))
        accounted |= set(noted_paths(convert.to_yaml(conversion)))
        inputs = leaves(mangled) + (leaves(extra, convert.SERVE_CONFIG_FILE) if extra else [])
        missing = [leaf for leaf in inputs if not any(convert.within(leaf, path) for path in accounted)]
        assert not missing, f"{change}: neither mapped nor noted: {missing}"
