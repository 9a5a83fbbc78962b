"""Ownership by controller reference, never by labels or names: what a round sees as a ServeCluster's own, what it
leaves alone, and what the cluster then says."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from test_planner import plan_round, summary

from serveplane.operator import ownership
from serveplane.operator.actions import CreatePod, CreateSecret, WriteStatus
from serveplane.operator.api.cluster import GcsFaultToleranceSpec, ServeClusterSpec
from serveplane.operator.api.kinds import CLUSTERS, PODS, SECRETS, SERVICES
from serveplane.operator.cache import Store
from serveplane.operator.manifests import cleanup, common, network
from serveplane.operator.observe import from_store
from serveplane.operator.snapshot import Snapshot, TokenSecret

NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)


def with_owner(obj: dict[str, Any], uid: str, controller: bool = True) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster",
                                           "name": "demo", "uid": uid, "controller": controller}]
    return obj


def test_an_object_is_ours_only_by_this_clusters_controller_reference() -> None:
    svc = {"metadata": {"name": "demo-serve", "labels": common.labels("demo", "serve")}}
    assert not ownership.is_ours(svc, "u1"), "labels alone make nothing ours"
    assert ownership.is_ours(with_owner(svc, "u1"), "u1")
    assert not ownership.is_ours(with_owner(svc, "u2"), "u1"), "a namesake cluster's (another UID) is not ours"
    assert not ownership.is_ours(with_owner(svc, "u1", controller=False), "u1"), "a mere owner is no controller"
    assert ownership.split([svc, with_owner(svc, "u1")], "u1") == ([with_owner(svc, "u1")], [svc])


def test_the_snapshot_holds_only_what_the_cluster_owns_and_names_the_rest(k8s: Any) -> None:
    store = Store()
    cluster = k8s.cluster("demo", {}, uid="u1")
    store.put(CLUSTERS, cluster)
    mine = network.serve_service(cluster="demo", namespace=k8s.namespace, uid="u1", spec=ServeClusterSpec())
    theirs = copy.deepcopy(mine)
    theirs["metadata"].update(name="demo-demo-head", ownerReferences=[])
    pod = {"metadata": {"name": "demo-x-head", "namespace": k8s.namespace, "labels": common.labels("demo", "head")}}
    secret = {"metadata": {"name": "demo-ray-token", "namespace": k8s.namespace,
                           "labels": common.labels("demo", "auth")}, "data": {"token": "c2VjcmV0"}}
    for kind, obj in ((SERVICES, mine), (SERVICES, theirs), (PODS, pod), (SECRETS, secret)):
        store.put(kind, obj)
    snap = from_store(store, (k8s.namespace, "demo"), NOW, frozenset({("ingresses", "demo-serve")}))
    assert list(snap.services) == ["demo-serve"]
    assert snap.pods == (), "a pod with the cluster's labels but no controller reference is never ours to delete"
    assert snap.token_secret is None, "a Secret that is not ours is never read for the token"
    assert snap.foreign == {(SERVICES, "demo-demo-head"), (SECRETS, "demo-ray-token"), ("ingresses", "demo-serve")}


def test_a_name_taken_by_someone_else_is_left_alone_and_the_cluster_says_so(k8s: Any) -> None:
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=k8s.cluster("demo", {}),
                    apps=(k8s.app("hello"),), token_secret=TokenSecret("demo-ray-token", digest="d"),
                    foreign=frozenset({(SERVICES, "demo-serve")}), now=NOW)
    plan = plan_round(snap)
    assert ("Create", "services/demo-serve") not in summary(plan.actions)
    assert ("Create", "services/demo-head") in summary(plan.actions), "the rest goes on"
    (write,) = [a for a in plan.actions if isinstance(a, WriteStatus) and a.kind == CLUSTERS]
    degraded = next(c for c in write.patch["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "NameTaken"
    assert "Service demo-serve exists and is not this ServeCluster's" in degraded["message"]


def test_someone_elses_token_secret_is_never_replaced_and_no_pod_starts_without_ours(k8s: Any) -> None:
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=k8s.cluster("demo", {}),
                    foreign=frozenset({(SECRETS, "demo-ray-token")}), now=NOW)
    plan = plan_round(snap)
    assert not [a for a in plan.actions if isinstance(a, CreateSecret | CreatePod)]
    (write,) = [a for a in plan.actions if isinstance(a, WriteStatus) and a.kind == CLUSTERS]
    degraded = next(c for c in write.patch["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "NameTaken" and "Secret demo-ray-token" in degraded["message"]


def test_the_redis_clean_up_pod_is_the_clusters_by_its_owner_annotation(k8s: Any) -> None:
    """It has no ownerReference (a foreground deletion of the cluster would take it first), so it names its owner."""
    store = Store()
    store.put(CLUSTERS, k8s.cluster("demo", {}, uid="u1"))
    ft = GcsFaultToleranceSpec.model_validate({"redisAddress": "redis:6379"})
    mine = cleanup.redis_cleanup_pod(cluster="demo", namespace=k8s.namespace, uid="u1", ft=ft, image="i",
                                     namespaces=["n"])
    assert ownership.is_ours(mine, "u1") and not ownership.is_ours(mine, "u2")
    store.put(PODS, mine)
    snap = from_store(store, (k8s.namespace, "demo"), NOW, frozenset())
    assert [p["metadata"]["name"] for p in snap.pods] == ["demo-redis-cleanup"]
    # One an older serveplane made, naming no owner, is still waited for; one naming another cluster's UID is not.
    legacy = copy.deepcopy(mine)
    del legacy["metadata"]["annotations"][common.OWNER_UID_ANNOTATION]
    store.put(PODS, legacy)
    assert len(from_store(store, (k8s.namespace, "demo"), NOW, frozenset()).pods) == 1
    other = copy.deepcopy(mine)
    other["metadata"]["annotations"][common.OWNER_UID_ANNOTATION] = "u2"
    store.put(PODS, other)
    assert from_store(store, (k8s.namespace, "demo"), NOW, frozenset()).pods == ()
