"""The autoscaler's side: Ray's autoscaling config from a ServeCluster (checked by Ray's own config class), pods as
Ray's instances, and launches and terminations as asks in status.autoscaler, capped by maxReplicas."""
from __future__ import annotations

from typing import Any

import pytest
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

from serveplane.runtime import scaling

GROUPS = [
    {"name": "cpu", "desired": 1, "running": 1, "requested": 1, "minReplicas": 1, "maxReplicas": 3,
     "rayResources": {"CPU": 2.0, "memory": 2e9}},
    {"name": "gpu", "desired": 0, "running": 0, "requested": 0, "minReplicas": 0, "maxReplicas": 2,
     "rayResources": {"CPU": 4.0, "GPU": 1.0}},
]


def cluster(*, autoscaler: dict[str, Any] | None = None, groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"activeGeneration": "g1", "workerGroups": GROUPS if groups is None else groups}
    if autoscaler is not None:
        status["autoscaler"] = autoscaler
    return {
        "metadata": {"name": "demo"},
        "spec": {"autoscaling": {"enabled": True, "idleTimeoutSeconds": 30, "upscalingSpeed": 2.0},
                 "workerGroups": [{"name": "cpu"}, {"name": "gpu"}]},
        "status": status,
    }


def node(pod: str, node_type: str = "cpu", running: bool = True) -> scaling.Node:
    return scaling.Node(pod=pod, node_type=node_type, running=running)


NODES = [node("demo-g1-head", "head"), node("demo-g1-worker-cpu-0")]


def test_rays_own_config_class_accepts_the_config_and_reads_groups_bounds_and_timing():
    config = AutoscalingConfig(scaling.autoscaling_config(cluster(), "ns"), skip_content_hash=True)
    types = config.get_node_type_configs()
    assert set(types) == {"head", "cpu", "gpu"}
    assert (types["cpu"].min_worker_nodes, types["cpu"].max_worker_nodes) == (1, 3)
    assert types["gpu"].resources == {"CPU": 4.0, "GPU": 1.0}
    assert config.get_head_node_type() == "head"
    assert config.get_idle_timeout_s() == pytest.approx(30.0)
    assert config.get_upscaling_speed() == 2.0
    assert config.disable_node_updaters() and config.get_max_num_worker_nodes() == 5


def test_no_config_until_the_operator_described_every_group():
    with pytest.raises(scaling.NotReady, match="gpu"):
        scaling.autoscaling_config(cluster(groups=GROUPS[:1]), "ns")


def pod(name: str, node_type: str | None, state: str = "running", deleting: bool = False) -> dict[str, Any]:
    env = [{"name": "RAY_NODE_TYPE_NAME", "value": node_type}] if node_type else []
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": "ray", "env": env}, {"name": "autoscaler"}]},
            "status": {"containerStatuses": [{"name": "autoscaler", "state": {"running": {}}},
                                             {"name": "ray", "state": {state: {}}}]}}


def test_pods_are_rays_instances_by_the_node_type_their_ray_container_tells_ray():
    assert scaling.node_of(pod("w0", "cpu")) == node("w0")
    assert scaling.node_of(pod("w1", "cpu", state="waiting")) == node("w1", running=False)
    assert scaling.node_of(pod("h", "head")) == node("h", "head")
    assert scaling.node_of(pod("cleanup", None)) is None
    assert scaling.node_of(pod("w2", "cpu", deleting=True)) is None


def test_a_launch_adds_to_the_groups_ask_and_the_cap_refuses_the_rest():
    asks = scaling.current_asks(cluster(), NODES, "g1")
    assert asks.replicas == {"cpu": 1, "gpu": 0}
    refused = scaling.launch(cluster(), asks, {"cpu": 1}, NODES)
    assert (asks.replicas["cpu"], refused) == (2, {})
    refused = scaling.launch(cluster(), asks, {"cpu": 100, "gpu": 1, "tpu": 1}, NODES)
    assert asks.replicas == {"cpu": 3, "gpu": 1}, "maxReplicas holds however much Ray asks for"
    assert refused == {"cpu": 99, "tpu": 1}


def test_a_launch_counts_from_the_workers_there_when_they_outnumber_the_ask():
    nodes = [*NODES, node("demo-g1-worker-cpu-1")]
    asks = scaling.current_asks(cluster(), nodes, "g1")
    scaling.launch(cluster(), asks, {"cpu": 1}, nodes)
    assert asks.replicas["cpu"] == 3


def test_a_termination_takes_the_chosen_worker_off_and_names_it_the_head_never():
    asks = scaling.current_asks(cluster(), NODES, "g1")
    unknown = scaling.terminate(asks, ["demo-g1-worker-cpu-0", "demo-g1-head", "gone"], NODES)
    assert unknown == ["demo-g1-head", "gone"]
    assert asks.replicas["cpu"] == 0 and asks.to_delete == {"cpu": ["demo-g1-worker-cpu-0"]}
    wire = asks.wire("g1")
    assert wire["groups"]["cpu"] == {"replicas": 0, "workersToDelete": ["demo-g1-worker-cpu-0"]}
    assert scaling.describe(scaling.current_asks(cluster(), NODES, "g1"), asks, "idle") == "cpu 1 -> 0 workers: idle"


def test_the_asks_stand_from_this_generations_last_write_and_forget_pods_that_are_gone():
    stored = {"generation": "g1", "groups": {"cpu": {"replicas": 2, "workersToDelete": ["demo-g1-worker-cpu-5",
                                                                                       "demo-g1-worker-cpu-0"]}}}
    asks = scaling.current_asks(cluster(autoscaler=stored), NODES, "g1")
    assert asks.replicas == {"cpu": 2, "gpu": 0}
    assert asks.to_delete == {"cpu": ["demo-g1-worker-cpu-0"]}
    # Another generation's choice names none of this one's pods; its counts still stand.
    other = scaling.current_asks(cluster(autoscaler={**stored, "generation": "g0"}), NODES, "g1")
    assert other.replicas["cpu"] == 2 and other.to_delete == {}


def test_nothing_changed_is_no_decision():
    asks = scaling.current_asks(cluster(), NODES, "g1")
    assert scaling.describe(asks, scaling.current_asks(cluster(), NODES, "g1"), "x") is None
