"""The Argo CD health scripts of argocd/health/, run for real in Lua 5.1 (what Argo CD's gopher-lua speaks).

The inputs are the objects in tests/fixtures/argocd/: captured from the operator against a real API server, or
built with operator/status.py from Serve answers validated against Ray's schema (see generate.py there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

REPO = Path(__file__).resolve().parents[2]
HEALTH = REPO / "argocd" / "health"
FIXTURES = REPO / "tests" / "fixtures" / "argocd"
KINDS = ("ServeCluster", "ServeApplication", "ServeDeployment")
SCRIPT = HEALTH / "serveplane.lua"
WAITING = "waiting for the serveplane operator to observe"


def run_health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run a health script as Argo CD does: `obj` is a global table, the script returns {status, message}."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD opens only the safe libraries; a script reaching for io/os/require must fail here as well.
    lua.execute("io, os, require, dofile, loadfile, package, debug = nil, nil, nil, nil, nil, nil, nil")
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(script)
    assert result is not None, "the script returned nothing"
    out = dict(result.items())
    assert set(out) <= {"status", "message"}, out
    return {"status": out.get("status"), "message": out.get("message") or ""}


def health(obj: dict[str, Any]) -> dict[str, str]:
    return run_health(SCRIPT.read_text(), obj)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# fixture -> (Argo CD status, the exact message or a list of parts it must contain)
EXPECTED: dict[str, tuple[str, str | list[str]]] = {
    # captured from the operator against the real API server
    "servecluster-no-status": ("Progressing", f"{WAITING} ServeCluster generation 1"),
    "serveapplication-no-status": ("Progressing", f"{WAITING} ServeApplication generation 1"),
    "servedeployment-no-status": ("Progressing", f"{WAITING} ServeDeployment generation 1"),
    "servecluster-generation-not-observed": ("Progressing", f"{WAITING} ServeCluster generation 2"),
    "servecluster-head-not-ready": (
        "Progressing",
        ["HeadNotReady: waiting for head pod ", "to become ready; PodsStarting: 0 of 3 Ray pods are ready"],
    ),
    "servecluster-dashboard-unavailable": ("Progressing", ["DashboardUnavailable: the Ray dashboard does not answer"]),
    "serveapplication-cluster-not-found": (
        "Progressing", "ClusterNotFound: waiting for ServeCluster 'demo' in namespace 'team-a' to exist"),
    "serveapplication-cluster-unavailable": (
        "Progressing", ["ClusterUnavailable: the Ray cluster's dashboard does not answer"]),
    "servedeployment-application-not-found": (
        "Progressing", "ApplicationNotFound: waiting for application 'composed' to exist on a ServeCluster"),
    # computed with operator/status.py from Serve's answers
    "servecluster-serving": ("Healthy", "Serving: 3 healthy Serve proxies on 3 Ray pods"),
    "servecluster-config-rejected": (
        "Degraded", ["ConfigRejected: Serve refused the config: Invalid Serve config: Found duplicate applications",
                     "Serving: 3 healthy Serve proxies"]),
    "servecluster-no-healthy-proxy": ("Progressing", "NoHealthyProxy: no Serve proxy reports HEALTHY yet"),
    "serveapplication-running": ("Healthy", "Running: Serve reports the application RUNNING"),
    "serveapplication-deploying": ("Progressing", "Deploying: Serve is deploying the application"),
    "serveapplication-updating": (
        "Healthy", "Updating: the previous version answers while Serve deploys the new one; "
                   "Deploying: Serve is deploying the application"),
    "serveapplication-submitted": (
        "Progressing", "Submitted: the application was submitted; Serve has not reported it yet"),
    "serveapplication-deploy-failed": (
        "Degraded", ["DeployFailed: Serve reports DEPLOY_FAILED: ModuleNotFoundError: No module named "
                     "'nonexistent_module_xyz' (full traceback in status.message)"]),
    "serveapplication-unhealthy": ("Degraded", ["Unhealthy: Serve reports UNHEALTHY: The deployments ['Hello']"]),
    "serveapplication-route-conflict-kept-running": (
        "Degraded", "RoutePrefixConflict: route prefix /composed is already used by ServeApplication 'composed' "
                    "(older); Serve keeps running this application's last good config"),
    "servedeployment-healthy": ("Healthy", "Healthy: 1 of 1 replicas running; Serve reports HEALTHY"),
    "servedeployment-scaling": (
        "Progressing", "Upscaling: 1 of 3 replicas running; Serve reports UPSCALING: Upscaling from 1 to 3 replicas."),
    "servedeployment-deploy-failed": ("Degraded", ["DeployFailed: 0 of 1 replicas running", "CUDA out of memory"]),
    "servedeployment-waiting": (
        "Progressing", "Waiting: waiting for Serve to build application 'composed' and report its deployments"),
    "servedeployment-not-found": ("Degraded", ["DeploymentNotFound: application 'composed' has no deployment 'Modle'"]),
}


def test_every_fixture_has_an_expectation_and_every_expectation_a_fixture() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_health_of_what_the_operator_writes(name: str) -> None:
    obj = fixture(name)
    assert name.startswith(obj["kind"].lower() + "-")
    status, message = EXPECTED[name]
    got = health(obj)
    assert got["status"] == status, got
    if isinstance(message, str):
        assert got["message"] == message
    else:
        for part in message:
            assert part in got["message"], got


def test_every_status_argo_cd_knows_is_reached() -> None:
    reached = {health(fixture(name))["status"] for name in EXPECTED}
    assert reached == {"Healthy", "Progressing", "Degraded"}


def test_fixtures_are_what_the_api_server_holds() -> None:
    for name in EXPECTED:
        obj = fixture(name)
        assert obj["apiVersion"] == "serveplane.dev/v1alpha1"
        assert obj["metadata"]["generation"] >= 1 and obj["metadata"]["namespace"]
        for condition in (obj.get("status") or {}).get("conditions") or []:
            assert set(condition) == {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"}


# --- the rules themselves, on small synthetic objects ----------------------------------------------------------


def obj_with(kind: str, generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "serveplane.dev/v1alpha1", "kind": kind,
                           "metadata": {"name": "x", "namespace": "n", "generation": generation}}
    if status is not None:
        out["status"] = status
    return out


def cond(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_rules(kind: str) -> None:
    assert health(obj_with(kind, 3, None)) == {"status": "Progressing", "message": f"{WAITING} {kind} generation 3"}
    ready = [cond("Ready", "True", "Running", "fine")]
    # A status for an older generation says nothing about the current spec, however Ready it was.
    assert health(obj_with(kind, 3, {"observedGeneration": 2, "conditions": ready}))["status"] == "Progressing"
    assert health(obj_with(kind, 3, {"conditions": ready}))["status"] == "Progressing"
    assert health(obj_with(kind, 3, {"observedGeneration": 3, "conditions": ready})) == {
        "status": "Healthy", "message": "Running: fine"}
    assert health(obj_with(kind, 3, {"observedGeneration": 3})) == {
        "status": "Progressing", "message": "waiting for the serveplane operator to report conditions"}
    unknown = [cond("Ready", "Unknown", "Probing")]
    assert health(obj_with(kind, 1, {"observedGeneration": 1, "conditions": unknown})) == {
        "status": "Progressing", "message": "Probing"}
    # Degraded wins even while Ready: the previous config serves, but the synced spec was refused.
    both = [cond("Ready", "True", "Running", "old config"), cond("Degraded", "True", "InvalidSpec", "fix spec.x")]
    assert health(obj_with(kind, 1, {"observedGeneration": 1, "conditions": both})) == {
        "status": "Degraded", "message": "InvalidSpec: fix spec.x; Running: old config"}
    # Without a Ready condition the message still says what is going on.
    only = [cond("Progressing", "True", "Deploying", "one moment")]
    assert health(obj_with(kind, 1, {"observedGeneration": 1, "conditions": only})) == {
        "status": "Progressing", "message": "Deploying: one moment"}


def test_argocd_cm_snippet_carries_exactly_the_scripts() -> None:
    cm = yaml.safe_load((REPO / "argocd" / "argocd-cm.yaml").read_text())
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    keys = [f"resource.customizations.health.serveplane.dev_{kind}" for kind in KINDS]
    assert set(keys) <= set(cm["data"])
    for key in keys:
        assert cm["data"][key] == SCRIPT.read_text(), f"{key} is out of date: run argocd/render.py"


def test_app_of_apps_sync_waves() -> None:
    apps = {}
    for path in sorted((REPO / "argocd" / "apps").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1alpha1", "Application"), path
        apps[doc["metadata"]["name"]] = doc
    waves = {name: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for name, app in apps.items()}
    assert waves == {"serveplane-crds": -1, "serveplane-operator": 0, "serveplane-workloads": 1}
    for app in apps.values():
        assert (REPO / app["spec"]["source"]["path"]).is_dir(), app["spec"]["source"]["path"]
    crds = apps["serveplane-crds"]
    # Deleting or pruning the CRDs would delete every resource of their kinds.
    assert crds["spec"]["syncPolicy"]["automated"]["prune"] is False
    assert "finalizers" not in crds["metadata"]
    assert "ServerSideApply=true" in crds["spec"]["syncPolicy"]["syncOptions"]
    # The chart must not render the CRDs a second time: the wave -1 Application owns them.
    assert apps["serveplane-operator"]["spec"]["source"]["helm"]["skipCrds"] is True
    assert apps["serveplane-operator"]["spec"]["source"]["path"] == "helm/serveplane"
