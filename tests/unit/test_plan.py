"""Decisions of the reconcile: which pods to create and delete, when to PUT, proxy labels, finalizers."""
from __future__ import annotations

from typing import Any

import pytest

from serveplane.operator import finalizers, podfacts, proxies, rollout, submission
from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.manifests import auth, common, pods
from serveplane.operator.servereport import ServeReport, parse

UID = "cluster-uid"
GEN = "0a1b2"
"""The generation of the pods these tests build: plan_pods converges one generation's pods in place."""


def desired(workers: int = 2, image: str = "ray:1", generation: str = GEN) -> list[dict[str, Any]]:
    s = ServeClusterSpec.model_validate({"workerGroups": [{"name": "cpu", "replicas": workers}]} if workers else {})
    args = {"cluster": "demo", "namespace": "ns", "uid": UID, "spec": s, "image": image}
    return pods.ray_pods(**args, generation=generation)


HEAD, W0, W1 = "demo-0a1b2-head", "demo-0a1b2-worker-cpu-0", "demo-0a1b2-worker-cpu-1"
EVERY_POD = [HEAD, W0, W1]


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


# --- pods ----------------------------------------------------------------------------------------------------


def test_creates_every_pod_of_a_new_cluster():
    todo = rollout.plan_pods(desired(), [])
    assert names(todo.create) == EVERY_POD
    assert todo.delete == {}


def test_nothing_to_do_when_observed_matches(k8s):
    want = desired()
    todo = rollout.plan_pods(want, [k8s.observed(p) for p in want])
    assert todo.create == [] and todo.delete == {}


def test_creates_only_the_missing_pod(k8s):
    want = desired()
    have = [k8s.observed(want[0]), k8s.observed(want[2])]
    todo = rollout.plan_pods(want, have)
    assert names(todo.create) == ["demo-0a1b2-worker-cpu-0"]
    assert todo.create[0] == want[1]
    assert todo.delete == {}


def test_deletes_pods_no_longer_in_the_spec(k8s):
    have = [k8s.observed(p) for p in desired(workers=3)]
    todo = rollout.plan_pods(desired(workers=1), have)
    assert todo.create == []
    assert set(todo.delete) == {"demo-0a1b2-worker-cpu-1", "demo-0a1b2-worker-cpu-2"}
    assert all("no longer in the spec" in why for why in todo.delete.values())


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
def test_deletes_ended_pods_so_they_are_recreated(k8s, phase):
    want = desired()
    have = [k8s.observed(want[0]), k8s.observed(want[1], phase=phase, ready=False), k8s.observed(want[2])]
    todo = rollout.plan_pods(want, have)
    assert list(todo.delete) == ["demo-0a1b2-worker-cpu-0"]
    assert phase in todo.delete["demo-0a1b2-worker-cpu-0"]
    assert todo.create == []  # recreated on a later round, once the old pod is gone


def test_never_touches_pods_being_deleted(k8s):
    want = desired(workers=1)
    have = [
        k8s.observed(want[0]),
        k8s.observed(want[1], deleting=True),  # wanted, but on its way out: not recreated yet
        k8s.observed(desired(workers=3)[3], deleting=True),  # unwanted, already going
        k8s.observed(desired(workers=3)[2], deleting=True, phase="Failed"),
    ]
    todo = rollout.plan_pods(want, have)
    assert todo.create == []
    assert todo.delete == {}


def test_stale_pods_are_replaced_one_at_a_time_workers_first(k8s):
    old, new = desired(image="ray:1"), desired(image="ray:2")
    have = [k8s.observed(p) for p in old]
    todo = rollout.plan_pods(new, have)
    assert todo.create == []
    assert list(todo.delete) == ["demo-0a1b2-worker-cpu-0"]
    assert "spec changed" in todo.delete["demo-0a1b2-worker-cpu-0"]


def test_head_is_replaced_last(k8s):
    old, new = desired(image="ray:1"), desired(image="ray:2")
    have = [k8s.observed(old[0]), k8s.observed(new[1]), k8s.observed(new[2])]
    assert list(rollout.plan_pods(new, have).delete) == ["demo-0a1b2-head"]


def test_a_replaced_pod_is_recreated_with_the_new_spec(k8s):
    old, new = desired(image="ray:1"), desired(image="ray:2")
    have = [k8s.observed(old[0]), k8s.observed(new[2])]  # worker 0 was deleted for replacement
    todo = rollout.plan_pods(new, have)
    assert todo.create == [new[1]]
    assert todo.delete == {}


def test_no_replacement_while_any_pod_is_not_ready(k8s):
    old, new = desired(image="ray:1"), desired(image="ray:2")
    have = [k8s.observed(old[0]), k8s.observed(old[1]), k8s.observed(old[2], ready=False)]
    assert rollout.plan_pods(new, have).delete == {}


def test_no_replacement_while_a_pod_is_missing_or_deleting(k8s):
    old, new = desired(image="ray:1"), desired(image="ray:2")
    missing = rollout.plan_pods(new, [k8s.observed(old[0]), k8s.observed(old[1])])
    assert names(missing.create) == ["demo-0a1b2-worker-cpu-1"] and missing.delete == {}
    deleting = rollout.plan_pods(new, [k8s.observed(old[0]), k8s.observed(old[1]),
                                    k8s.observed(old[2], deleting=True)])
    assert deleting.create == [] and deleting.delete == {}


def test_no_replacement_while_an_unwanted_pod_is_still_going(k8s):
    old, new = desired(workers=2, image="ray:1"), desired(workers=1, image="ray:2")
    have = [k8s.observed(p) for p in old]
    todo = rollout.plan_pods(new, have)
    assert list(todo.delete) == ["demo-0a1b2-worker-cpu-1"]  # scale down first, no replacement in the same round


def with_digest(pods_: list[dict[str, Any]], digest: str | None) -> list[dict[str, Any]]:
    """The desired pods as the planner stamps them with the token's digest (None: auth Disabled)."""
    for pod in pods_:
        if digest is not None:
            pod["metadata"]["annotations"][auth.DIGEST_ANNOTATION] = digest
    return pods_


ROTATE = "the Ray auth token changed"

# (old digest, new digest, observed pods' states, expected deletions, expected creations)
TOKEN_CASES = {
    "same token: nothing": ("d1", "d1", ["ready"] * 3, [], []),
    "new token: every pod at once, not one at a time": (
        "d1", "d2", ["ready"] * 3, EVERY_POD, []),
    "new token while pods are not ready: still every pod": (
        "d1", "d2", ["ready", "unready", "unready"], EVERY_POD, []),
    "auth switched on (old pods carry no digest)": (
        None, "d2", ["ready"] * 3, EVERY_POD, []),
    "auth switched off": (
        "d1", None, ["ready"] * 3, EVERY_POD, []),
    "old-token pods terminating: no new pod yet, even where a name is free": (
        "d1", "d2", ["deleting", "deleting", "gone"], [], []),
    "old pods gone: the missing ones are created with the new token": (
        "d1", "d2", ["gone", "gone", "gone"], [], EVERY_POD),
    "new-token pods partly back: the rest are created": (
        "d2", "d2", ["ready", "gone", "gone"], [], ["demo-0a1b2-worker-cpu-0", "demo-0a1b2-worker-cpu-1"]),
}


@pytest.mark.parametrize("case", sorted(TOKEN_CASES))
def test_a_token_change_replaces_every_ray_pod_at_once(k8s, case):
    old_digest, new_digest, states, deleted, created = TOKEN_CASES[case]
    old, new = with_digest(desired(), old_digest), with_digest(desired(), new_digest)
    have = [
        k8s.observed(pod, ready=state != "unready", deleting=state == "deleting")
        for pod, state in zip(old, states, strict=True)
        if state != "gone"
    ]
    todo = rollout.plan_pods(new, have)
    assert sorted(todo.delete) == deleted
    assert all(ROTATE in why for why in todo.delete.values())
    assert names(todo.create) == created


def test_pod_without_hash_annotation_counts_as_stale(k8s):
    want = desired(workers=0)
    have = [k8s.observed(want[0], annotations={})]
    assert list(rollout.plan_pods(want, have).delete) == ["demo-0a1b2-head"]


# --- generations ---------------------------------------------------------------------------------------------


def test_generation_of_a_pod_is_its_label_and_legacy_pods_have_none(k8s):
    head = k8s.observed(desired(workers=0)[0])
    assert podfacts.generation_of(head) == GEN
    del head["metadata"]["labels"][common.GENERATION_LABEL]
    assert podfacts.generation_of(head) == ""
    assert podfacts.generation_of({"metadata": {"name": "bare"}}) == ""


def test_is_head_by_the_node_type_label(k8s):
    head, worker = desired(workers=1)
    assert common.is_head(head) and not common.is_head(worker)
    assert not common.is_head({"metadata": {"name": "demo-head"}}), "the name alone makes no head"


def test_live_head_is_the_generations_head_by_its_labels(k8s):
    old = [k8s.observed(p) for p in desired(workers=1, generation="aaaaa")]
    new = [k8s.observed(p) for p in desired(workers=1, generation="bbbbb")]
    everything = [old[1], new[1], *old[:1], *new[:1]]  # workers first: a worker is never taken for the head
    assert podfacts.live_head(everything, "aaaaa") is old[0]
    assert podfacts.live_head(everything, "bbbbb") is new[0]
    assert podfacts.live_head(everything, "ccccc") is None
    assert podfacts.live_head([old[1], new[1]], "aaaaa") is None, "workers only: no head"


def test_live_head_skips_a_terminating_head(k8s):
    going = k8s.observed(desired(workers=0)[0], deleting=True)
    assert podfacts.live_head([going], GEN) is None


def test_live_head_of_the_legacy_generation_is_the_unlabelled_head(k8s):
    legacy = k8s.observed(desired(workers=0)[0])
    del legacy["metadata"]["labels"][common.GENERATION_LABEL]
    labelled = k8s.observed(desired(workers=0)[0])
    assert podfacts.live_head([labelled, legacy], "") is legacy
    assert podfacts.live_head([legacy], GEN) is None


def test_withdrawn_removes_the_proxy_labels_only_where_there_are_some(k8s):
    want = desired()
    observed = [
        k8s.observed(want[0], labels=serving("actor-0")),
        k8s.observed(want[1], labels={common.PROXY_LABEL: common.PROXY_HEALTHY}),
        k8s.observed(want[2]),
    ]
    assert proxies.withdrawn(observed) == {"demo-0a1b2-head": UNLABELLED, "demo-0a1b2-worker-cpu-0": UNLABELLED}
    assert proxies.withdrawn([]) == {}


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ([{"type": "Ready", "status": "True"}], True),
        ([{"type": "Ready", "status": "False"}], False),
        ([{"type": "PodScheduled", "status": "True"}], False),
        ([], False),
        (None, False),
    ],
)
def test_pod_ready(conditions, ready):
    pod = {"metadata": {"name": "p"}, "status": {"conditions": conditions}}
    assert podfacts.pod_ready(pod) is ready
    assert podfacts.pod_ready({"metadata": {"name": "p"}}) is False


# --- when to PUT the config ---------------------------------------------------------------------------------

APPLIED = {"appliedConfigHash": "h1", "appliedHeadUid": "head-1"}


def reason(**overrides: Any) -> str | None:
    args: dict[str, Any] = {
        "config_hash": "h1", "head_uid": "head-1", "applied": dict(APPLIED),
        "composed_apps": {"a", "b"}, "serve_apps": {"a", "b"}, "rejected_hash": None,
    }
    args.update(overrides)
    return submission.submit_reason(**args)


def test_nothing_to_submit_when_up_to_date():
    assert reason() is None
    assert reason(serve_apps={"a", "b", "leaving"}) is None  # Serve still deleting an app is no reason


def test_not_while_serve_is_unreachable():
    assert reason(serve_apps=None, config_hash="h2") is None
    assert reason(serve_apps=None, applied={}) is None


def test_not_again_after_serve_rejected_this_exact_config():
    assert reason(config_hash="h2", rejected_hash="h2") is None
    assert reason(config_hash="h3", rejected_hash="h2") == "ConfigChanged"


def test_config_changed():
    assert reason(config_hash="h2") == "ConfigChanged"
    assert reason(applied={}) == "ConfigChanged"  # never applied


def test_head_replaced():
    assert reason(head_uid="head-2") == "HeadReplaced"
    assert reason(applied={"appliedConfigHash": "h1"}) == "HeadReplaced"


def test_serve_lost_applications():
    assert reason(serve_apps={"a"}) == "ServeLostApplications"
    assert reason(serve_apps=set()) == "ServeLostApplications"


def test_empty_config_on_a_fresh_serve_is_submitted_once():
    assert reason(composed_apps=set(), serve_apps=set(), applied={}) == "ConfigChanged"
    assert reason(composed_apps=set(), serve_apps=set()) is None


def test_config_change_takes_precedence_over_the_other_reasons():
    assert reason(config_hash="h2", head_uid="head-2", serve_apps=set()) == "ConfigChanged"
    assert reason(head_uid="head-2", serve_apps=set()) == "HeadReplaced"


# --- proxy labels ------------------------------------------------------------------------------------------


def serve_report(*proxies: tuple[str, str]) -> ServeReport:
    """Serve's proxy report: proxy i on `ip` in `status`, its actor `actor-i`."""
    return parse({"applications": {}, "proxies": {
        f"node-{i}": {"node_ip": ip, "status": status, "node_id": f"node-{i}", "actor_id": f"actor-{i}"}
        for i, (ip, status) in enumerate(proxies)
    }})


def serving(actor: str) -> dict[str, str | None]:
    return {common.PROXY_LABEL: common.PROXY_HEALTHY, common.PROXY_ACTOR_LABEL: actor}


UNLABELLED: dict[str, str | None] = {common.PROXY_LABEL: None, common.PROXY_ACTOR_LABEL: None}


def test_labels_pods_whose_proxy_is_healthy_and_unlabels_the_others(k8s):
    want = desired()
    observed = [
        k8s.observed(want[0], ip="10.0.0.1"),  # healthy, no label yet
        k8s.observed(want[1], ip="10.0.0.2", labels=serving("actor-1")),  # labelled, now unhealthy
        k8s.observed(want[2], ip="10.0.0.3", labels=serving("actor-2")),  # labelled and healthy: unchanged
    ]
    serve = serve_report(("10.0.0.1", "HEALTHY"), ("10.0.0.2", "UNHEALTHY"), ("10.0.0.3", "HEALTHY"))
    assert proxies.proxy_labels(observed, serve) == {HEAD: serving("actor-0"), W0: UNLABELLED}


def test_draining_or_missing_proxies_lose_the_label(k8s):
    want = desired()
    observed = [k8s.observed(want[0], ip="10.0.0.1", labels=serving("actor-0")),
                k8s.observed(want[1], ip="10.0.0.2", labels=serving("actor-9")),
                k8s.observed(want[2], ip=None)]
    serve = serve_report(("10.0.0.1", "DRAINING"))
    assert proxies.proxy_labels(observed, serve) == {
        "demo-0a1b2-head": UNLABELLED, "demo-0a1b2-worker-cpu-0": UNLABELLED
    }


def test_no_changes_when_labels_are_right(k8s):
    want = desired()
    observed = [k8s.observed(want[0], ip="10.0.0.1", labels=serving("actor-0")),
                k8s.observed(want[1], ip="10.0.0.2")]
    assert proxies.proxy_labels(observed, serve_report(("10.0.0.1", "HEALTHY"))) == {}


def test_labels_stay_as_they_are_without_a_report_from_serve(k8s):
    observed = [k8s.observed(p) for p in desired()]
    assert proxies.proxy_labels(observed, None) == {}


@pytest.mark.parametrize("report", [None, "healthy"])
def test_a_pod_that_is_not_ready_loses_its_labels_report_or_not(k8s, report):
    """Its Ray crashed: once Ready again, it must wait for Serve to report a proxy there."""
    want = desired(workers=1)
    observed = [k8s.observed(want[0], ip="10.0.0.1", ready=False, labels=serving("actor-0")),
                k8s.observed(want[1], ip="10.0.0.2", labels=serving("actor-1"))]
    serve = serve_report(("10.0.0.1", "HEALTHY"), ("10.0.0.2", "HEALTHY")) if report else None
    assert proxies.proxy_labels(observed, serve) == {"demo-0a1b2-head": UNLABELLED}


def test_a_report_without_proxies_changes_no_label(k8s):
    """Serve's controller is not running (a new head recovering it from the GCS): the workers' proxies still
    serve, so the serve Service keeps them; a report with proxies decides again."""
    want = desired(workers=1)
    observed = [k8s.observed(p, ip=f"10.0.0.{i}", labels=serving(f"actor-{i - 1}")) for i, p in enumerate(want, 1)]
    assert proxies.proxy_labels(observed, parse({"controller_info": {}, "proxies": {}, "applications": {}})) == {}
    assert proxies.proxy_labels(observed, serve_report(("10.0.0.1", "HEALTHY"))) == {
        "demo-0a1b2-worker-cpu-0": UNLABELLED
    }


@pytest.mark.parametrize(
    ("labels", "state", "actor", "expected"),
    [
        # A restarted controller re-discovers the proxy that served all along: it keeps serving.
        (serving("actor-0"), "STARTING", "actor-0", {}),
        # A new proxy actor (the node's Ray restarted): out of the serve Service until HEALTHY.
        (serving("actor-0"), "STARTING", "actor-7", {"demo-0a1b2-head": UNLABELLED}),
        (None, "STARTING", "actor-0", {}),
        (None, "HEALTHY", "actor-0", {"demo-0a1b2-head": serving("actor-0")}),
        (serving("actor-0"), "HEALTHY", "actor-0", {}),
        (serving("actor-0"), "HEALTHY", "actor-7", {"demo-0a1b2-head": serving("actor-7")}),
        (serving("actor-0"), "UNHEALTHY", "actor-0", {"demo-0a1b2-head": UNLABELLED}),
        (serving("actor-0"), "DRAINING", "actor-0", {"demo-0a1b2-head": UNLABELLED}),
        (serving("actor-0"), "DRAINED", "actor-0", {"demo-0a1b2-head": UNLABELLED}),
    ],
)
def test_the_proxy_label_follows_the_reported_state_and_actor(k8s, labels, state, actor, expected):
    head = k8s.observed(desired(workers=0)[0], ip="10.0.0.1", labels=labels)
    report = {"proxies": {
        "n": {"node_ip": "10.0.0.1", "status": state, "actor_id": actor},
        "other": {"node_ip": "10.0.0.9", "status": "HEALTHY", "actor_id": "actor-9"},
    }}
    assert proxies.proxy_labels([head], parse(report)) == expected


# --- finalizers ----------------------------------------------------------------------------------------------


def test_live_application_gets_the_finalizer_and_keeps_others(k8s):
    assert finalizers.finalizers_to_set(k8s.app("a"), {"a"}) == [finalizers.FINALIZER]
    assert finalizers.finalizers_to_set(k8s.app("a", finalizers=["other/x"]), None) == ["other/x", finalizers.FINALIZER]
    assert finalizers.finalizers_to_set(k8s.app("a", finalizers=["other/x", finalizers.FINALIZER]), {"a"}) is None


def test_deleted_application_keeps_the_finalizer_while_serve_lists_it(k8s):
    app = k8s.app("a", deleting=True, finalizers=[finalizers.FINALIZER, "other/x"])
    assert finalizers.finalizers_to_set(app, {"a", "b"}) is None
    assert finalizers.finalizers_to_set(app, None) is None  # Serve unreachable: cannot know it left


def test_deleted_application_loses_the_finalizer_once_serve_dropped_it(k8s):
    app = k8s.app("a", deleting=True, finalizers=["other/x", finalizers.FINALIZER])
    assert finalizers.finalizers_to_set(app, {"b"}) == ["other/x"]
    assert finalizers.finalizers_to_set(app, set()) == ["other/x"]


def test_deleted_application_without_our_finalizer_is_left_alone(k8s):
    assert finalizers.finalizers_to_set(k8s.app("a", deleting=True, finalizers=["other/x"]), set()) is None
    assert finalizers.finalizers_to_set(k8s.app("a", deleting=True), set()) is None


def test_finalizer_name():
    assert finalizers.FINALIZER == "serveplane.dev/serve-cleanup"
