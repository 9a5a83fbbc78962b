"""Every Serve option of the installed Ray has a place in the CRDs (or a reason in the README not to), the
composition puts each where Serve reads it, and the cross-field rules of Serve's schema are checked per
application before the one PUT that carries them all.
"""
from __future__ import annotations

import copy
import inspect
import re
import typing
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray.serve.config import AutoscalingConfig as RayAutoscalingConfig
    from ray.serve.schema import DeploymentSchema, ServeDeploySchema

from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.api.crdgen import all_crds
from serveplane.operator.compose import ServeView, compose, deployment_problem, servicers, start_key
from serveplane.operator.manifests import pods

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

# Ray fields whose CRD field is named otherwise: Ray path prefix -> (kind, CRD spec path) places.
RENAMED: dict[str, list[tuple[str, str]]] = {
    "proxy_location": [("ServeCluster", "serve.proxyLocation")],
    "http_options.port": [("ServeCluster", "serve.httpPort")],
    "http_options.request_timeout_s": [("ServeCluster", "serve.requestTimeoutS")],
    "http_options.keep_alive_timeout_s": [("ServeCluster", "serve.keepAliveTimeoutS")],
    "http_options.root_path": [("ServeCluster", "serve.rootPath")],
    "grpc_options.port": [("ServeCluster", "serve.grpcPort")],
    "grpc_options.grpc_servicer_functions": [("ServeApplication", "grpcServicerFunctions")],
    "grpc_options.request_timeout_s": [("ServeCluster", "serve.grpcRequestTimeoutS")],
    "grpc_options.enable_reflection": [("ServeCluster", "serve.grpcEnableReflection")],
    "controller_options.runtime_env": [("ServeCluster", "serve.controllerEnv")],
    "logging_config": [("ServeCluster", "serve.loggingConfig")],
    "tracing_config": [("ServeCluster", "serve.tracingConfig")],
    "applications.deployments": [("ServeApplication", "deployments"), ("ServeDeployment", "")],
    "applications": [("ServeApplication", "")],
}


def left_out() -> dict[str, str]:
    """The README's table of Serve fields left out on purpose: path -> reason."""
    text = README.read_text()
    table = text.split("Left out on purpose:", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {m.group(1): m.group(2).strip() for row in rows if (m := re.match(r"\| `([^`]+)` \|(.+)\|$", row))}


def _models(annotation: Any) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def ray_fields(model: type[BaseModel] = ServeDeploySchema, prefix: str = "") -> list[tuple[str, bool]]:
    """Every field path of Serve's deploy schema, each with whether Ray nests a model under it."""
    found = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _models(info.annotation)
        found.append((path, bool(nested)))
        for sub in nested:
            found += ray_fields(sub, f"{path}.")
    return found


def crd_schemas() -> dict[str, dict[str, Any]]:
    return {
        crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for crd in all_crds()
    }


def places(ray_path: str) -> list[tuple[str, str]]:
    """Where a Ray field goes: the longest renamed prefix's places, plus the rest camelCased."""
    prefix = max((p for p in RENAMED if ray_path == p or ray_path.startswith(p + ".")), key=len, default=None)
    if prefix is None:
        return [("ServeCluster", "serve." + ".".join(to_camel(part) for part in ray_path.split(".")))]
    rest = [to_camel(part) for part in ray_path[len(prefix):].split(".") if part]
    return [(kind, ".".join([p for p in (base, *rest) if p])) for kind, base in RENAMED[prefix]]


def crd_has(schema: dict[str, Any], path: str) -> bool:
    """Whether a CRD schema takes the path: a named property, or free-form data at or above it."""
    node = schema
    for part in [p for p in path.split(".") if p]:
        while node.get("type") == "array":
            node = node["items"]
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return True
        if part not in (node.get("properties") or {}):
            return False
        node = node["properties"][part]
    return True


def test_every_serve_field_is_in_the_crds_or_left_out_with_a_reason() -> None:
    schemas, skipped = crd_schemas(), left_out()
    assert skipped, "the README's table of left-out fields is missing"
    missing = []
    for path, nested in ray_fields():
        if any(path == s or path.startswith(s + ".") for s in skipped) or (nested and path not in RENAMED):
            continue  # a group Serve nests is checked field by field
        for kind, crd_path in places(path):
            if not crd_has(schemas[kind], crd_path):
                missing.append(f"{path} -> {kind}.spec.{crd_path}")
    assert not missing, (
        "Serve fields with no place in the CRDs and no reason in the README's 'Left out on purpose' table:\n"
        + "\n".join(missing)
    )


def test_the_left_out_list_names_real_serve_fields_that_the_crds_really_lack() -> None:
    real = {path for path, _ in ray_fields()}
    schemas = crd_schemas()
    for path, reason in left_out().items():
        assert path in real, f"README lists {path}, which Ray's schema does not have"
        assert len(reason) > 10, f"{path}: say why"
        if path.endswith(".name"):
            continue  # names are metadata or list keys, in the CRDs under that role
        assert not any(crd_has(schemas[k], p) for k, p in places(path)), f"{path} is in the CRDs after all"


def test_every_crd_field_with_a_serve_name_has_a_description() -> None:
    def walk(node: dict[str, Any], where: str) -> list[str]:
        bare = [] if node.get("description") else [where]
        for name, sub in (node.get("properties") or {}).items():
            bare += walk(sub, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            bare += walk(node["items"], f"{where}[]") if node["items"].get("properties") else []
        return bare

    bare = [p for kind, schema in crd_schemas().items() for p in walk(schema, kind) if "[]" not in p[-2:]]
    assert not bare, f"fields without a description (kubectl explain shows nothing): {bare}"


# --- composition: every option reaches Serve where Serve reads it ------------------------------------------------

EVERY_DEPLOYMENT_OPTION: dict[str, Any] = {
    "autoscalingConfig": {
        "minReplicas": 0, "maxReplicas": 4, "initialReplicas": 1, "targetOngoingRequests": 3,
        "upscaleDelayS": 5, "downscaleDelayS": 60, "metricsIntervalS": 2, "lookBackPeriodS": 20,
        "upscalingFactor": 1.5, "downscalingFactor": 0.5, "smoothingFactor": 1.0, "upscaleSmoothingFactor": 1.2,
        "downscaleSmoothingFactor": 0.8, "downscaleToZeroDelayS": 300, "aggregationFunction": "max",
        "policy": {"policyFunction": "ray.serve.autoscaling_policy:default_autoscaling_policy",
                   "policyKwargs": {"k": 1}},
    },
    "rayActorOptions": {
        "numCpus": 0.5, "numGpus": 0, "memory": 1000000, "resources": {"custom": 1}, "acceleratorType": "A100",
        "labelSelector": {"zone": "a"}, "fallbackStrategy": [{"label_selector": {"zone": "b"}}],
        "runtimeEnv": {"env_vars": {"A": "1"}},
    },
    "userConfig": {"threshold": 0.5},
    "maxOngoingRequests": 7,
    "maxQueuedRequests": 20,
    "backpressureConfig": {"statusCode": 429, "retryAfterS": 2},
    "healthCheckPeriodS": 3,
    "healthCheckTimeoutS": 9,
    "gracefulShutdownWaitLoopS": 1,
    "gracefulShutdownTimeoutS": 5,
    "placementGroupBundles": [{"CPU": 1}, {"CPU": 0.5}],
    "placementGroupStrategy": "SPREAD",
    "placementGroupBundleLabelSelector": [{"zone": "a"}],
    "loggingConfig": {"encoding": "JSON", "logLevel": "DEBUG", "logsDir": "/tmp/logs", "enableAccessLog": False,
                      "additionalLogStandardAttrs": ["lineno"]},
    "requestRouterConfig": {
        "requestRouterClass": "ray.serve._private.request_router:PowerOfTwoChoicesRequestRouter",
        "requestRouterKwargs": {"a": 1}, "requestRoutingStatsPeriodS": 5, "requestRoutingStatsTimeoutS": 10,
        "initialBackoffS": 0.1, "backoffMultiplier": 3, "maxBackoffS": 1,
    },
    "deploymentActors": [{"name": "cache", "actorClass": "mymodule:Cache", "initArgs": [1, "x"],
                          "initKwargs": {"size": 3}, "actorOptions": {"num_cpus": 0}}],
    "rollingUpdatePercentage": 0.5,
    "maxSurgePercent": 25,
}
EVERY_SERVE_OPTION: dict[str, Any] = {
    "httpPort": 8100, "grpcPort": 9100, "proxyLocation": "HeadOnly", "requestTimeoutS": 30, "keepAliveTimeoutS": 120,
    "rootPath": "/serve", "grpcRequestTimeoutS": 15, "grpcEnableReflection": False,
    "controllerEnv": {"RAY_SERVE_X": "1"},
    "loggingConfig": {"encoding": "TEXT", "logLevel": "WARNING", "enableAccessLog": True},
    "tracingConfig": {"enabled": True, "exporterImportPath": "mymodule:exporter", "samplingRatio": 0.1},
}


def _snake(value: Any) -> Any:
    """A wire value with Serve's snake_case keys, where the operator converts them (not in free-form data)."""
    free = {"userConfig", "policyKwargs", "requestRouterKwargs", "initKwargs", "actorOptions", "runtimeEnv",
            "resources", "labelSelector", "env_vars"}
    if isinstance(value, dict):
        return {(k if k[0].isupper() else _to_snake(k)): (v if k in free else _snake(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _to_snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _contains(big: Any, small: Any, where: str = "") -> list[str]:
    if isinstance(small, dict):
        if not isinstance(big, dict):
            return [f"{where}: {big!r} is not a map"]
        return [m for k, v in small.items() for m in _contains(big.get(k), v, f"{where}.{k}")]
    if isinstance(small, list) and isinstance(big, (list, tuple)):
        return [] if len(big) == len(small) and not [
            m for b, s in zip(big, small, strict=True) for m in _contains(b, s, where)] else [f"{where}: {big!r}"]
    return [] if big == small else [f"{where}: Serve has {big!r}, the CRD said {small!r}"]


def test_every_option_set_at_once_reaches_serve_where_serve_reads_it(k8s: Any) -> None:
    app = k8s.app("every", {
        "importPath": "models.every:build", "routePrefix": "/every",
        "runtimeEnv": {"env_vars": {"B": "2"}},
        "loggingConfig": {"logLevel": "ERROR"},
        "autoscalingPolicy": {"policyFunction": "mymodule:app_policy"},
        "grpcServicerFunctions": ["mymodule.greeter_pb2_grpc.add_GreeterServicer_to_server"],
        "deployments": [{"name": "Model", **copy.deepcopy(EVERY_DEPLOYMENT_OPTION)}],
    })
    spec = ServeClusterSpec.model_validate({"serve": EVERY_SERVE_OPTION})
    result = compose(spec, [app], [], ServeView())
    assert result.applications["every"].ok, result.applications["every"]
    parsed = ServeDeploySchema.model_validate(result.config).model_dump(mode="json")

    (deployment,) = parsed["applications"][0]["deployments"]
    problems = _contains(deployment, _snake(EVERY_DEPLOYMENT_OPTION), "deployment")
    problems += _contains(parsed["applications"][0], {
        "runtime_env": {"env_vars": {"B": "2"}}, "logging_config": {"log_level": "ERROR"},
    }, "application")
    problems += _contains(parsed, {
        "proxy_location": "HeadOnly",
        "http_options": {"port": 8100, "request_timeout_s": 30, "keep_alive_timeout_s": 120, "root_path": "/serve"},
        "grpc_options": {"port": 9100, "request_timeout_s": 15, "enable_reflection": False,
                         "grpc_servicer_functions": ["mymodule.greeter_pb2_grpc.add_GreeterServicer_to_server"]},
        "controller_options": {"runtime_env": {"env_vars": {"RAY_SERVE_X": "1"}}},
        "logging_config": {"encoding": "TEXT", "log_level": "WARNING", "enable_access_log": True},
        "tracing_config": {"enabled": True, "exporter_import_path": "mymodule:exporter", "sampling_ratio": 0.1},
    }, "serve")
    assert not problems, "\n".join(problems)
    assert result.config["applications"][0]["autoscaling_policy"] == {"policy_function": "mymodule:app_policy"}


def test_a_servedeployment_overrides_nested_options_key_by_key_and_lists_whole(k8s: Any) -> None:
    app = k8s.app("a", {"importPath": "m:app", "deployments": [{
        "name": "D", "loggingConfig": {"logLevel": "DEBUG", "encoding": "JSON"},
        "backpressureConfig": {"statusCode": 429}, "placementGroupBundles": [{"CPU": 1}, {"CPU": 1}],
        "userConfig": {"a": 1, "b": 2},
    }]})
    sdep = k8s.sdep("d", "a", {"deploymentName": "D", "loggingConfig": {"logLevel": "ERROR"},
                          "backpressureConfig": {"retryAfterS": 3}, "placementGroupBundles": [{"CPU": 2}],
                          "userConfig": {"b": 3}})
    result = compose(ServeClusterSpec(), [app], [sdep], ServeView(deployments={"a": frozenset({"D"})}))
    (deployment,) = result.config["applications"][0]["deployments"]
    assert deployment["logging_config"] == {"log_level": "ERROR", "encoding": "JSON"}
    assert deployment["backpressure_config"] == {"status_code": 429, "retry_after_s": 3}
    assert deployment["placement_group_bundles"] == [{"CPU": 2}]
    assert deployment["user_config"] == {"b": 3}
    ServeDeploySchema.model_validate(result.config)


# --- Serve's cross-field rules, checked per deployment -----------------------------------------------------------

GANG = {"gang_scheduling_config": {"gang_size": 2}}


@pytest.mark.parametrize(("settings", "problem"), [
    ({}, None),
    ({"num_replicas": 4, **GANG}, None),
    ({"num_replicas": 3, **GANG}, "numReplicas (3) must be a multiple of gangSchedulingConfig.gangSize (2)"),
    ({"autoscaling_config": {"min_replicas": 2, "max_replicas": 5}, **GANG}, None),
    ({"max_replicas_per_node": 1, **GANG}, "maxReplicasPerNode cannot be set with gangSchedulingConfig"),
    ({"placement_group_strategy": "PACK", "placement_group_bundles": [{"CPU": 1}], **GANG},
     "placementGroupStrategy cannot be set with gangSchedulingConfig"),
    ({"autoscaling_config": {"min_replicas": 2}},
     "autoscalingConfig.maxReplicas (1) must be at least minReplicas (2; Serve's default is 1)"),
    ({"autoscaling_config": {"max_replicas": 5}}, None),
    ({"autoscaling_config": {"min_replicas": 0, "max_replicas": 3, "initial_replicas": 4}},
     "autoscalingConfig.initialReplicas (4) must be between minReplicas (0) and maxReplicas (3)"),
    ({"autoscaling_config": {"max_replicas": 3, "initial_replicas": 0}},
     "autoscalingConfig.initialReplicas (0) must be between minReplicas (1) and maxReplicas (3)"),
    ({"placement_group_bundles": [{"CPU": 1}], "max_replicas_per_node": 2},
     "maxReplicasPerNode cannot be set with placementGroupBundles"),
    ({"placement_group_bundle_label_selector": [{"a": "b"}]},
     "placementGroupBundleLabelSelector needs placementGroupBundles"),
    ({"placement_group_bundles": [{"CPU": 1}] * 3, "placement_group_bundle_label_selector": [{"a": "b"}] * 2},
     "placementGroupBundleLabelSelector needs 1 selector or one per bundle (3), not 2"),
    ({"placement_group_bundles": [{"CPU": 1}] * 3, "placement_group_bundle_label_selector": [{"a": "b"}]}, None),
])
def test_the_cross_field_rules_are_serves(settings: dict[str, Any], problem: str | None) -> None:
    assert deployment_problem(settings) == problem
    # The mirror is faithful: Ray's own schema refuses exactly what is reported.
    # The mirror is faithful: Ray refuses exactly what is reported, in its schema or (autoscaling_config, which
    # the schema keeps as a map) when Serve builds the deployment.
    try:
        DeploymentSchema.model_validate({"name": "d", **settings})
        RayAutoscalingConfig(**settings.get("autoscaling_config", {}))
        refused = False
    except ValueError:
        refused = True
    assert refused == (problem is not None), settings


def test_an_application_breaking_a_rule_keeps_its_last_good_config_and_the_others_go_on(k8s: Any) -> None:
    good = k8s.app("good", {"importPath": "m:good"})
    bad = k8s.app("bad", {"importPath": "m:bad", "routePrefix": "/bad",
                          "deployments": [{"name": "D", "autoscalingConfig": {"minReplicas": 3}}]})
    last = {"name": "bad", "route_prefix": "/bad", "import_path": "m:bad", "args": {}, "deployments": []}
    result = compose(ServeClusterSpec(), [good, bad], [], ServeView(deployed={"bad": last}))
    assert result.applications["good"].ok
    verdict = result.applications["bad"]
    assert not verdict.ok and verdict.reason == "InvalidSettings"
    assert "deployment 'D': autoscalingConfig.maxReplicas (1) must be at least minReplicas (3" in verdict.message
    assert last in result.config["applications"]
    ServeDeploySchema.model_validate(result.config)


def test_a_servedeployment_that_breaks_a_rule_is_told_so_too(k8s: Any) -> None:
    app = k8s.app("a", {"importPath": "m:a", "deployments": [{"name": "D", "maxReplicasPerNode": 1}]})
    sdep = k8s.sdep("d", "a", {"deploymentName": "D", "placementGroupBundles": [{"CPU": 1}]})
    result = compose(ServeClusterSpec(), [app], [sdep], ServeView(deployments={"a": frozenset({"D"})}))
    for verdict in (result.applications["a"], result.deployments["d"]):
        assert not verdict.ok and verdict.reason == "InvalidSettings", verdict
        assert "maxReplicasPerNode cannot be set with placementGroupBundles" in verdict.message
    assert result.config["applications"] == []


def test_external_scaler_refuses_serve_autoscaling_in_the_same_application(k8s: Any) -> None:
    app = k8s.app("ext", {"importPath": "m:app", "externalScalerEnabled": True,
                          "deployments": [{"name": "D", "autoscalingConfig": {"maxReplicas": 3}}]})
    result = compose(ServeClusterSpec(), [app], [], ServeView())
    assert result.applications["ext"].reason == "InvalidSettings"
    assert "externalScalerEnabled" in result.applications["ext"].message
    fixed = k8s.app("ext", {"importPath": "m:app", "externalScalerEnabled": True,
                            "deployments": [{"name": "D", "numReplicas": 2}]})
    result = compose(ServeClusterSpec(), [fixed], [], ServeView())
    assert result.applications["ext"].ok
    assert result.config["applications"][0]["external_scaler_enabled"] is True
    ServeDeploySchema.model_validate(result.config)


# --- start options: what Serve reads only when it starts names the generation -------------------------------------

GREETER = "examples.greeter_pb2_grpc.add_GreeterServicer_to_server"


def test_the_grpc_servicers_are_the_union_of_the_applications_even_of_invalid_ones(k8s: Any) -> None:
    apps = [
        k8s.app("a", {"importPath": "m:a", "grpcServicerFunctions": [GREETER]}),
        k8s.app("b", {"importPath": "m:b", "grpcServicerFunctions": [GREETER, "x.y_pb2_grpc:add_YServicer_to_server"]}),
        k8s.app("c", {"importPath": "not an import path", "grpcServicerFunctions": ["z.z_pb2_grpc.add_Z"]}),
        k8s.app("gone", {"importPath": "m:g", "grpcServicerFunctions": ["g.g.add_G"]}, deleting=True),
    ]
    assert servicers(apps) == sorted([GREETER, "x.y_pb2_grpc:add_YServicer_to_server", "z.z_pb2_grpc.add_Z"])
    result = compose(ServeClusterSpec(), apps, [], ServeView())
    assert result.config["grpc_options"]["grpc_servicer_functions"] == servicers(apps)
    assert not result.applications["c"].ok


def test_a_servicer_that_is_no_import_path_is_refused(k8s: Any) -> None:
    result = compose(ServeClusterSpec(), [k8s.app("a", {"importPath": "m:a", "grpcServicerFunctions": ["oops"]})],
                     [], ServeView())
    assert result.applications["a"].reason == "InvalidSpec"
    assert "grpcServicerFunctions" in result.applications["a"].message


def generation(spec: ServeClusterSpec, apps: list[dict[str, Any]]) -> str:
    return pods.generation_name(cluster="demo", namespace="ns", uid="u", spec=spec, image="img:1",
                                serve_start=start_key(spec, apps))


def test_start_options_name_a_new_generation_and_plain_clusters_keep_theirs(k8s: Any) -> None:
    plain = ServeClusterSpec()
    http_app = k8s.app("h", {"importPath": "m:h", "args": {"x": 1}})
    grpc_app = k8s.app("g", {"importPath": "m:g", "grpcServicerFunctions": [GREETER]})
    before = pods.generation_name(cluster="demo", namespace="ns", uid="u", spec=plain, image="img:1")
    assert start_key(plain, [http_app]) is None
    assert generation(plain, [http_app]) == before, "an existing cluster must not roll on an operator upgrade"
    assert start_key(ServeClusterSpec.model_validate({"serve": {"httpPort": 8100}}), []) is None

    with_grpc = generation(plain, [http_app, grpc_app])
    assert with_grpc != before
    assert generation(plain, [grpc_app, http_app]) == with_grpc
    timeout = ServeClusterSpec.model_validate({"serve": {"requestTimeoutS": 5}})
    assert len({before, with_grpc, generation(timeout, [http_app])}) == 3
    # Logging is not a start option: Serve applies it to a running instance.
    logging = ServeClusterSpec.model_validate({"serve": {"loggingConfig": {"logLevel": "DEBUG"}}})
    assert generation(logging, [http_app]) == before
