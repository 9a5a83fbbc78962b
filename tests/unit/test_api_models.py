"""The pydantic models of the API: camelCase on the wire, validation of what users write."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from serveplane.operator import compose
from serveplane.operator.api.application import ServeApplicationSpec, ServeApplicationStatus
from serveplane.operator.api.base import API_VERSION, Condition, ConditionStatus
from serveplane.operator.api.cluster import (
    AuthMode,
    ProxyLocation,
    ServeClusterSpec,
    ServeClusterStatus,
    UpgradeType,
    WorkerGroupSpec,
)
from serveplane.operator.api.deployment import (
    AutoscalingConfig,
    InlineDeployment,
    ServeDeploymentSpec,
    ServeDeploymentStatus,
)
from serveplane.operator.api.kinds import KINDS


def error_fields(error: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in error.errors()}


def test_api_version():
    assert API_VERSION == "serveplane.dev/v1alpha1"
    assert {k.api_version for k in KINDS} == {API_VERSION}


# --- camelCase on the wire ---------------------------------------------------------------------------------


def test_application_spec_reads_camelcase_and_writes_it_back():
    wire = {
        "cluster": "demo",
        "importPath": "pkg.mod:app",
        "routePrefix": "/summarize",
        "args": {"model_name": "t5", "nested": {"a": [1, 2]}},
        "runtimeEnv": {"pip": ["torch"], "env_vars": {"A": "1"}},
        "deployments": [
            {"name": "Model", "numReplicas": 2, "rayActorOptions": {"numCpus": 0.5, "numGpus": 1}},
        ],
    }
    spec = ServeApplicationSpec.model_validate(wire)
    assert spec.import_path == "pkg.mod:app"
    assert spec.route_prefix == "/summarize"
    assert spec.runtime_env == {"pip": ["torch"], "env_vars": {"A": "1"}}
    assert spec.deployments[0].num_replicas == 2
    assert spec.deployments[0].ray_actor_options.num_cpus == 0.5
    # Free-form maps keep the user's own keys untouched (snake_case stays snake_case).
    assert spec.args == {"model_name": "t5", "nested": {"a": [1, 2]}}
    assert spec.to_wire() == {
        **wire,
        "deployments": [{"name": "Model", "numReplicas": 2, "rayActorOptions": {"numCpus": 0.5, "numGpus": 1.0}}],
    }


def test_to_wire_omits_unset_optionals_but_keeps_defaults():
    wire = ServeApplicationSpec.model_validate({"importPath": "a:b"}).to_wire()
    assert wire == {"cluster": "default", "importPath": "a:b", "deployments": []}


def test_snake_case_names_are_accepted_too():
    spec = ServeApplicationSpec.model_validate({"import_path": "a:b", "route_prefix": "/x"})
    assert spec.to_wire()["routePrefix"] == "/x"


def test_cluster_spec_round_trips_with_camelcase_nested_names():
    wire = {
        "image": "ray:x",
        "head": {"rayStartParams": {"num-cpus": "2"}, "env": [{"name": "A", "value": "1"}],
                 "resources": {"limits": {"cpu": 2, "memory": "4Gi"}},
                 "podTemplate": {"spec": {"nodeSelector": {"pool": "ray"}}}},
        "workerGroups": [{"name": "cpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 4, "rayStartParams": {},
                          "env": [],
                          "podTemplate": {"metadata": {"labels": {"team": "ml"}, "annotations": {"a": "b"}},
                                          "spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}}],
        "serve": {"httpPort": 8100, "grpcPort": 9100, "proxyLocation": "HeadOnly", "requestTimeoutS": 30.0},
        "service": {"type": "LoadBalancer", "annotations": {"a": "b"}},
        "ingress": {"enabled": True, "className": "nginx", "host": "h.example.com",
                    "tls": [{"hosts": ["h.example.com"], "secretName": "tls"}], "annotations": {}},
        "auth": {"mode": "Disabled"},
        "networkPolicy": {"enabled": False},
        "upgradeStrategy": {"type": "BlueGreen", "maxSurgePods": 3, "timeoutSeconds": 120,
                            "oldGenerationDelaySeconds": 5},
        "autoscaling": {"enabled": True, "idleTimeoutSeconds": 30, "upscalingSpeed": 2.0},
    }
    spec = ServeClusterSpec.model_validate(wire)
    assert spec.auth.mode is AuthMode.DISABLED and not spec.network_policy.enabled
    strategy = spec.upgrade_strategy
    assert strategy.type is UpgradeType.BLUE_GREEN
    assert (strategy.max_surge_pods, strategy.timeout_seconds, strategy.old_generation_delay_seconds) == (3, 120, 5)
    assert spec.serve.proxy_location is ProxyLocation.HEAD_ONLY
    assert spec.serve.request_timeout_s == 30.0
    assert spec.worker_groups[0].pod_template.metadata.labels == {"team": "ml"}
    assert spec.ingress.tls[0].secret_name == "tls"
    assert spec.head.ray_start_params == {"num-cpus": "2"}
    assert spec.worker_groups[0].bounds == (1, 4)
    assert spec.autoscaling.enabled and spec.autoscaling.idle_timeout_seconds == 30
    assert spec.to_wire() == wire


def test_cluster_spec_defaults():
    spec = ServeClusterSpec.model_validate({})
    assert (spec.serve.http_port, spec.serve.grpc_port) == (8000, 9000)
    assert spec.serve.proxy_location is ProxyLocation.EVERY_NODE
    assert spec.worker_groups == []
    assert spec.ingress.enabled is False
    assert spec.service.type.value == "ClusterIP"
    assert spec.auth.mode is AuthMode.TOKEN, "Ray's token authentication is on unless turned off"
    assert spec.network_policy.enabled is True
    strategy = spec.upgrade_strategy
    assert strategy.type is UpgradeType.INCREMENTAL, "a new generation grows pod by pod unless told otherwise"
    assert (strategy.max_surge_pods, strategy.timeout_seconds, strategy.old_generation_delay_seconds) == (1, 600, 30)
    assert spec.to_wire()["upgradeStrategy"] == {
        "type": "Incremental", "maxSurgePods": 1, "timeoutSeconds": 600, "oldGenerationDelaySeconds": 30,
    }


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"type": "Rolling"}, "upgradeStrategy.type"),
        ({"maxSurgePods": 0}, "upgradeStrategy.maxSurgePods"),
        ({"timeoutSeconds": 0}, "upgradeStrategy.timeoutSeconds"),
        ({"oldGenerationDelaySeconds": -1}, "upgradeStrategy.oldGenerationDelaySeconds"),
    ],
)
def test_upgrade_strategy_is_validated(strategy, field):
    with pytest.raises(ValidationError) as caught:
        ServeClusterSpec.model_validate({"upgradeStrategy": strategy})
    assert field in error_fields(caught.value)
    assert ServeClusterSpec.model_validate({"upgradeStrategy": {"oldGenerationDelaySeconds": 0}})


def test_cluster_status_carries_generations_and_the_upgrade_in_camelcase():
    wire = {
        "conditions": [], "desiredNodes": 3, "readyNodes": 3, "healthyProxies": 3, "applications": [],
        "activeGeneration": "aaaaa",
        "generations": [
            {"name": "aaaaa", "role": "Active", "headPod": "demo-aaaaa-head", "readyPods": 3, "servingPods": 2,
             "targetCapacity": 66.67, "trafficShare": 66.67},
            {"name": "bbbbb", "role": "Pending", "headPod": "demo-bbbbb-head", "readyPods": 1, "servingPods": 1,
             "targetCapacity": 33.33, "trafficShare": 33.33},
        ],
        "upgrade": {"generation": "bbbbb", "strategy": "Incremental", "startedAt": "2024-05-01T10:00:00Z",
                    "step": "Starting pod demo-bbbbb-worker-cpu-0 of the new generation (1/3)",
                    "appliedConfigHash": "h1", "appliedHeadUid": "u1", "appliedApps": "a1"},
        "redisNamespaces": ["c1-aaaaa", "c1-bbbbb"],
        "workerGroups": [{"name": "cpu", "desired": 2, "running": 1, "requested": 3, "minReplicas": 1,
                          "maxReplicas": 2, "rayResources": {"CPU": 2.0}}],
        "autoscaler": {"generation": "aaaaa", "groups": {"cpu": {"replicas": 3, "workersToDelete": []}},
                       "lastDecision": "cpu 2 -> 3 workers: Ray asked for 1 x cpu",
                       "lastDecisionTime": "2024-05-01T10:00:00Z"},
    }
    status = ServeClusterStatus.model_validate(wire)
    assert status.active_generation == "aaaaa"
    assert [(g.name, g.role, g.serving_pods) for g in status.generations] == [("aaaaa", "Active", 2),
                                                                             ("bbbbb", "Pending", 1)]
    assert status.upgrade is not None and status.upgrade.applied_head_uid == "u1"
    assert status.to_wire() == wire
    assert "upgrade" not in ServeClusterStatus().to_wire() and "activeGeneration" not in ServeClusterStatus().to_wire()


def test_deployment_spec_wire_names():
    wire = {
        "application": "app",
        "deploymentName": "Model",
        "autoscalingConfig": {"minReplicas": 0, "maxReplicas": 4, "targetOngoingRequests": 2.0,
                              "upscaleDelayS": 1.0, "lookBackPeriodS": 10.0},
        "userConfig": {"threshold": 0.5},
        "maxOngoingRequests": 8,
        "healthCheckPeriodS": 5.0,
        "gracefulShutdownTimeoutS": 0.0,
    }
    spec = ServeDeploymentSpec.model_validate(wire)
    assert spec.deployment_name == "Model"
    assert spec.autoscaling_config.look_back_period_s == 10.0
    assert spec.to_wire() == wire


def test_unknown_spec_fields_are_rejected():
    with pytest.raises(ValidationError) as error:
        ServeApplicationSpec.model_validate({"importPath": "a:b", "routPrefix": "/typo"})
    assert "routPrefix" in error_fields(error.value)
    with pytest.raises(ValidationError):
        ServeDeploymentSpec.model_validate({"application": "a", "replicas": 2})


def test_statuses_tolerate_unknown_fields_and_use_camelcase():
    status = ServeClusterStatus.model_validate({"readyNodes": 2, "fromTheFuture": True})
    assert status.ready_nodes == 2
    wire = ServeDeploymentStatus(replicas=1, target_replicas=2, serve_status="HEALTHY").to_wire()
    assert wire == {"conditions": [], "serveStatus": "HEALTHY", "replicas": 1, "targetReplicas": 2}
    app = ServeApplicationStatus(route_prefix="/a", observed_generation=3).to_wire()
    assert app["routePrefix"] == "/a" and app["observedGeneration"] == 3


def test_condition_wire_shape():
    condition = Condition.model_validate(
        {"type": "Ready", "status": "True", "reason": "Running", "message": "",
         "observedGeneration": 4, "lastTransitionTime": "2024-05-01T10:00:00Z"}
    )
    assert condition.status is ConditionStatus.TRUE
    wire = condition.to_wire()
    assert wire["observedGeneration"] == 4
    assert wire["lastTransitionTime"].startswith("2024-05-01T10:00:00")
    with pytest.raises(ValidationError):
        Condition.model_validate({"type": "Ready", "status": "Yes", "reason": "X"})


# --- import path --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["a:b", "pkg.mod:app", "serveplane.examples.hello:app", "_p.m2:build_app",
                                  "pkg:obj.attr", "ray-operator.config.samples.ray-serve.dag:DagNode"])
def test_good_import_paths(path):
    assert ServeApplicationSpec.model_validate({"importPath": path}).import_path == path


@pytest.mark.parametrize(
    "path",
    ["", "pkg.mod", "pkg.mod.app", "pkg/mod:app", "pkg.mod:", ":app", "pkg..mod:app", "1pkg:app",
     "pkg.mod:app:x", "pkg mod:app", "pkg.mod:app\n", "x" * 510 + ":y1", "-pkg:app", "pkg:app-x"],
)
def test_bad_import_paths_are_rejected_naming_the_field(path):
    with pytest.raises(ValidationError) as error:
        ServeApplicationSpec.model_validate({"importPath": path})
    assert error_fields(error.value) == {"importPath"}


def test_import_path_is_required():
    with pytest.raises(ValidationError) as error:
        ServeApplicationSpec.model_validate({})
    assert error_fields(error.value) == {"importPath"}


# --- route prefix ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/", "/a", "/summarize", "/v1/models", "/a-b_c.d~e", "/" + "x" * 255])
def test_good_route_prefixes(route):
    assert ServeApplicationSpec.model_validate({"importPath": "a:b", "routePrefix": route}).route_prefix == route


@pytest.mark.parametrize(
    "route",
    ["", "a", "a/b", "/a/", "//", "/a//b", "/a b", "/a?x=1", "/{id}", "/a#b", "/" + "x" * 256],
)
def test_bad_route_prefixes(route):
    with pytest.raises(ValidationError) as error:
        ServeApplicationSpec.model_validate({"importPath": "a:b", "routePrefix": route})
    assert error_fields(error.value) == {"routePrefix"}


def test_route_prefix_defaults_to_the_name():
    spec = ServeApplicationSpec.model_validate({"importPath": "a:b"})
    assert spec.route_prefix is None
    assert spec.effective_route_prefix("hello") == "/hello"
    explicit = ServeApplicationSpec.model_validate({"importPath": "a:b", "routePrefix": "/"})
    assert explicit.effective_route_prefix("hello") == "/"


# --- replicas -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [InlineDeployment, ServeDeploymentSpec])
@pytest.mark.parametrize("value", [0, -1])
def test_num_replicas_must_be_at_least_one(model, value):
    base = {"name": "D"} if model is InlineDeployment else {"application": "a"}
    with pytest.raises(ValidationError) as error:
        model.model_validate({**base, "numReplicas": value})
    assert error_fields(error.value) == {"numReplicas"}
    assert model.model_validate({**base, "numReplicas": 1}).num_replicas == 1


def test_num_replicas_must_be_an_integer():
    with pytest.raises(ValidationError):
        ServeDeploymentSpec.model_validate({"application": "a", "numReplicas": 1.5})


def test_autoscaling_allows_scale_to_zero_but_not_max_zero():
    assert AutoscalingConfig.model_validate({"minReplicas": 0, "maxReplicas": 1}).min_replicas == 0
    with pytest.raises(ValidationError):
        AutoscalingConfig.model_validate({"maxReplicas": 0})
    with pytest.raises(ValidationError):
        AutoscalingConfig.model_validate({"targetOngoingRequests": 0})


def test_deployment_spec_needs_an_application():
    with pytest.raises(ValidationError) as error:
        ServeDeploymentSpec.model_validate({"numReplicas": 1})
    assert "application" in error_fields(error.value)
    with pytest.raises(ValidationError):
        ServeDeploymentSpec.model_validate({"application": ""})


def test_inline_deployment_needs_a_name():
    with pytest.raises(ValidationError):
        ServeApplicationSpec.model_validate({"importPath": "a:b", "deployments": [{"numReplicas": 1}]})


@pytest.mark.parametrize("name", ["cpu", "gpu-a100", "g1"])
def test_worker_group_names_that_fit_a_pod_name(name):
    assert WorkerGroupSpec.model_validate({"name": name}).replicas == 1


@pytest.mark.parametrize("name", ["", "CPU", "-a", "a-", "a_b", "x" * 31])
def test_worker_group_names_that_do_not(name):
    with pytest.raises(ValidationError):
        WorkerGroupSpec.model_validate({"name": name})


@pytest.mark.parametrize(
    ("given", "bounds"),
    [({}, (0, 2)), ({"maxReplicas": 5}, (0, 5)), ({"minReplicas": 1}, (1, 2)), ({"minReplicas": 3, "maxReplicas": 3},
                                                                                (3, 3))],
)
def test_worker_group_bounds_default_to_zero_and_replicas(given, bounds):
    assert WorkerGroupSpec.model_validate({"name": "cpu", "replicas": 2, **given}).bounds == bounds


def test_a_worker_group_whose_min_exceeds_its_max_is_refused_naming_both():
    with pytest.raises(ValidationError) as error:
        WorkerGroupSpec.model_validate({"name": "cpu", "minReplicas": 3, "maxReplicas": 2})
    assert "minReplicas must not exceed maxReplicas" in str(error.value)


@pytest.mark.parametrize("node", ["head", "group"])
@pytest.mark.parametrize("place", ["resources", "template"])
def test_a_resource_quantity_kubernetes_would_refuse_makes_the_spec_invalid(node, place):
    bad = {"limits": {"cpu": "2 cores"}}
    body = {"resources": bad} if place == "resources" else {
        "podTemplate": {"spec": {"containers": [{"name": "ray", "resources": bad}]}}}
    wire = {"head": body} if node == "head" else {"workerGroups": [{"name": "g", **body}]}
    with pytest.raises(ValidationError) as error:
        ServeClusterSpec.model_validate(wire)
    assert "limits.cpu: '2 cores' is not a Kubernetes quantity" in str(error.value)


def test_quantities_of_other_containers_and_in_every_form_are_accepted():
    good = {"requests": {"cpu": "500m", "memory": "1500M"}, "limits": {"cpu": 2, "memory": "4Gi", "x/y": "1e9"}}
    sidecar = {"name": "log", "resources": {"limits": {"cpu": "whatever"}}}
    spec = ServeClusterSpec.model_validate(
        {"head": {"resources": good, "podTemplate": {"spec": {"containers": [sidecar]}}}})
    assert spec.head.resources == good


@pytest.mark.parametrize(
    ("template_spec", "message"),
    [
        ({"volumes": {"name": "x"}}, "volumes must be a list of objects"),
        ({"initContainers": ["busybox"]}, "initContainers must be a list of objects"),
        ({"containers": [{"name": "ray", "env": {"A": "1"}}]}, "containers[ray].env must be a list of objects"),
        ({"containers": [{"name": "ray", "volumeMounts": ["/data"]}]}, "containers[ray].volumeMounts must be"),
    ],
)
def test_pod_template_lists_merged_entry_by_entry_must_hold_objects(template_spec, message):
    with pytest.raises(ValidationError) as error:
        ServeClusterSpec.model_validate({"workerGroups": [{"name": "g", "podTemplate": {"spec": template_spec}}]})
    assert message in str(error.value)


def test_pod_template_metadata_is_labels_and_annotations_only():
    with pytest.raises(ValidationError):
        ServeClusterSpec.model_validate({"head": {"podTemplate": {"metadata": {"name": "mine"}}}})
    with pytest.raises(ValidationError):
        ServeClusterSpec.model_validate({"head": {"podTemplate": {"status": {}}}})


@pytest.mark.parametrize("port", [0, 65536])
def test_ports_are_bounded(port):
    with pytest.raises(ValidationError):
        ServeClusterSpec.model_validate({"serve": {"httpPort": port}})


def test_proxy_location_is_an_enum():
    with pytest.raises(ValidationError):
        ServeClusterSpec.model_validate({"serve": {"proxyLocation": "Everywhere"}})


# --- what the API server admits, the models refuse the same way (issue 20) -------------------------------------


@pytest.mark.parametrize("serve", [{"httpPort": 9000, "grpcPort": 9000}, {"grpcPort": 8000}, {"httpPort": 9000}])
def test_http_and_grpc_ports_must_differ(serve):
    with pytest.raises(ValidationError) as error:
        ServeClusterSpec.model_validate({"serve": serve})
    assert "httpPort and grpcPort must differ" in str(error.value)


@pytest.mark.parametrize(
    ("entry", "field"),
    [({"name": {"a": 1}}, "env.0.name"), ({"name": ""}, "env.0.name"), ({"value": "x"}, "env.0.name"),
     ({"name": "A", "value": 1}, "env.0.value"), ({"name": "A", "valueFrom": "x"}, "env.0.valueFrom"),
     ({"name": "A", "valeu": "x"}, "env.0.valeu")],
)
def test_env_entries_are_typed(entry, field):
    with pytest.raises(ValidationError) as error:
        ServeClusterSpec.model_validate({"head": {"env": [entry]}})
    assert field in compose.validation_message(error.value)


def test_env_entries_go_back_to_the_wire_as_written():
    env = [{"name": "A", "value": ""}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    spec = ServeClusterSpec.model_validate({"head": {"env": env}})
    assert spec.to_wire()["head"]["env"] == env


@pytest.mark.parametrize(
    ("resources", "message"),
    [({"limits": {"cpu": "-500m"}}, "limits.cpu: '-500m' is negative"),
     ({"requests": {"memory": "1e1000000"}}, "requests.memory: '1e1000000' is out of range"),
     ({"limits": {"cpu": "1" * 65}}, "limits.cpu: at most 64 characters"),
     ({"limits": {f"r{i}": 1 for i in range(33)}}, "limits: at most 32 resources")],
)
def test_quantities_out_of_range_are_refused(resources, message):
    with pytest.raises(ValidationError) as error:
        ServeClusterSpec.model_validate({"workerGroups": [{"name": "g", "resources": resources}]})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("template_spec", "message"),
    [({"volumes": [{"name": ["x"]}]}, "volumes[0].name must be a non-empty string"),
     ({"volumes": [{"emptyDir": {}}]}, "volumes[0].name must be a non-empty string"),
     ({"containers": [{"name": {"n": 1}}]}, "containers[0].name must be a non-empty string"),
     ({"containers": [{"name": "ray", "env": [{"name": ["A"]}]}]}, "containers[ray].env[0].name"),
     ({"containers": [{"name": "ray", "volumeMounts": [{"name": "v"}]}]}, "containers[ray].volumeMounts[0].mountPath"),
     ({"containers": [{"name": "ray", "ports": [{"name": 7}]}]}, "containers[ray].ports[0].name"),
     ({"containers": [{"name": "ray", "resources": {"limits": {"cpu": "1e5000"}}}]},
      "containers[ray].resources: limits.cpu: '1e5000' is out of range")],
)
def test_pod_template_entries_merged_by_a_key_need_that_key_as_a_string(template_spec, message):
    with pytest.raises(ValidationError) as error:
        ServeClusterSpec.model_validate({"head": {"podTemplate": {"spec": template_spec}}})
    assert message in str(error.value)


def test_a_ray_container_port_may_have_no_name():
    spec = {"containers": [{"name": "ray", "ports": [{"containerPort": 7000}]}]}
    assert ServeClusterSpec.model_validate({"head": {"podTemplate": {"spec": spec}}})
