"""The watch-fed store: which version wins, what counts as news, and which cluster loops an event wakes."""

from __future__ import annotations

import copy
from typing import Any

from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.api.kinds import APPS, CLUSTERS, DEPLOYMENTS, PODS, SERVICES
from serveplane.operator.cache import ORPHANS, Store
from serveplane.operator.manifests import common, network, pods


def bumped(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = str(int(out["metadata"]["resourceVersion"]) + 1)
    if status:
        out["status"] = status
    return out


def pod(k8s: Any, name: str, cluster: str = "demo", rv: str = "7") -> dict[str, Any]:
    body = {
        "metadata": {
            "name": name,
            "namespace": k8s.namespace,
            "labels": {common.CLUSTER_LABEL: cluster},
            "resourceVersion": rv,
        }
    }
    return k8s.observed(body)


def test_a_new_cluster_wakes_its_loop(k8s: Any) -> None:
    store = Store()
    assert store.put(CLUSTERS, k8s.cluster("demo")) == {(k8s.namespace, "demo")}


def test_the_echo_of_the_operators_own_status_write_wakes_nothing(k8s: Any) -> None:
    store = Store()
    app = k8s.app("hello")
    store.put(APPS, app)
    assert store.put(APPS, bumped(app, serveStatus="RUNNING")) == set()
    assert store.get(APPS, k8s.namespace, "hello")["status"] == {"serveStatus": "RUNNING"}


def test_a_pods_status_is_news(k8s: Any) -> None:
    store = Store()
    p = pod(k8s, "demo-head")
    store.put(PODS, p)
    later = bumped(p)
    later["status"]["podIP"] = "10.0.0.9"
    assert store.put(PODS, later) == {(k8s.namespace, "demo")}


def test_an_older_version_never_replaces_a_newer_one(k8s: Any) -> None:
    """A write's response can arrive before the watch events that preceded it."""
    store = Store()
    old = k8s.app("hello")
    new = bumped(old)
    new["metadata"]["finalizers"] = ["x"]
    store.put(APPS, new)
    assert store.put(APPS, old) == set()
    assert store.get(APPS, k8s.namespace, "hello")["metadata"]["finalizers"] == ["x"]


def test_the_same_version_again_is_no_news(k8s: Any) -> None:
    store = Store()
    app = k8s.app("hello")
    store.put(APPS, app)
    assert store.put(APPS, copy.deepcopy(app)) == set()


def test_an_application_that_moves_wakes_both_clusters_and_the_orphans(k8s: Any) -> None:
    store = Store()
    app = k8s.app("hello", {"cluster": "a"})
    assert store.put(APPS, app) == {(k8s.namespace, "a"), (k8s.namespace, ORPHANS)}
    moved = bumped(app)
    moved["spec"]["cluster"] = "b"
    assert store.put(APPS, moved) == {(k8s.namespace, "a"), (k8s.namespace, "b"), (k8s.namespace, ORPHANS)}


def test_a_deployment_wakes_the_cluster_of_its_application_or_the_orphans(k8s: Any) -> None:
    store = Store()
    sdep = k8s.sdep("model", "hello")
    assert store.put(DEPLOYMENTS, sdep) == {(k8s.namespace, ORPHANS)}
    store.put(APPS, k8s.app("hello", {"cluster": "a"}))
    assert store.put(DEPLOYMENTS, bumped(sdep, x=1) | {"spec": {"application": "hello", "numReplicas": 2}}) == {
        (k8s.namespace, "a")
    }


def test_removal_wakes_what_the_last_version_concerned(k8s: Any) -> None:
    store = Store()
    app = k8s.app("hello", {"cluster": "a"})
    store.put(APPS, app)
    assert store.remove(APPS, app) == {(k8s.namespace, "a"), (k8s.namespace, ORPHANS)}
    assert store.get(APPS, k8s.namespace, "hello") is None


def test_every_key_covers_clusters_missing_clusters_and_orphans(k8s: Any) -> None:
    store = Store()
    store.put(CLUSTERS, k8s.cluster("demo"))
    store.put(APPS, k8s.app("waiting", {"cluster": "later"}))
    store.put(PODS, pod(k8s, "old-head", cluster="old"))
    assert store.every_key() == {
        (k8s.namespace, "demo"),
        (k8s.namespace, "later"),
        (k8s.namespace, ORPHANS),
        (k8s.namespace, "old"),
    }


def test_owned_objects_are_found_by_the_cluster_label(k8s: Any) -> None:
    store = Store()
    store.put(PODS, pod(k8s, "demo-head"))
    store.put(PODS, pod(k8s, "other-head", cluster="other"))
    assert [p["metadata"]["name"] for p in store.owned(PODS, k8s.namespace, "demo")] == ["demo-head"]


def test_every_generations_pods_and_head_services_belong_to_their_cluster(k8s: Any) -> None:
    """During an upgrade two generations run side by side: the store hands the cluster loop both, and their
    changes wake it."""
    store = Store()
    spec = ServeClusterSpec.model_validate({"workerGroups": [{"name": "cpu"}]})
    built = [
        k8s.observed(p)
        for gen in ("aaaaa", "bbbbb")
        for p in pods.ray_pods(cluster="demo", namespace=k8s.namespace, uid="u", spec=spec, image="i", generation=gen)
    ]
    services = [
        network.head_service(cluster="demo", namespace=k8s.namespace, uid="u", generation="aaaaa"),
        network.generation_head_service(cluster="demo", namespace=k8s.namespace, uid="u", generation="bbbbb"),
    ]
    for p in built:
        assert store.put(PODS, p) == {(k8s.namespace, "demo")}
    for svc in services:
        assert store.put(SERVICES, svc) == {(k8s.namespace, "demo")}
    assert sorted(p["metadata"]["name"] for p in store.owned(PODS, k8s.namespace, "demo")) == [
        "demo-aaaaa-head", "demo-aaaaa-worker-cpu-0", "demo-bbbbb-head", "demo-bbbbb-worker-cpu-0",
    ]
    assert sorted(s["metadata"]["name"] for s in store.owned(SERVICES, k8s.namespace, "demo")) == [
        "demo-bbbbb-head", "demo-head",
    ]
    assert store.remove(PODS, built[0]) == {(k8s.namespace, "demo")}


def test_the_last_version_of_a_deleted_resource_never_brings_it_back(k8s: Any) -> None:
    """The response of the write that removed the last finalizer can arrive after the watch's DELETED event."""
    store = Store()
    app = k8s.app("hello", {"cluster": "a"}, deleting=True, finalizers=["serveplane.dev/serve-cleanup"])
    store.put(APPS, app)
    released = bumped(app)
    released["metadata"]["finalizers"] = []
    store.remove(APPS, app)  # the DELETED event came first
    assert store.put(APPS, released) == set()
    assert store.get(APPS, k8s.namespace, "hello") is None
    store.put(APPS, app)  # or the response comes first: it removes the object
    assert store.put(APPS, released) == {(k8s.namespace, "a"), (k8s.namespace, ORPHANS)}
    assert store.get(APPS, k8s.namespace, "hello") is None


def test_a_terminating_pod_without_finalizers_stays_until_the_watch_says_it_is_gone(k8s: Any) -> None:
    store = Store()
    terminating = k8s.observed(pod(k8s, "demo-head"), deleting=True)
    store.put(PODS, terminating)
    assert store.get(PODS, k8s.namespace, "demo-head") is not None
