"""Statuses and conditions of the three kinds, lastTransitionTime bookkeeping, and the status patch."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from serveplane.operator import conditions, status
from serveplane.operator.api.application import ServeApplicationStatus
from serveplane.operator.api.cluster import ServeClusterSpec, ServeClusterStatus
from serveplane.operator.api.deployment import ServeDeploymentStatus
from serveplane.operator.compose import ServeView, Verdict, compose
from serveplane.operator.servereport import AppReport, parse
from serveplane.operator.status import status_patch

COMPOSED = Verdict(True, "Composed", "the application is in the Serve config")
CONDITION_KEYS = {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"}


def cond(wire: dict[str, Any], kind: str) -> dict[str, Any]:
    found = conditions.find(wire.get("conditions") or [], kind)
    assert found is not None, f"no {kind} condition in {wire}"
    return found


def summary(wire: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in wire["conditions"]}


def replicas(*states: str) -> list[dict[str, Any]]:
    return [{"replica_id": f"r{i}", "state": s, "pid": 100 + i} for i, s in enumerate(states)]


def serve_app(state: str = "RUNNING", message: str = "", route: str = "/hello", **deployments: Any) -> dict[str, Any]:
    return {
        "name": "hello", "route_prefix": route, "docs_path": None, "status": state, "message": message,
        "last_deployed_time_s": 1714557600.0, "deployed_app_config": {"name": "hello", "import_path": "apps.hello:app"},
        "deployments": deployments or {
            "Hello": {"name": "Hello", "status": "HEALTHY", "message": "", "target_num_replicas": 2,
                      "replicas": replicas("RUNNING", "RUNNING")},
        },
    }


def app_report(details: dict[str, Any] | None) -> AppReport | None:
    """One application of Serve's report, parsed as the observe step parses it."""
    return None if details is None else AppReport.model_validate(details)


def serve_report(apps: dict[str, Any] | None = None, healthy: int = 2) -> dict[str, Any]:
    proxies = {f"node{i}": {"node_id": f"node{i}", "node_ip": f"10.0.0.{i}", "status": "HEALTHY"}
               for i in range(healthy)}
    proxies["nodeX"] = {"node_id": "nodeX", "node_ip": "10.0.0.99", "status": "UNHEALTHY"}
    return {"proxy_location": "EveryNode", "applications": apps or {}, "proxies": proxies}


def view(serve: dict[str, Any] | None = None, **overrides: Any) -> status.ClusterView:
    """The round's view, with Serve's answer parsed as the observe step parses it."""
    args: dict[str, Any] = {
        "name": "demo", "namespace": "team-a", "generation": 2, "desired_nodes": 3, "ready_nodes": 3,
        "head_pod": "demo-aaaaa-head", "head_ready": True, "serve": None if serve is None else parse(serve),
        "http_port": 8000,
    }
    args.update(overrides)
    return status.ClusterView(**args)


def assert_wire_shape(wire: dict[str, Any], model: type, generation: int) -> None:
    model.model_validate(wire)
    assert wire["observedGeneration"] == generation
    assert [c["type"] for c in wire["conditions"]] == ["Ready", "Progressing", "Degraded"]
    for c in wire["conditions"]:
        assert c["observedGeneration"] == generation
        assert c["status"] in ("True", "False", "Unknown")
        assert c["reason"] and c["reason"][0].isupper() and " " not in c["reason"]


# --- ServeCluster ----------------------------------------------------------------------------------------------


def composition(apps: list[dict[str, Any]] | None = None):
    return compose(ServeClusterSpec(), apps or [], [], ServeView())


def test_cluster_serving(k8s):
    comp = composition([k8s.app("hello"), k8s.app("bye")])
    applied = {"appliedConfigHash": comp.config_hash, "appliedHeadUid": "head-uid"}
    wire = status.cluster_status(view(serve_report(healthy=3)), comp, applied)
    assert_wire_shape(wire, ServeClusterStatus, 2)
    assert summary(wire) == {"Ready": ("True", "Serving"), "Progressing": ("False", "Stable"),
                             "Degraded": ("False", "AsExpected")}
    assert "3 healthy" in cond(wire, "Ready")["message"]
    assert wire["healthyProxies"] == 3
    assert (wire["desiredNodes"], wire["readyNodes"], wire["headPod"]) == (3, 3, "demo-aaaaa-head")
    assert wire["applications"] == ["bye", "hello"]
    assert (wire["appliedConfigHash"], wire["appliedHeadUid"]) == (comp.config_hash, "head-uid")
    # The head Service, which follows the active generation: not the head pod's generation-named Service.
    assert wire["dashboardUrl"].startswith("http://demo-head.team-a.svc")
    assert wire["dashboardUrl"].endswith(":8265")


def test_cluster_head_not_ready():
    wire = status.cluster_status(view(None, head_ready=False, ready_nodes=0, head_pod=None), None, {})
    assert summary(wire)["Ready"] == ("False", "HeadNotReady")
    assert summary(wire)["Progressing"] == ("True", "PodsStarting")
    assert "0 of 3" in cond(wire, "Progressing")["message"]
    assert "headPod" not in wire and "appliedConfigHash" not in wire


def test_cluster_dashboard_unavailable():
    wire = status.cluster_status(view(None, serve_error="connection refused"), composition(), {})
    assert summary(wire)["Ready"] == ("False", "DashboardUnavailable")
    assert "connection refused" in cond(wire, "Ready")["message"]


def test_cluster_without_healthy_proxy(k8s):
    comp = composition([k8s.app("hello")])
    wire = status.cluster_status(view(serve_report(healthy=0)), comp, {"appliedConfigHash": comp.config_hash})
    assert summary(wire)["Ready"] == ("False", "NoHealthyProxy")
    assert summary(wire)["Progressing"] == ("True", "NoHealthyProxy"), "waiting for proxies is progress, not stable"
    assert wire["healthyProxies"] == 0


def test_cluster_without_applications_is_ready_with_no_proxy():
    wire = status.cluster_status(view(serve_report(healthy=0)), None, {})
    assert summary(wire)["Ready"] == ("True", "Idle")


def test_cluster_submitting_a_changed_config():
    comp = composition()
    wire = status.cluster_status(view(serve_report()), comp, {"appliedConfigHash": "older"})
    assert summary(wire)["Progressing"] == ("True", "Submitting")


def test_cluster_with_a_rejected_config_is_degraded():
    wire = status.cluster_status(view(serve_report(), rejected="invalid import path"), composition(),
                                 {"appliedConfigHash": "older", "appliedHeadUid": "u"})
    assert summary(wire)["Degraded"] == ("True", "ConfigRejected")
    assert "invalid import path" in cond(wire, "Degraded")["message"]
    assert summary(wire)["Ready"] == ("True", "Serving")  # the previous config still serves


def test_cluster_with_a_rejected_config_is_not_progressing():
    wire = status.cluster_status(view(serve_report(), rejected="invalid import path"), composition(),
                                 {"appliedConfigHash": "older", "appliedHeadUid": "u"})
    # The rejected config is not resubmitted until it changes (plan.submit_reason): claiming that it "is being
    # submitted" would keep `kubectl wait --for=condition=Progressing=false` waiting forever.
    assert cond(wire, "Progressing")["status"] == "False"


def test_cluster_pods_starting_wins_over_submitting():
    wire = status.cluster_status(view(serve_report(), ready_nodes=2), composition(), {})
    assert summary(wire)["Progressing"] == ("True", "PodsStarting")


# --- ServeApplication --------------------------------------------------------------------------------------


def test_application_running(k8s):
    app = k8s.app("hello", {"routePrefix": "/hello"}, generation=5)
    wire = status.application_status(app, COMPOSED, view(serve_report({"hello": serve_app()})))
    assert_wire_shape(wire, ServeApplicationStatus, 5)
    assert summary(wire) == {"Ready": ("True", "Running"), "Progressing": ("False", "Running"),
                             "Degraded": ("False", "AsExpected")}
    assert wire["serveStatus"] == "RUNNING"
    assert wire["routePrefix"] == "/hello"
    assert wire["url"] == "http://demo-serve.team-a.svc.cluster.local:8000/hello"
    assert wire["deployments"] == {"Hello": {"status": "HEALTHY", "message": "", "replicas": 2,
                                             "targetReplicas": 2}}
    assert "message" not in wire


def test_application_url_uses_the_default_route_and_the_http_port(k8s):
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(serve_report({}), http_port=8100))
    assert wire["routePrefix"] == "/hello"
    assert wire["url"] == "http://demo-serve.team-a.svc.cluster.local:8100/hello"


def test_application_deploying_for_the_first_time(k8s):
    report = serve_report({"hello": serve_app("DEPLOYING", "Deploying app 'hello'")})
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(report))
    assert summary(wire) == {"Ready": ("False", "Deploying"), "Progressing": ("True", "Deploying"),
                             "Degraded": ("False", "AsExpected")}
    assert cond(wire, "Progressing")["message"] == "Deploying app 'hello'"


def test_application_updating_keeps_ready_when_it_was_ready(k8s):
    previous = {"conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "",
                                "observedGeneration": 1, "lastTransitionTime": "2024-05-01T10:00:00Z"}]}
    app = k8s.app("hello", generation=2, status=previous)
    wire = status.application_status(app, COMPOSED, view(serve_report({"hello": serve_app("DEPLOYING")})))
    assert summary(wire)["Ready"] == ("True", "Updating")
    assert summary(wire)["Progressing"] == ("True", "Deploying")


def test_application_deploy_failed_carries_serves_message(k8s):
    trace = "ImportError: No module named 'apps.hello'"
    report = serve_report({"hello": serve_app("DEPLOY_FAILED", trace)})
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(report))
    assert summary(wire) == {"Ready": ("False", "DeployFailed"), "Progressing": ("False", "DeployFailed"),
                             "Degraded": ("True", "DeployFailed")}
    assert trace in cond(wire, "Degraded")["message"]
    assert "DEPLOY_FAILED" in cond(wire, "Degraded")["message"]
    assert wire["message"] == trace
    assert wire["serveStatus"] == "DEPLOY_FAILED"


def test_application_unhealthy(k8s):
    report = serve_report({"hello": serve_app("UNHEALTHY", "replica crashed")})
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(report))
    assert summary(wire)["Degraded"] == ("True", "Unhealthy")
    assert "replica crashed" in cond(wire, "Degraded")["message"]


def test_application_submitted_but_not_reported_yet(k8s):
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(serve_report({})))
    assert summary(wire) == {"Ready": ("False", "Submitted"), "Progressing": ("True", "Submitted"),
                             "Degraded": ("False", "AsExpected")}
    assert "serveStatus" not in wire


def test_application_without_its_cluster(k8s):
    app = k8s.app("hello", {"cluster": "missing"})
    wire = status.application_status(app, None, None, cluster_missing=True)
    assert_wire_shape(wire, ServeApplicationStatus, 1)
    assert summary(wire) == {"Ready": ("False", "ClusterNotFound"), "Progressing": ("True", "WaitingForCluster"),
                             "Degraded": ("False", "AsExpected")}
    assert "'missing'" in cond(wire, "Ready")["message"] and "'team-a'" in cond(wire, "Ready")["message"]
    assert "url" not in wire and "serveStatus" not in wire


def test_application_while_the_dashboard_does_not_answer(k8s):
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(None, serve_error="timed out"))
    assert summary(wire)["Ready"] == ("False", "ClusterUnavailable")
    assert "timed out" in cond(wire, "Ready")["message"]


def test_application_keeps_its_last_reported_deployments_while_serve_is_silent(k8s):
    old = {"deployments": {"Hello": {"status": "HEALTHY", "message": "", "replicas": 2, "targetReplicas": 2}}}
    wire = status.application_status(k8s.app("hello", status=old), COMPOSED, view(None, serve_error="down"))
    assert wire["deployments"] == old["deployments"]


def test_application_with_a_bad_verdict_is_degraded_with_its_message(k8s):
    verdict = Verdict(False, "InvalidSpec", "spec.importPath: String should match pattern")
    wire = status.application_status(k8s.app("hello"), verdict, view(serve_report({})))
    assert summary(wire) == {"Ready": ("False", "InvalidSpec"), "Progressing": ("False", "InvalidSpec"),
                             "Degraded": ("True", "InvalidSpec")}
    assert cond(wire, "Degraded")["message"] == verdict.message


def test_application_with_a_bad_verdict_stays_ready_while_its_last_good_config_runs(k8s):
    verdict = Verdict(False, "InvalidSpec", "spec.importPath: bad; Serve keeps running its last good config")
    wire = status.application_status(k8s.app("hello"), verdict, view(serve_report({"hello": serve_app()})))
    assert summary(wire)["Ready"] == ("True", "InvalidSpec")
    assert summary(wire)["Degraded"] == ("True", "InvalidSpec")


def test_application_url_points_where_it_answers_while_a_conflicting_route_is_refused(k8s):
    # The spec asks for /bye (taken by an older application); Serve keeps running the last good config at /hello.
    verdict = Verdict(False, "RoutePrefixConflict", "route prefix /bye is already used by ServeApplication 'bye'")
    app = k8s.app("hello", {"routePrefix": "/bye"})
    wire = status.application_status(app, verdict, view(serve_report({"hello": serve_app(route="/hello")})))
    assert wire["routePrefix"] == "/hello"
    assert wire["url"] == "http://demo-serve.team-a.svc.cluster.local:8000/hello", (
        "the URL leads to another application"
    )


# --- ServeDeployment ---------------------------------------------------------------------------------------


def sdep_of(k8s, **kw: Any) -> dict[str, Any]:
    return k8s.sdep("hello-model", "hello", {"deploymentName": "Hello", "numReplicas": 2}, generation=4, **kw)


def test_deployment_healthy(k8s):
    wire = status.deployment_status(sdep_of(k8s), Verdict(True, "Composed", ""), app_report(serve_app()))
    assert_wire_shape(wire, ServeDeploymentStatus, 4)
    assert summary(wire) == {"Ready": ("True", "Healthy"), "Progressing": ("False", "Stable"),
                             "Degraded": ("False", "AsExpected")}
    assert (wire["replicas"], wire["targetReplicas"], wire["serveStatus"]) == (2, 2, "HEALTHY")
    assert "2 of 2" in cond(wire, "Ready")["message"]


def test_deployment_scaling_up_counts_only_running_replicas(k8s):
    app = serve_app(Hello={"status": "UPSCALING", "message": "", "target_num_replicas": 3,
                           "replicas": replicas("RUNNING", "STARTING", "PENDING_MIGRATION")})
    wire = status.deployment_status(sdep_of(k8s), Verdict(True, "Composed", ""), app_report(app))
    assert wire["replicas"] == 1 and wire["targetReplicas"] == 3
    assert summary(wire)["Ready"][0] == "False"
    assert summary(wire)["Progressing"] == ("True", "Scaling")
    assert summary(wire)["Degraded"][0] == "False"


def test_deployment_failed_carries_serves_message(k8s):
    app = serve_app(Hello={"status": "DEPLOY_FAILED", "message": "CUDA out of memory", "target_num_replicas": 2,
                           "replicas": []})
    wire = status.deployment_status(sdep_of(k8s), Verdict(True, "Composed", ""), app_report(app))
    assert summary(wire)["Degraded"] == ("True", "DeployFailed")
    assert "CUDA out of memory" in cond(wire, "Degraded")["message"]
    assert summary(wire)["Ready"][0] == "False"
    assert summary(wire)["Progressing"][0] == "False"
    assert wire["message"] == "CUDA out of memory"


def test_deployment_uses_its_name_when_deployment_name_is_unset(k8s):
    sdep = k8s.sdep("Hello", "hello", {"numReplicas": 2})
    wire = status.deployment_status(sdep, Verdict(True, "Composed", ""), app_report(serve_app()))
    assert summary(wire)["Ready"] == ("True", "Healthy")


def test_deployment_waiting_for_its_application(k8s):
    verdict = Verdict(True, "WaitingForApplication", "waiting for application 'hello' to be built", waiting=True)
    wire = status.deployment_status(sdep_of(k8s), verdict, app_report(None))
    assert summary(wire) == {"Ready": ("False", "Waiting"), "Progressing": ("True", "Waiting"),
                             "Degraded": ("False", "AsExpected")}
    assert cond(wire, "Ready")["message"] == verdict.message
    assert wire["replicas"] == 0


def test_deployment_not_reported_yet(k8s):
    wire = status.deployment_status(sdep_of(k8s), Verdict(True, "Composed", ""), app_report(serve_app(Other={})))
    assert summary(wire)["Ready"] == ("False", "Waiting")
    assert "'Hello'" in cond(wire, "Ready")["message"]


@pytest.mark.parametrize("reason", ["DeploymentNotFound", "DuplicateDeployment", "InvalidSpec"])
def test_deployment_with_a_bad_verdict(k8s, reason):
    verdict = Verdict(False, reason, f"because {reason}")
    wire = status.deployment_status(sdep_of(k8s), verdict, app_report(serve_app()))
    assert summary(wire)["Degraded"] == ("True", reason)
    assert cond(wire, "Degraded")["message"] == f"because {reason}"
    assert summary(wire)["Ready"] == ("False", reason)


def test_deployment_of_no_running_application(k8s):
    wire = status.deployment_status(sdep_of(k8s), None, app_report(None))
    assert summary(wire)["Ready"] == ("False", "ApplicationNotFound")
    assert summary(wire)["Progressing"] == ("True", "WaitingForApplication")
    assert summary(wire)["Degraded"][0] == "False", "applied before its application, it waits like one"
    assert "'hello'" in cond(wire, "Ready")["message"]


# --- conditions.merge --------------------------------------------------------------------------------------

T_OLD = "2024-05-01T10:00:00Z"
NOW = datetime(2024, 6, 1, 12, 30, 45, tzinfo=UTC)


def old_conditions() -> list[dict[str, Any]]:
    return [
        {"type": "Ready", "status": "True", "reason": "Running", "message": "", "observedGeneration": 1,
         "lastTransitionTime": T_OLD},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "observedGeneration": 1,
         "lastTransitionTime": T_OLD},
    ]


def test_merge_keeps_the_time_while_the_status_holds():
    new = conditions.triple(2, ready=(True, "Updating", "new version deploying"),
                            progressing=(True, "Deploying", ""), degraded=(True, "DeployFailed", "boom"))
    merged = {c["type"]: c for c in conditions.merge(old_conditions(), new, now=NOW)}
    assert merged["Ready"]["lastTransitionTime"] == T_OLD  # still True, though reason and message changed
    assert merged["Ready"]["reason"] == "Updating" and merged["Ready"]["observedGeneration"] == 2
    assert merged["Degraded"]["lastTransitionTime"] == "2024-06-01T12:30:45Z"  # False -> True
    assert merged["Progressing"]["lastTransitionTime"] == "2024-06-01T12:30:45Z"  # new condition


def test_merge_gives_every_condition_every_field():
    new = conditions.triple(3, ready=(None, "Unknown", ""), progressing=(False, "Stable", ""),
                            degraded=(False, "AsExpected", ""))
    merged = conditions.merge([], new, NOW)
    assert [c["type"] for c in merged] == ["Ready", "Progressing", "Degraded"]
    for c in merged:
        assert set(c) == CONDITION_KEYS, c
        assert c["observedGeneration"] == 3
        datetime.strptime(c["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert merged[0]["status"] == "Unknown"


def test_merge_does_not_modify_the_old_list():
    old = old_conditions()
    conditions.merge(old, conditions.triple(2, ready=(False, "X", ""), progressing=(False, "Y", ""),
                                            degraded=(False, "Z", "")), now=NOW)
    assert old == old_conditions()


def test_find_and_is_true():
    old = old_conditions()
    assert conditions.find(old, "Ready")["reason"] == "Running"
    assert conditions.find(old, "Progressing") is None
    assert conditions.is_true(old, "Ready") and not conditions.is_true(old, "Degraded")
    assert not conditions.is_true([], "Ready")


# --- status_patch -----------------------------------------------------------------------------------------


def apply_merge_patch(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_status_patch_writes_a_new_status_then_nothing(k8s):
    new = status.application_status(k8s.app("hello"), COMPOSED, view(serve_report({"hello": serve_app()})))
    patch = status_patch(ServeApplicationStatus, {}, new, NOW)
    assert patch is not None
    assert patch["routePrefix"] == "/hello"
    for c in patch["conditions"]:
        assert set(c) == CONDITION_KEYS
    stored = apply_merge_patch({}, patch)
    # The next round computes the same status: nothing to write, and the times stay.
    again = status.application_status(k8s.app("hello", status=stored), COMPOSED,
                                       view(serve_report({"hello": serve_app()})))
    assert status_patch(ServeApplicationStatus, stored, again, NOW) is None


def test_status_patch_sends_only_what_changed_and_keeps_unchanged_condition_times():
    old = {"observedGeneration": 1, "replicas": 2, "serveStatus": "HEALTHY", "conditions": old_conditions()}
    new = {"observedGeneration": 1, "replicas": 3, "serveStatus": "HEALTHY",
           "conditions": [c.to_wire() for c in conditions.triple(
               1, ready=(True, "Healthy", ""), progressing=(False, "Stable", ""), degraded=(False, "AsExpected", ""))]}
    patch = status_patch(ServeDeploymentStatus, old, new, NOW)
    assert set(patch) == {"replicas", "conditions"}
    assert patch["replicas"] == 3
    times = {c["type"]: c["lastTransitionTime"] for c in patch["conditions"]}
    assert times["Ready"] == T_OLD and times["Degraded"] == T_OLD


def test_status_patch_nulls_managed_fields_that_disappeared_and_leaves_unknown_ones():
    old = {"observedGeneration": 1, "headPod": "demo-head", "appliedConfigHash": "abc", "addedByAnotherTool": "x",
           "readyNodes": 1}
    new = {"observedGeneration": 1, "readyNodes": 1}
    patch = status_patch(ServeClusterStatus, old, new, NOW)
    assert patch == {"headPod": None, "appliedConfigHash": None}


def test_status_patch_none_when_equal():
    same = {"observedGeneration": 4, "replicas": 1}
    assert status_patch(ServeDeploymentStatus, dict(same), dict(same), NOW) is None


def test_status_patch_does_not_modify_its_arguments():
    old = {"conditions": old_conditions(), "replicas": 1}
    new = {"conditions": [c.to_wire() for c in conditions.triple(
        2, ready=(False, "X", ""), progressing=(False, "Y", ""), degraded=(False, "Z", ""))], "replicas": 2}
    new_copy = {"conditions": [dict(c) for c in new["conditions"]], "replicas": 2}
    status_patch(ServeDeploymentStatus, old, new, NOW)
    assert old == {"conditions": old_conditions(), "replicas": 1}
    assert new == new_copy


def test_a_serve_traceback_shrinks_to_its_error_in_conditions_but_stays_whole_in_the_status(k8s):
    traceback = (
        "Traceback (most recent call last):\n  File \"/x/ray/serve/_private/api.py\", line 3, in build\n"
        "    module = importlib.import_module(name)\nModuleNotFoundError: No module named 'no_such_module_xyz'\n"
    )
    app = k8s.app("broken")
    serve = serve_report(apps={"broken": {"status": "DEPLOY_FAILED", "message": traceback, "deployments": {}}})
    wire = status.application_status(app, Verdict(True, "Composed", ""), view(serve))
    degraded = cond(wire, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "DeployFailed"
    assert degraded["message"] == (
        "Serve reports DEPLOY_FAILED: ModuleNotFoundError: No module named 'no_such_module_xyz' "
        "(full traceback in status.message)"
    )
    assert wire["message"] == traceback


def test_a_long_serve_message_is_capped_in_conditions():
    assert len(status.serve_summary("x" * 5000)) == status.MESSAGE_LIMIT
    assert status.serve_summary("plain message") == "plain message"


# --- upgrades ---------------------------------------------------------------------------------------------------


def test_wire_time_is_rfc3339_in_utc_seconds():
    assert status.wire_time(datetime(2024, 5, 1, 10, 0, 7, 123456, tzinfo=UTC)) == "2024-05-01T10:00:07Z"


def serving_conditions(k8s) -> list[dict[str, Any]]:
    comp = composition([k8s.app("hello")])
    applied = {"appliedConfigHash": comp.config_hash, "appliedHeadUid": "head-uid"}
    wire = status.cluster_status(view(serve_report(healthy=3)), comp, applied)
    assert summary(wire)["Ready"] == ("True", "Serving")
    return wire["conditions"]


def test_an_upgrade_under_way_is_progressing_and_ready_stays_the_active_generations(k8s):
    before = serving_conditions(k8s)
    during = status.upgrading(before, "Starting pod demo-bbbbb-head of the new generation (0/3)", None)
    assert summary({"conditions": during}) == {"Ready": ("True", "Serving"), "Progressing": ("True", "Upgrading"),
                                               "Degraded": ("False", "AsExpected")}
    assert cond({"conditions": during}, "Progressing")["message"] == (
        "Starting pod demo-bbbbb-head of the new generation (0/3)"
    )
    assert cond({"conditions": during}, "Ready") == cond({"conditions": before}, "Ready")
    assert summary({"conditions": before})["Progressing"] == ("False", "Stable"), "the input is not changed"


def test_a_failed_upgrade_is_degraded_not_progressing_and_ready_holds(k8s):
    failure = "application hello failed to deploy on the new generation: " + "x" * 2000
    failed = status.upgrading(serving_conditions(k8s), "Failed: traffic stays on the active generation", failure)
    assert summary({"conditions": failed}) == {"Ready": ("True", "Serving"),
                                               "Progressing": ("False", "UpgradeFailed"),
                                               "Degraded": ("True", "UpgradeFailed")}
    degraded = cond({"conditions": failed}, "Degraded")["message"]
    assert degraded.startswith("application hello failed") and len(degraded) == status.MESSAGE_LIMIT
    assert cond({"conditions": failed}, "Progressing")["message"] == "Failed: traffic stays on the active generation"
    ServeClusterStatus.model_validate({"conditions": failed})


def test_status_patch_removes_a_finished_upgrade():
    old = {"activeGeneration": "aaaaa", "upgrade": {"generation": "bbbbb", "strategy": "Incremental",
                                                    "startedAt": "2024-05-01T10:00:00Z", "step": "x"},
           "generations": [{"name": "aaaaa", "role": "Active"}, {"name": "bbbbb", "role": "Pending"}]}
    new = {"activeGeneration": "bbbbb", "upgrade": None, "generations": [{"name": "bbbbb", "role": "Active"}]}
    assert status_patch(ServeClusterStatus, old, new, NOW) == new
    assert status_patch(ServeClusterStatus, old, {k: v for k, v in new.items() if k != "upgrade"}, NOW) == new


# --- bounds on Serve's text --------------------------------------------------------------------------------------

MEGABYTE_TRACEBACK = (
    "Traceback (most recent call last):\n  File \"/app/model.py\", line 1, in __init__\n"
    + "x" * 1_000_000
    + "\nValueError: the model's weights are missing"
)


def test_bounded_keeps_short_text_and_cuts_long_text_to_its_ends():
    assert status.bounded("plain") == "plain"
    exact = "y" * status.SERVE_TEXT_LIMIT
    assert status.bounded(exact) == exact
    cut = status.bounded(MEGABYTE_TRACEBACK)
    assert len(cut) <= status.SERVE_TEXT_LIMIT
    assert cut.startswith("Traceback (most recent call last):")
    assert cut.endswith("ValueError: the model's weights are missing")
    assert f"{len(MEGABYTE_TRACEBACK)} characters" in cut
    assert len(status.bounded(MEGABYTE_TRACEBACK, 10)) <= 10


def test_a_megabyte_serve_message_gives_an_application_status_under_the_bound(k8s):
    failed = {"status": "DEPLOY_FAILED", "message": MEGABYTE_TRACEBACK, "target_num_replicas": 1, "replicas": []}
    report = serve_report({"hello": serve_app("DEPLOY_FAILED", MEGABYTE_TRACEBACK, Hello=failed)})
    wire = status.application_status(k8s.app("hello"), COMPOSED, view(report))
    assert_wire_shape(wire, ServeApplicationStatus, 1)
    assert len(wire["message"]) <= status.SERVE_TEXT_LIMIT
    assert wire["message"].endswith("ValueError: the model's weights are missing")
    assert len(wire["deployments"]["Hello"]["message"]) <= status.DEPLOYMENT_TEXT_LIMIT
    for c in wire["conditions"]:
        assert len(c["message"]) <= status.MESSAGE_LIMIT + 50
    # The condition keeps what it said before: the traceback's last line.
    assert cond(wire, "Degraded")["message"] == (
        "Serve reports DEPLOY_FAILED: ValueError: the model's weights are missing (full traceback in status.message)"
    )
    assert len(json.dumps(wire)) < status.SERVE_TEXT_LIMIT + status.DEPLOYMENT_TEXT_LIMIT + 5000


def test_a_megabyte_serve_message_gives_a_deployment_status_under_the_bound(k8s):
    app = serve_app(Hello={"status": "UNHEALTHY", "message": "z" * 1_000_000, "target_num_replicas": 2,
                           "replicas": []})
    wire = status.deployment_status(sdep_of(k8s), Verdict(True, "Composed", ""), app_report(app))
    assert_wire_shape(wire, ServeDeploymentStatus, 4)
    assert summary(wire)["Degraded"] == ("True", "Unhealthy")
    assert len(wire["message"]) <= status.SERVE_TEXT_LIMIT
    assert len(json.dumps(wire)) < status.SERVE_TEXT_LIMIT + 5000


def test_a_megabyte_refusal_or_dashboard_error_gives_a_cluster_status_under_the_bound(k8s):
    huge = "invalid import path " + "q" * 1_000_000
    rejected = status.cluster_status(view(serve_report(), rejected=huge), composition(),
                                     {"appliedConfigHash": "older", "appliedHeadUid": "u"})
    assert summary(rejected)["Degraded"] == ("True", "ConfigRejected")
    assert cond(rejected, "Degraded")["message"].startswith("Serve refused the config: invalid import path")
    assert len(cond(rejected, "Degraded")["message"]) == status.MESSAGE_LIMIT
    silent = status.cluster_status(view(None, serve_error=huge), composition(), {})
    assert summary(silent)["Ready"] == ("False", "DashboardUnavailable")
    assert len(cond(silent, "Ready")["message"]) == status.MESSAGE_LIMIT
    app = status.application_status(k8s.app("hello"), COMPOSED, view(None, serve_error=huge))
    assert summary(app)["Ready"] == ("False", "ClusterUnavailable")
    assert len(cond(app, "Ready")["message"]) == status.MESSAGE_LIMIT
    for wire in (rejected, silent, app):
        assert len(json.dumps(wire)) < 10_000


def test_a_megabyte_upgrade_failure_is_bounded_in_the_whole_status(k8s):
    comp = composition([k8s.app("hello")])
    failure = "application hello failed to deploy on the new generation: " + MEGABYTE_TRACEBACK
    upgrade = {"generation": "bbbbb", "strategy": "Incremental", "startedAt": "2024-05-01T10:00:00Z",
               "step": "Failed: traffic stays on the active generation", "failure": failure}
    parts = status.ClusterParts(generations={"activeGeneration": "aaaaa", "upgrade": upgrade}, worker_groups=[],
                                autoscaler=None, redis_namespaces=[],
                                upgrade_step="Failed: traffic stays on the active generation", upgrade_failure=failure)
    wire = status.whole_cluster_status(view(serve_report(healthy=3)), comp, {}, parts)
    assert len(wire["upgrade"]["failure"]) <= status.SERVE_TEXT_LIMIT
    assert wire["upgrade"]["failure"].startswith("application hello failed to deploy")
    assert upgrade["failure"] == failure, "the parts are not changed"
    assert len(cond(wire, "Degraded")["message"]) == status.MESSAGE_LIMIT
    ServeClusterStatus.model_validate(wire)
    assert len(json.dumps(wire)) < status.SERVE_TEXT_LIMIT + 5000
