"""The operator's side of Ray's autoscaler: how many workers each group runs (clamped to its bounds), which pods
they are (the autoscaler's choice goes, never another), and what the status and Events say."""
from __future__ import annotations

from typing import Any

import pytest

from serveplane.operator import autoscaling
from serveplane.operator.api.cluster import ServeClusterSpec


def spec(*, enabled: bool = True, **group: Any) -> ServeClusterSpec:
    return ServeClusterSpec.model_validate({
        "autoscaling": {"enabled": enabled},
        "workerGroups": [{"name": "cpu", "replicas": 1, **group}],
    })


def asks(replicas: int, *delete: str, generation: str = "g1") -> dict[str, Any]:
    return {"generation": generation, "groups": {"cpu": {"replicas": replicas, "workersToDelete": list(delete)}}}


def pod(index: int, *, deleting: bool = False, generation: str = "g1", group: str = "cpu") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"demo-{generation}-worker-{group}-{index}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


@pytest.mark.parametrize(
    ("group", "autoscaler", "expected"),
    [
        # Without an ask, replicas is the count; the ask wins once made; the bounds clamp it.
        ({"replicas": 2, "maxReplicas": 5}, None, 2),
        ({"replicas": 2, "maxReplicas": 5}, asks(4), 4),
        ({"replicas": 2, "maxReplicas": 5}, asks(50), 5),
        ({"replicas": 2, "minReplicas": 1, "maxReplicas": 5}, asks(0), 1),
        # maxReplicas defaults to replicas: no growth unless set.
        ({"replicas": 2}, asks(9), 2),
        # replicas outside the bounds is clamped too.
        ({"replicas": 7, "maxReplicas": 3}, None, 3),
        ({"replicas": 0, "minReplicas": 2, "maxReplicas": 3}, None, 2),
    ],
)
def test_a_group_runs_the_ask_clamped_to_its_bounds(group, autoscaler, expected):
    s = spec(**group)
    assert autoscaling.desired(s, autoscaling.requests(s, autoscaler)) == {"cpu": expected}


def test_without_autoscaling_the_ask_is_ignored_and_replicas_counts():
    s = spec(enabled=False, replicas=2, maxReplicas=9)
    assert autoscaling.desired(s, autoscaling.requests(s, asks(9))) == {"cpu": 2}


def test_an_edit_of_the_bounds_takes_effect_on_the_standing_ask():
    standing = asks(6)
    assert autoscaling.desired(spec(maxReplicas=8), autoscaling.requests(spec(maxReplicas=8), standing)) == {"cpu": 6}
    narrowed = spec(maxReplicas=3)
    assert autoscaling.desired(narrowed, autoscaling.requests(narrowed, standing)) == {"cpu": 3}
    raised = spec(minReplicas=7, maxReplicas=9)
    assert autoscaling.desired(raised, autoscaling.requests(raised, standing)) == {"cpu": 7}


def test_max_replicas_holds_however_much_is_asked():
    s = spec(replicas=1, maxReplicas=4)
    for ask in (5, 50, 10_000):
        assert autoscaling.desired(s, autoscaling.requests(s, asks(ask)))["cpu"] == 4


@pytest.mark.parametrize(
    ("count", "present", "chosen", "expected"),
    [
        ([2, [0, 1], [], [0, 1]]),
        # Growing takes the lowest free index.
        ([3, [0, 2], [], [0, 1, 2]]),
        # Shrinking without a choice drops the highest index.
        ([1, [0, 1], [], [0]]),
        # Shrinking with the autoscaler's choice drops exactly that pod.
        ([1, [0, 1], [0], [1]]),
        ([2, [0, 1, 2], [1], [0, 2]]),
        # A chosen pod the bounds keep (minReplicas) stays: no pod is replaced by another.
        ([2, [0, 1], [1], [0, 1]]),
    ],
)
def test_which_indices_a_group_runs(count, present, chosen, expected):
    assert autoscaling.pick(count, present, chosen) == expected


def test_of_two_chosen_pods_the_bounds_keep_the_running_one_not_the_terminating_one():
    assert autoscaling.pick(1, [0, 1], chosen=[0, 1], terminating=[0]) == [1]


def test_a_pod_replaced_in_place_keeps_its_index_and_no_pod_starts_beside_it():
    s = spec(enabled=False, replicas=2)
    indices = autoscaling.workers(spec=s, cluster="demo", generation="g1", pods=[pod(0, deleting=True), pod(1)],
                                  requested={}, chosen=set())
    assert indices == {"cpu": [0, 1]}


def test_the_pod_the_autoscaler_chose_is_the_one_that_goes():
    s = spec(replicas=1, minReplicas=1, maxReplicas=3)
    autoscaler = asks(2, "demo-g1-worker-cpu-0")
    chosen = autoscaling.doomed(autoscaler, "g1")
    indices = autoscaling.workers(
        spec=s, cluster="demo", generation="g1", pods=[pod(0), pod(1), pod(2)],
        requested=autoscaling.requests(s, autoscaler), chosen=chosen,
    )
    assert indices == {"cpu": [1, 2]}
    assert autoscaling.why_deleted("demo-g1-worker-cpu-0", chosen, "x").startswith("Ray's autoscaler chose it")
    assert autoscaling.why_deleted("demo-g1-worker-cpu-2", chosen, "x") == "x"


def test_an_old_generations_choice_names_no_pod_of_the_new_one_but_its_count_stands():
    s = spec(replicas=1, maxReplicas=3)
    old = asks(3, "demo-g0-worker-cpu-1", generation="g0")
    assert autoscaling.doomed(old, "g1") == set()
    indices = autoscaling.workers(spec=s, cluster="demo", generation="g1", pods=[],
                                  requested=autoscaling.requests(s, old), chosen=set())
    assert indices == {"cpu": [0, 1, 2]}, "a new generation starts as large as the old one"


def test_pods_of_other_groups_generations_or_clusters_are_not_counted():
    assert autoscaling.worker_index("demo-g1-worker-cpu-12", "demo", "g1", "cpu") == 12
    for other in ("demo-g1-worker-gpu-1", "demo-g2-worker-cpu-1", "demo2-g1-worker-cpu-1", "demo-g1-head",
                  "demo-g1-worker-cpu-x"):
        assert autoscaling.worker_index(other, "demo", "g1", "cpu") is None


def test_group_status_says_desired_running_asked_and_what_the_autoscaler_reads():
    s = spec(replicas=1, minReplicas=1, maxReplicas=3)
    entries = autoscaling.group_status(s, autoscaling.requests(s, asks(5)), {"cpu": 2}, {"cpu": {"CPU": 2.0}})
    assert entries == [{"name": "cpu", "desired": 3, "running": 2, "requested": 5, "minReplicas": 1,
                        "maxReplicas": 3, "rayResources": {"CPU": 2.0}}]
    plain = spec(enabled=False, replicas=2)
    assert autoscaling.group_status(plain, {}, {}, {}) == [{"name": "cpu", "desired": 2, "running": 0}]


def test_an_event_for_each_change_of_a_groups_count_with_the_autoscalers_reason():
    before = [{"name": "cpu", "desired": 1}, {"name": "gpu", "desired": 2}]
    after = [{"name": "cpu", "desired": 2, "requested": 2}, {"name": "gpu", "desired": 2, "requested": 2},
             {"name": "new", "desired": 1}]
    events = autoscaling.scale_events(before, after, "cpu 1 -> 2 workers: Ray asked for 1 x cpu")
    assert events == [("ScaledUp", "worker group cpu: 1 -> 2 pods (autoscaler: cpu 1 -> 2 workers: Ray asked for "
                                   "1 x cpu)")]
    assert autoscaling.scale_events(after, [{"name": "cpu", "desired": 1}], None) == [
        ("ScaledDown", "worker group cpu: 2 -> 1 pods")]
