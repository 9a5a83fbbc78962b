"""Rounds of a ServeCluster whose worker groups Ray's autoscaler sizes: the autoscaler's account and binding, its
container beside the head, the asks it writes into the status turned into pods (the chosen one goes), the bounds,
and no write at all while nothing changes."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from test_planner import NOW, World, merge_patch, summary

from serveplane.operator.actions import DeletePod, PostEvent, WriteStatus
from serveplane.operator.manifests import autoscaler, common
from serveplane.operator.snapshot import Snapshot, TokenSecret

SPEC = {
    "autoscaling": {"enabled": True, "idleTimeoutSeconds": 30},
    "head": {"rayStartParams": {"num-cpus": "0"}},
    "workerGroups": [{"name": "cpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 3,
                      "rayStartParams": {"num-cpus": "2"}}],
}


@pytest.fixture
def world(k8s: Any) -> World:
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=k8s.cluster("demo", SPEC),
                    apps=(k8s.app("hello"),), token_secret=TokenSecret("demo-ray-token", digest="digest-0"), now=NOW)
    return World(k8s, snap)


def ask(world: World, replicas: int, *delete: str) -> None:
    """What the autoscaler beside the head writes: its asks in status.autoscaler."""
    assert world.snap.cluster is not None
    cluster = dict(world.snap.cluster)
    record = {"generation": world.active(), "groups": {"cpu": {"replicas": replicas, "workersToDelete": list(delete)}},
              "lastDecision": f"cpu -> {replicas} workers"}
    status = dict(cluster.get("status") or {})
    merge_patch(status, {"autoscaler": record})
    world.snap = dataclasses.replace(world.snap, cluster={**cluster, "status": status})


def workers(world: World) -> list[str]:
    return sorted(p["metadata"]["name"] for p in world.snap.pods if not common.is_head(p))


def test_the_autoscaler_gets_its_account_its_binding_and_a_container_beside_the_head(world: World) -> None:
    plan = world.plan()
    assert {("Create", "serviceaccounts/demo-autoscaler"), ("Create", "rolebindings/demo-autoscaler")} <= set(
        summary(plan.actions))
    world.converge()
    head = next(p for p in world.snap.pods if common.is_head(p))
    ray, sidecar = head["spec"]["containers"]
    assert sidecar["name"] == autoscaler.CONTAINER and sidecar["command"][-1] == "autoscaler"
    assert head["spec"]["serviceAccountName"] == "demo-autoscaler"
    assert head["spec"]["automountServiceAccountToken"] is False
    # Only the autoscaler's container holds the account's token; the Ray container runs users' code.
    assert [m["mountPath"] for m in sidecar["volumeMounts"]] == [autoscaler.TOKEN_PATH]
    assert autoscaler.TOKEN_PATH not in [m["mountPath"] for m in ray.get("volumeMounts", [])]
    assert "--ray-param=no-monitor=true" in ray["args"], "Ray starts no autoscaler of its own"
    env = {e["name"]: e for e in ray["env"]}
    assert env["RAY_NODE_TYPE_NAME"]["value"] == "head" and "fieldRef" in env["RAY_CLOUD_INSTANCE_ID"]["valueFrom"]
    sidecar_env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert sidecar_env["SERVEPLANE_POD_SELECTOR"] == (
        f"{common.CLUSTER_LABEL}=demo,{common.GENERATION_LABEL}={world.active()}")
    assert "RAY_AUTH_TOKEN" in sidecar_env
    status = (world.snap.cluster or {}).get("status") or {}
    assert status["workerGroups"] == [{"name": "cpu", "desired": 1, "running": 1, "requested": 1, "minReplicas": 1,
                                       "maxReplicas": 3, "rayResources": {"CPU": 2.0}}]
    assert world.plan().actions == (), "a steady autoscaling cluster writes nothing"


def test_an_ask_becomes_pods_the_chosen_idle_one_goes_and_events_say_so(world: World) -> None:
    world.converge()
    g = world.active()
    ask(world, 2)
    plan = world.plan()
    assert ("CreatePod", f"demo-{g}-worker-cpu-1") in summary(plan.actions)
    world.converge()
    assert workers(world) == [f"demo-{g}-worker-cpu-0", f"demo-{g}-worker-cpu-1"]
    # The autoscaler chose worker 0 (idle): that one goes, not the highest index.
    ask(world, 1, f"demo-{g}-worker-cpu-0")
    plan = world.plan()
    deletes = [a for a in plan.actions if isinstance(a, DeletePod)]
    assert [d.name for d in deletes] == [f"demo-{g}-worker-cpu-0"]
    assert "autoscaler" in deletes[0].why
    events = [a for a in plan.actions if isinstance(a, PostEvent)]
    assert [(e.reason, e.message.split(" (")[0]) for e in events] == [("ScaledDown", "worker group cpu: 2 -> 1 pods")]
    world.converge()
    assert workers(world) == [f"demo-{g}-worker-cpu-1"]
    assert world.plan().actions == ()


def test_far_more_than_max_replicas_asked_runs_max_replicas(world: World) -> None:
    world.converge()
    ask(world, 500)
    world.converge()
    assert len(workers(world)) == 3
    status = (world.snap.cluster or {}).get("status") or {}
    assert (status["workerGroups"][0]["desired"], status["workerGroups"][0]["requested"]) == (3, 500)


def test_a_git_edit_of_the_bounds_takes_effect_at_once(world: World) -> None:
    world.converge()
    ask(world, 3)
    world.converge()
    assert len(workers(world)) == 3
    assert world.snap.cluster is not None
    spec = {**SPEC, "workerGroups": [{**SPEC["workerGroups"][0], "maxReplicas": 2}]}
    world.snap = dataclasses.replace(world.snap, cluster={**world.snap.cluster, "spec": spec})
    world.converge()
    assert len(workers(world)) == 2


def test_the_operator_never_overwrites_the_autoscalers_status(world: World) -> None:
    world.converge()
    ask(world, 2)
    for action in world.plan().actions:
        if isinstance(action, WriteStatus) and action.kind == "serveclusters":
            assert "autoscaler" not in action.patch


def test_turning_autoscaling_off_removes_its_account_and_binding(world: World) -> None:
    world.converge()
    assert world.snap.cluster is not None
    spec = {**SPEC, "autoscaling": {"enabled": False}}
    world.snap = dataclasses.replace(world.snap, cluster={**world.snap.cluster, "spec": spec})
    plan = world.plan()
    assert {("DeleteOwned", "serviceaccounts/demo-autoscaler"), ("DeleteOwned", "rolebindings/demo-autoscaler")} <= (
        set(summary(plan.actions)))
