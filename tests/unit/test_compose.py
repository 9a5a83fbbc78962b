"""compose(): ServeCluster + ServeApplications + ServeDeployments -> one Serve config, and a verdict for each.

Every config composed here goes through Ray's own ServeDeploySchema (the `compose_ok` helper), since that is
what the dashboard's PUT parses first: a config it refuses takes every application of the cluster down.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own pydantic-v1-style fields
    from ray.serve.config import AutoscalingConfig as RayAutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.compose import Composition, ServeView, compose, config_hash

pytestmark = pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning")

T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"


def cluster_spec(**wire: Any) -> ServeClusterSpec:
    return ServeClusterSpec.model_validate(wire)


def serve_accepts(config: dict[str, Any]) -> None:
    """Fails the test when Serve would refuse the body.

    ServeDeploySchema is what the dashboard's PUT parses before anything else (a refusal there fails the PUT of
    every application). It keeps autoscaling_config as a plain dict, so that is also checked against Ray's
    AutoscalingConfig, which Serve applies when it builds the application (and which catches misnamed keys).
    """
    try:
        ServeDeploySchema.model_validate(config)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        pytest.fail(f"Serve's PUT would refuse the whole composed config, every application with it:\n{error}")
    for app in config["applications"]:
        for deployment in app.get("deployments") or []:
            if "autoscaling_config" in deployment:
                RayAutoscalingConfig(**deployment["autoscaling_config"])


def compose_ok(
    applications: list[dict[str, Any]],
    deployments: list[dict[str, Any]] | None = None,
    serve: ServeView | None = None,
    cluster: ServeClusterSpec | None = None,
) -> Composition:
    inputs = copy.deepcopy((applications, deployments))
    result = compose(cluster or cluster_spec(), applications, deployments or [], serve)
    assert (applications, deployments) == inputs, "compose must not modify its inputs"
    serve_accepts(result.config)
    assert result.config_hash == config_hash(result.config)
    return result


def app_config(result: Composition, name: str) -> dict[str, Any]:
    (found,) = [a for a in result.config["applications"] if a["name"] == name]
    return found


def deployment(result: Composition, app: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in app_config(result, app)["deployments"] if d["name"] == name]
    return found


# --- the shape of the body ---------------------------------------------------------------------------------


def test_full_config_maps_camelcase_to_serve_snake_case_and_serve_accepts_it(k8s):
    cluster = cluster_spec(serve={"httpPort": 8100, "grpcPort": 9100, "proxyLocation": "HeadOnly",
                                  "requestTimeoutS": 12.5})
    app = k8s.app("summarize", {
        "importPath": "models.summarize:build",
        "routePrefix": "/summarize",
        "args": {"model_name": "t5-small", "limits": {"max_tokens": 64}},
        "runtimeEnv": {"env_vars": {"HF_HOME": "/cache"}, "pip": ["transformers"]},
        "deployments": [{
            "name": "Summarizer",
            "autoscalingConfig": {"minReplicas": 0, "maxReplicas": 4, "initialReplicas": 1,
                                  "targetOngoingRequests": 2, "upscaleDelayS": 3, "downscaleDelayS": 60,
                                  "metricsIntervalS": 5, "lookBackPeriodS": 20, "upscalingFactor": 1.5,
                                  "downscalingFactor": 0.5},
            "rayActorOptions": {"numCpus": 0.5, "numGpus": 0, "memory": 2_000_000_000, "resources": {"tpu": 1}},
            "userConfig": {"threshold": 0.9, "camelKey": {"innerKey": 1}},
            "maxOngoingRequests": 8,
            "maxQueuedRequests": 100,
            "maxReplicasPerNode": 2,
            "healthCheckPeriodS": 5,
            "healthCheckTimeoutS": 15,
            "gracefulShutdownWaitLoopS": 1,
            "gracefulShutdownTimeoutS": 20,
        }],
    })
    result = compose_ok([app], cluster=cluster)
    assert result.config["proxy_location"] == "HeadOnly"
    assert result.config["http_options"] == {"host": "0.0.0.0", "port": 8100, "request_timeout_s": 12.5}
    assert result.config["grpc_options"]["port"] == 9100
    assert app_config(result, "summarize") == {
        "name": "summarize",
        "route_prefix": "/summarize",
        "import_path": "models.summarize:build",
        "args": {"model_name": "t5-small", "limits": {"max_tokens": 64}},
        "runtime_env": {"env_vars": {"HF_HOME": "/cache"}, "pip": ["transformers"]},
        "deployments": [{
            "name": "Summarizer",
            "autoscaling_config": {"min_replicas": 0, "max_replicas": 4, "initial_replicas": 1,
                                   "target_ongoing_requests": 2, "upscale_delay_s": 3, "downscale_delay_s": 60,
                                   "metrics_interval_s": 5, "look_back_period_s": 20, "upscaling_factor": 1.5,
                                   "downscaling_factor": 0.5},
            "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0, "memory": 2_000_000_000,
                                  "resources": {"tpu": 1}},
            # user_config is the application's own data: its keys are passed through untouched.
            "user_config": {"threshold": 0.9, "camelKey": {"innerKey": 1}},
            "max_ongoing_requests": 8,
            "max_queued_requests": 100,
            "max_replicas_per_node": 2,
            "health_check_period_s": 5,
            "health_check_timeout_s": 15,
            "graceful_shutdown_wait_loop_s": 1,
            "graceful_shutdown_timeout_s": 20,
        }],
    }
    parsed = ServeDeploySchema.model_validate(result.config)
    (parsed_app,) = parsed.applications
    assert parsed_app.deployments[0].autoscaling_config["max_replicas"] == 4
    assert parsed.proxy_location.value == "HeadOnly"
    assert parsed.http_options.request_timeout_s == 12.5


def test_defaults_every_node_no_timeout_no_runtime_env(k8s):
    result = compose_ok([k8s.app("hello")])
    assert result.config["proxy_location"] == "EveryNode"
    assert result.config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert result.config["grpc_options"] == {"port": 9000, "grpc_servicer_functions": []}
    assert app_config(result, "hello") == {
        "name": "hello", "route_prefix": "/hello", "import_path": "apps.hello:app", "args": {}, "deployments": [],
    }


def test_no_settings_anywhere_leaves_the_code_defaults(k8s):
    result = compose_ok([k8s.app("a", {"deployments": [{"name": "D"}]})])
    assert app_config(result, "a")["deployments"] == [{"name": "D"}]


def test_empty_cluster_is_an_empty_but_valid_body():
    result = compose_ok([])
    assert result.config["applications"] == []
    assert result.app_names == []
    assert result.applications == {} and result.deployments == {}


def test_all_applications_in_one_body_sorted_by_name(k8s):
    apps = [k8s.app("zeta", created=T0), k8s.app("alpha", created=T2), k8s.app("mid", created=T1)]
    result = compose_ok(apps)
    assert result.app_names == ["alpha", "mid", "zeta"]
    assert [a["route_prefix"] for a in result.config["applications"]] == ["/alpha", "/mid", "/zeta"]
    assert all(v.ok and v.reason == "Composed" for v in result.applications.values())
    assert set(result.applications) == {"alpha", "mid", "zeta"}


def test_deployments_within_an_application_are_sorted(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Zed", "numReplicas": 1}, {"name": "Abe", "numReplicas": 2}]})
    sdeps = [k8s.sdep("m", "a", {"deploymentName": "Mid", "numReplicas": 3})]
    result = compose_ok([app], sdeps, ServeView(deployments={"a": frozenset({"Zed", "Abe", "Mid"})}))
    assert [d["name"] for d in app_config(result, "a")["deployments"]] == ["Abe", "Mid", "Zed"]


# --- precedence --------------------------------------------------------------------------------------------

KNOWN = ServeView(deployments={"a": frozenset({"Model", "Ingress"})})


def test_servedeployment_overrides_inline_settings_field_by_field(k8s):
    app = k8s.app("a", {"deployments": [{
        "name": "Model", "numReplicas": 2, "maxOngoingRequests": 5, "userConfig": {"v": 1},
        "rayActorOptions": {"numCpus": 0.5},
    }]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "userConfig": {"v": 2}, "healthCheckPeriodS": 7})
    result = compose_ok([app], [sdep], KNOWN)
    assert deployment(result, "a", "Model") == {
        "name": "Model",
        "num_replicas": 2,  # inline, untouched by the ServeDeployment
        "max_ongoing_requests": 5,
        "ray_actor_options": {"num_cpus": 0.5},
        "user_config": {"v": 2},  # the ServeDeployment wins
        "health_check_period_s": 7,
    }
    assert result.deployments["model"].ok and result.deployments["model"].reason == "Composed"


def test_servedeployment_num_replicas_wins_over_inline_num_replicas(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Model", "numReplicas": 2}]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 5})
    assert deployment(compose_ok([app], [sdep], KNOWN), "a", "Model") == {"name": "Model", "num_replicas": 5}


def test_servedeployment_num_replicas_drops_inline_autoscaling(k8s):
    app = k8s.app("a", {"deployments": [{
        "name": "Model", "autoscalingConfig": {"minReplicas": 1, "maxReplicas": 8}, "maxOngoingRequests": 4,
    }]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 3})
    got = deployment(compose_ok([app], [sdep], KNOWN), "a", "Model")
    assert got == {"name": "Model", "num_replicas": 3, "max_ongoing_requests": 4}


def test_servedeployment_autoscaling_drops_inline_num_replicas(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Model", "numReplicas": 2, "userConfig": {"k": 1}}]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "autoscalingConfig": {"minReplicas": 0,
                                                                                     "maxReplicas": 3}})
    got = deployment(compose_ok([app], [sdep], KNOWN), "a", "Model")
    assert got == {"name": "Model", "autoscaling_config": {"min_replicas": 0, "max_replicas": 3},
                   "user_config": {"k": 1}}


def test_servedeployment_without_a_replica_mode_keeps_the_inline_one(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Model", "autoscalingConfig": {"maxReplicas": 8}}]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "maxOngoingRequests": 3})
    got = deployment(compose_ok([app], [sdep], KNOWN), "a", "Model")
    assert got == {"name": "Model", "autoscaling_config": {"max_replicas": 8}, "max_ongoing_requests": 3}


def test_servedeployment_for_a_deployment_not_listed_inline(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Ingress", "numReplicas": 1}]})
    sdep = k8s.sdep("Model", "a", {"numReplicas": 2})  # deploymentName defaults to metadata.name
    result = compose_ok([app], [sdep], KNOWN)
    assert app_config(result, "a")["deployments"] == [
        {"name": "Ingress", "num_replicas": 1}, {"name": "Model", "num_replicas": 2},
    ]


def test_servedeployments_of_other_applications_do_not_leak(k8s):
    apps = [k8s.app("a"), k8s.app("b")]
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 2})
    result = compose_ok(apps, [sdep], ServeView(deployments={"a": frozenset({"Model"}), "b": frozenset({"Model"})}))
    assert app_config(result, "b")["deployments"] == []
    assert deployment(result, "a", "Model")["num_replicas"] == 2


# --- numReplicas together with autoscalingConfig in one layer -------------------------------------------------
# The CRDs forbid this with a CEL rule; pydantic does not. Whatever reaches compose (an object stored before the
# rule existed, an API server without CEL, `serveplane render` with no API server at all) must not produce a
# body Serve refuses, because that refusal blocks every application of the cluster, not just the bad one.


def test_inline_num_replicas_with_autoscaling_is_isolated_not_sent_to_serve(k8s):
    good = k8s.app("good", created=T0)
    bad = k8s.app("bad", {"deployments": [{"name": "D", "numReplicas": 2,
                                           "autoscalingConfig": {"maxReplicas": 3}}]}, created=T1)
    result = compose_ok([good, bad])  # serve_accepts() raises on the current behaviour
    assert result.app_names == ["good"]
    verdict = result.applications["bad"]
    assert not verdict.ok
    assert "numReplicas" in verdict.message and "autoscalingConfig" in verdict.message


def test_servedeployment_with_num_replicas_and_autoscaling_is_isolated(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Model", "numReplicas": 1}]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 2,
                                   "autoscalingConfig": {"maxReplicas": 3}})
    result = compose_ok([app], [sdep], KNOWN)
    assert deployment(result, "a", "Model") == {"name": "Model", "num_replicas": 1}
    assert not result.deployments["model"].ok
    assert "autoscalingConfig" in result.deployments["model"].message


# --- isolation of invalid applications ---------------------------------------------------------------------


def test_invalid_application_is_left_out_and_others_stay(k8s):
    good = k8s.app("good", created=T1)
    bad = k8s.app("bad", {"importPath": "not-an-import-path"}, created=T0)
    result = compose_ok([good, bad])
    assert result.app_names == ["good"]
    verdict = result.applications["bad"]
    assert (verdict.ok, verdict.reason, verdict.waiting) == (False, "InvalidSpec", False)
    assert "spec.importPath" in verdict.message
    assert result.applications["good"].ok


def test_invalid_nested_field_is_named_with_its_path(k8s):
    bad = k8s.app("bad", {"deployments": [{"name": "D", "numReplicas": 0}]})
    verdict = compose_ok([bad]).applications["bad"]
    assert verdict.reason == "InvalidSpec"
    assert "spec.deployments.0.numReplicas" in verdict.message


def test_unknown_field_in_application_is_invalid_spec(k8s):
    verdict = compose_ok([k8s.app("bad", {"routPrefix": "/typo"})]).applications["bad"]
    assert verdict.reason == "InvalidSpec" and "routPrefix" in verdict.message


def test_invalid_application_keeps_serves_last_good_config(k8s):
    last_good = {"name": "bad", "route_prefix": "/bad", "import_path": "apps.bad:app", "args": {"v": 1},
                 "deployments": [{"name": "D", "num_replicas": 2}]}
    bad = k8s.app("bad", {"importPath": "broken"}, created=T0)
    good = k8s.app("good", created=T1)
    result = compose_ok([bad, good], serve=ServeView(deployed={"bad": copy.deepcopy(last_good)}))
    assert result.app_names == ["bad", "good"]
    assert app_config(result, "bad") == last_good
    verdict = result.applications["bad"]
    assert (verdict.ok, verdict.reason) == (False, "InvalidSpec")
    assert "spec.importPath" in verdict.message and "last good config" in verdict.message


def test_last_good_config_keeps_its_route_against_newer_applications(k8s):
    last_good = {"name": "old", "route_prefix": "/shared", "import_path": "apps.old:app", "args": {}}
    old = k8s.app("old", {"importPath": "broken", "routePrefix": "/shared"}, created=T0)
    newer = k8s.app("newer", {"routePrefix": "/shared"}, created=T1)
    result = compose_ok([old, newer], serve=ServeView(deployed={"old": last_good}))
    assert result.app_names == ["old"]
    assert result.applications["newer"].reason == "RoutePrefixConflict"
    assert "'old'" in result.applications["newer"].message


def test_deleting_applications_are_left_out(k8s):
    gone = k8s.app("gone", deleting=True, finalizers=["serveplane.dev/serve-cleanup"])
    result = compose_ok([gone, k8s.app("stay")],
                        serve=ServeView(deployed={"gone": {"name": "gone", "route_prefix": "/gone",
                                                           "import_path": "apps.gone:app"}}))
    assert result.app_names == ["stay"]
    assert "gone" not in result.applications


def test_deleting_application_frees_its_route_prefix(k8s):
    gone = k8s.app("gone", {"routePrefix": "/x"}, created=T0, deleting=True)
    new = k8s.app("new", {"routePrefix": "/x"}, created=T1)
    result = compose_ok([gone, new])
    assert result.app_names == ["new"] and result.applications["new"].ok


# --- route prefixes ------------------------------------------------------------------------------------------


def test_route_prefix_clash_older_keeps_it_newer_is_told_who_has_it(k8s):
    # Names sort the other way round, so only age can explain the outcome.
    older = k8s.app("zeta", {"routePrefix": "/api"}, created=T0)
    newer = k8s.app("alpha", {"routePrefix": "/api"}, created=T1)
    result = compose_ok([newer, older])
    assert result.app_names == ["zeta"]
    assert app_config(result, "zeta")["route_prefix"] == "/api"
    verdict = result.applications["alpha"]
    assert (verdict.ok, verdict.reason) == (False, "RoutePrefixConflict")
    assert "/api" in verdict.message and "'zeta'" in verdict.message
    assert result.applications["zeta"].ok


def test_route_prefix_clash_with_a_default_route(k8s):
    older = k8s.app("b", created=T0)  # answers under /b
    newer = k8s.app("a", {"routePrefix": "/b"}, created=T1)
    result = compose_ok([older, newer])
    assert result.app_names == ["b"]
    assert result.applications["a"].reason == "RoutePrefixConflict"


def test_route_prefix_clash_same_age_name_breaks_the_tie(k8s):
    apps = [k8s.app("b", {"routePrefix": "/x"}, created=T0), k8s.app("a", {"routePrefix": "/x"}, created=T0)]
    result = compose_ok(apps)
    assert result.app_names == ["a"]
    assert result.applications["b"].reason == "RoutePrefixConflict"


def test_route_prefix_loser_keeps_its_last_good_route(k8s):
    older = k8s.app("older", {"routePrefix": "/api"}, created=T0)
    newer = k8s.app("newer", {"routePrefix": "/api"}, created=T1)  # moved from /newer to /api
    last = {"name": "newer", "route_prefix": "/newer", "import_path": "apps.newer:app", "args": {}}
    result = compose_ok([older, newer], serve=ServeView(deployed={"newer": last}))
    assert result.app_names == ["newer", "older"]
    assert app_config(result, "newer") == last
    assert result.applications["newer"].reason == "RoutePrefixConflict"


def test_distinct_route_prefixes_including_root(k8s):
    apps = [k8s.app("root", {"routePrefix": "/"}), k8s.app("api", {"routePrefix": "/api/v1"})]
    result = compose_ok(apps)
    assert {a["name"]: a["route_prefix"] for a in result.config["applications"]} == {"root": "/", "api": "/api/v1"}


# --- ServeDeployments that do not fit ------------------------------------------------------------------------


def test_servedeployment_naming_a_missing_deployment_lists_the_available_ones(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Ingress", "numReplicas": 1}]})
    sdep = k8s.sdep("typo", "a", {"deploymentName": "Modle", "numReplicas": 3})
    result = compose_ok([app], [sdep], ServeView(deployments={"a": frozenset({"Model", "Ingress"})}))
    verdict = result.deployments["typo"]
    assert (verdict.ok, verdict.reason, verdict.waiting) == (False, "DeploymentNotFound", False)
    assert "'Modle'" in verdict.message and "Ingress, Model" in verdict.message
    assert [d["name"] for d in app_config(result, "a")["deployments"]] == ["Ingress"]
    assert result.applications["a"].ok


def test_servedeployment_waits_while_the_applications_deployments_are_unknown(k8s):
    app = k8s.app("a")
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 3})
    result = compose_ok([app], [sdep])  # no ServeView: the application was never built
    verdict = result.deployments["model"]
    assert (verdict.ok, verdict.waiting, verdict.reason) == (True, True, "WaitingForApplication")
    assert "'Model'" in verdict.message
    assert app_config(result, "a")["deployments"] == []
    # Once Serve has built the application, the same ServeDeployment goes in.
    later = compose_ok([app], [sdep], ServeView(deployments={"a": frozenset({"Model"})}))
    assert deployment(later, "a", "Model") == {"name": "Model", "num_replicas": 3}
    assert later.config_hash != result.config_hash


def test_duplicate_servedeployments_older_wins(k8s):
    app = k8s.app("a")
    newer = k8s.sdep("aaa-newer", "a", {"deploymentName": "Model", "numReplicas": 7}, created=T1)
    older = k8s.sdep("zzz-older", "a", {"deploymentName": "Model", "numReplicas": 2}, created=T0)
    result = compose_ok([app], [newer, older], KNOWN)
    assert deployment(result, "a", "Model") == {"name": "Model", "num_replicas": 2}
    assert result.deployments["zzz-older"].ok
    verdict = result.deployments["aaa-newer"]
    assert (verdict.ok, verdict.reason) == (False, "DuplicateDeployment")
    assert "'zzz-older'" in verdict.message


def test_duplicate_by_default_name_and_explicit_name(k8s):
    app = k8s.app("a")
    by_name = k8s.sdep("Model", "a", {"numReplicas": 2}, created=T0)
    explicit = k8s.sdep("other", "a", {"deploymentName": "Model", "numReplicas": 4}, created=T1)
    result = compose_ok([app], [explicit, by_name], KNOWN)
    assert deployment(result, "a", "Model")["num_replicas"] == 2
    assert result.deployments["other"].reason == "DuplicateDeployment"


def test_servedeployment_of_a_missing_application(k8s):
    sdep = k8s.sdep("model", "nope", {"numReplicas": 1})
    result = compose_ok([k8s.app("a")], [sdep], KNOWN)
    verdict = result.deployments["model"]
    assert (verdict.ok, verdict.reason) == (False, "ApplicationNotFound")
    assert "'nope'" in verdict.message


def test_servedeployment_of_a_deleting_application(k8s):
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 1})
    result = compose_ok([k8s.app("a", deleting=True)], [sdep], KNOWN)
    assert result.deployments["model"].reason == "ApplicationNotFound"


def test_invalid_servedeployment_is_left_out_and_its_application_stays(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Model", "numReplicas": 1}]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 0})
    result = compose_ok([app], [sdep], KNOWN)
    verdict = result.deployments["model"]
    assert (verdict.ok, verdict.reason) == (False, "InvalidSpec")
    assert "spec.numReplicas" in verdict.message
    assert deployment(result, "a", "Model") == {"name": "Model", "num_replicas": 1}
    assert result.applications["a"].ok


def test_deleting_servedeployment_no_longer_applies(k8s):
    app = k8s.app("a", {"deployments": [{"name": "Model", "numReplicas": 1}]})
    sdep = k8s.sdep("model", "a", {"deploymentName": "Model", "numReplicas": 9}, deleting=True)
    result = compose_ok([app], [sdep], KNOWN)
    assert deployment(result, "a", "Model") == {"name": "Model", "num_replicas": 1}
    assert "model" not in result.deployments


# --- the hash -------------------------------------------------------------------------------------------------


def _hash_inputs(k8s, **changes: Any) -> str:
    cluster = changes.pop("cluster", {"serve": {"httpPort": 8000}})
    app_spec = {"routePrefix": "/a", "args": {"x": 1}, "deployments": [{"name": "Model", "numReplicas": 1}],
                **changes.pop("app", {})}
    sdep_spec = {"deploymentName": "Model", "userConfig": {"t": 1}, **changes.pop("sdep", {})}
    assert not changes
    result = compose_ok([k8s.app("a", app_spec), k8s.app("b")], [k8s.sdep("model", "a", sdep_spec)], KNOWN,
                        cluster_spec(**cluster))
    return result.config_hash


def test_hash_is_stable_for_the_same_input(k8s):
    first = _hash_inputs(k8s)
    assert first == _hash_inputs(k8s)
    assert len(first) == 16 and int(first, 16) >= 0


def test_hash_ignores_input_order_and_metadata_noise(k8s):
    a, b = k8s.app("a", created=T0), k8s.app("b", created=T1)
    one = compose_ok([a, b])
    b2 = copy.deepcopy(b)
    b2["metadata"]["resourceVersion"] = "99999"
    b2["metadata"]["generation"] = 7
    two = compose_ok([b2, a])
    assert one.config_hash == two.config_hash


@pytest.mark.parametrize(
    "change",
    [
        {"cluster": {"serve": {"httpPort": 8001}}},
        {"cluster": {"serve": {"proxyLocation": "HeadOnly"}}},
        {"cluster": {"serve": {"requestTimeoutS": 5}}},
        {"app": {"routePrefix": "/z"}},
        {"app": {"args": {"x": 2}}},
        {"app": {"importPath": "apps.other:app"}},
        {"app": {"runtimeEnv": {"env_vars": {"A": "1"}}}},
        {"app": {"deployments": [{"name": "Model", "numReplicas": 2}]}},
        {"sdep": {"userConfig": {"t": 2}}},
        {"sdep": {"numReplicas": 3}},
        {"sdep": {"rayActorOptions": {"numCpus": 0.25}}},
    ],
)
def test_hash_changes_when_anything_changes(k8s, change):
    assert _hash_inputs(k8s, **change) != _hash_inputs(k8s)


def test_config_hash_is_key_order_independent():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
