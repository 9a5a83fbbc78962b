"""Table tests of a round's plan: for a given snapshot, exactly these actions; for a steady cluster, none."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from serveplane.operator import planner
from serveplane.operator.actions import (
    Action,
    Apply,
    CreatePod,
    CreateSecret,
    DeleteOwned,
    DeletePod,
    LabelPod,
    SetFinalizers,
    Submit,
    WriteStatus,
)
from serveplane.operator.cache import ORPHANS
from serveplane.operator.manifests import auth, common, netpol
from serveplane.operator.plan import FINALIZER
from serveplane.operator.snapshot import Rejection, Snapshot, TokenSecret

IMAGE = "ray:1"
NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)
CLUSTER_SPEC = {"workerGroups": [{"name": "cpu", "replicas": 1}]}


def summary(actions: tuple[Action, ...]) -> list[tuple[str, str]]:
    """(action, object) pairs, in order: what a reader of a plan wants to see."""
    out = []
    for a in actions:
        match a:
            case CreatePod(pod=pod):
                out.append(("CreatePod", pod["metadata"]["name"]))
            case DeletePod(name=name) | LabelPod(name=name):
                out.append((type(a).__name__, name))
            case DeleteOwned(kind=kind, name=name):
                out.append(("DeleteOwned", f"{kind}/{name}"))
            case CreateSecret(secret=secret):
                out.append(("CreateSecret", secret["metadata"]["name"]))
            case Apply(kind=kind, obj=obj):
                out.append(("Apply", f"{kind}/{obj['metadata']['name']}"))
            case SetFinalizers(kind=kind, name=name) | WriteStatus(kind=kind, name=name):
                out.append((type(a).__name__, f"{kind}/{name}"))
            case Submit(reason=reason):
                out.append(("Submit", reason))
    return out


def serve_report(pods: list[dict[str, Any]], apps: dict[str, str]) -> dict[str, Any]:
    """Serve's GET answer: every pod's proxy HEALTHY, each application in the given state."""
    return {
        "proxies": {f"node-{i}": {"node_ip": p["status"]["podIP"], "status": "HEALTHY"} for i, p in enumerate(pods)},
        "applications": {
            name: {
                "status": state,
                "route_prefix": f"/{name}",
                "message": "",
                "deployments": {},
                "deployed_app_config": {"name": name, "route_prefix": f"/{name}", "import_path": "x:y"},
            }
            for name, state in apps.items()
        },
    }


class World:
    """A snapshot, and a stand-in for the API server that applies a plan's writes to it (as the store would)."""

    def __init__(self, k8s: Any, snap: Snapshot) -> None:
        self.k8s = k8s
        self.snap = snap
        self._ip = 0
        self._tokens = 0

    def plan(self) -> Any:
        return planner.plan_round(self.snap, image=IMAGE)

    def _replace(self, objs: tuple[dict[str, Any], ...], name: str, change: Any) -> tuple[dict[str, Any], ...]:
        out = []
        for obj in objs:
            if obj["metadata"]["name"] == name:
                obj = copy.deepcopy(obj)
                change(obj)
                obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
            out.append(obj)
        return tuple(out)

    def apply(self, actions: tuple[Action, ...]) -> None:
        snap = self.snap
        for a in actions:
            match a:
                case CreatePod(pod=pod):
                    self._ip += 1
                    snap = dataclasses.replace(
                        snap, pods=snap.pods + (self.k8s.observed(pod, ip=f"10.0.0.{self._ip}"),)
                    )
                case DeletePod(name=name):
                    snap = dataclasses.replace(snap, pods=tuple(p for p in snap.pods if p["metadata"]["name"] != name))
                case LabelPod(name=name, labels=labels):

                    def relabel(pod: dict[str, Any], labels: dict[str, str | None] = labels) -> None:
                        for k, v in labels.items():
                            if v is None:
                                pod["metadata"]["labels"].pop(k, None)
                            else:
                                pod["metadata"]["labels"][k] = v

                    snap = dataclasses.replace(snap, pods=self._replace(snap.pods, name, relabel))
                case Apply(kind="services", obj=obj):
                    live = copy.deepcopy(obj)
                    # What the API server adds: a cluster IP and defaulted port fields the operator never sets.
                    live["spec"].setdefault("clusterIP", "10.96.0.10")
                    for port in live["spec"]["ports"]:
                        port.setdefault("protocol", "TCP")
                    live["metadata"]["resourceVersion"] = "1"
                    snap = dataclasses.replace(snap, services={**snap.services, obj["metadata"]["name"]: live})
                case Apply(kind="ingresses", obj=obj):
                    snap = dataclasses.replace(snap, ingresses={**snap.ingresses, obj["metadata"]["name"]: obj})
                case Apply(kind="networkpolicies", obj=obj):
                    policies = {**snap.network_policies, obj["metadata"]["name"]: obj}
                    snap = dataclasses.replace(snap, network_policies=policies)
                case DeleteOwned(kind="ingresses", name=name):
                    snap = dataclasses.replace(snap, ingresses={k: v for k, v in snap.ingresses.items() if k != name})
                case DeleteOwned(kind="networkpolicies", name=name):
                    policies = {k: v for k, v in snap.network_policies.items() if k != name}
                    snap = dataclasses.replace(snap, network_policies=policies)
                case DeleteOwned(kind="secrets"):
                    snap = dataclasses.replace(snap, token_secret=None)
                case CreateSecret(secret=secret):
                    self._tokens += 1
                    token = TokenSecret(secret["metadata"]["name"], digest=f"digest-{self._tokens}")
                    snap = dataclasses.replace(snap, token_secret=token)
                case SetFinalizers(kind="serveapplications", name=name, finalizers=finalizers):

                    def refinalize(obj: dict[str, Any], finalizers: tuple[str, ...] = finalizers) -> None:
                        obj["metadata"]["finalizers"] = list(finalizers)

                    snap = dataclasses.replace(snap, apps=self._replace(snap.apps, name, refinalize))
                case WriteStatus(kind=kind, name=name, patch=patch):

                    def merge(obj: dict[str, Any], patch: dict[str, Any] = patch) -> None:
                        status = obj.setdefault("status", {})
                        for k, v in patch.items():
                            if v is None:
                                status.pop(k, None)
                            else:
                                status[k] = v

                    if kind == "serveclusters":
                        cluster = self._replace((snap.cluster,), name, merge)[0] if snap.cluster else None
                        snap = dataclasses.replace(snap, cluster=cluster)
                    elif kind == "serveapplications":
                        snap = dataclasses.replace(snap, apps=self._replace(snap.apps, name, merge))
                    else:
                        snap = dataclasses.replace(snap, deployments=self._replace(snap.deployments, name, merge))
                case Submit(config_hash=config_hash, head_uid=head_uid):

                    def applied(obj: dict[str, Any]) -> None:
                        obj.setdefault("status", {}).update(appliedConfigHash=config_hash, appliedHeadUid=head_uid)

                    assert snap.cluster is not None
                    names = {app["name"]: "RUNNING" for app in a.config["applications"]}
                    snap = dataclasses.replace(
                        snap,
                        cluster=self._replace((snap.cluster,), snap.name, applied)[0],
                        serve=serve_report(list(snap.pods), names),
                    )
        self.snap = snap

    def converge(self, rounds: int = 10) -> list[list[tuple[str, str]]]:
        """Plan and apply until a round plans nothing; the summaries of every round that did something."""
        history = []
        for _ in range(rounds):
            plan = self.plan()
            if not plan.actions:
                return history
            history.append(summary(plan.actions))
            self.apply(plan.actions)
            if self.snap.serve is None and any(p["metadata"]["name"] == "demo-head" for p in self.snap.pods):
                self.snap = dataclasses.replace(self.snap, serve=serve_report(list(self.snap.pods), {}))
        raise AssertionError(f"no steady state after {rounds} rounds: {history}")


@pytest.fixture
def world(k8s: Any) -> World:
    snap = Snapshot(
        namespace=k8s.namespace,
        name="demo",
        cluster=k8s.cluster("demo", CLUSTER_SPEC),
        apps=(k8s.app("hello"),),
        token_secret=TokenSecret("demo-ray-token", digest="digest-0"),
        now=NOW,
    )
    return World(k8s, snap)


def test_a_new_cluster_gets_services_and_pods_first(world: World) -> None:
    plan = world.plan()
    assert summary(plan.actions)[:5] == [
        ("Apply", "services/demo-head"),
        ("Apply", "services/demo-serve"),
        ("Apply", "networkpolicies/demo-ray"),
        ("CreatePod", "demo-head"),
        ("CreatePod", "demo-worker-cpu-0"),
    ]
    assert plan.busy and not plan.done


def test_a_steady_cluster_plans_nothing(world: World) -> None:
    history = world.converge()
    assert ("Submit", "ConfigChanged") in [step for round_ in history for step in round_]
    plan = world.plan()
    assert plan.actions == ()
    assert not plan.busy, "a steady cluster polls slowly"


def test_the_submit_ends_the_round_and_statuses_follow(world: World) -> None:
    world.apply(world.plan().actions)
    world.snap = dataclasses.replace(world.snap, serve=serve_report(list(world.snap.pods), {}))
    plan = world.plan()
    assert summary(plan.actions)[-1] == ("Submit", "ConfigChanged")
    assert not any(isinstance(a, WriteStatus) for a in plan.actions)
    world.apply(plan.actions)
    after = summary(world.plan().actions)
    assert ("WriteStatus", "serveclusters/demo") in after and ("WriteStatus", "serveapplications/hello") in after


def test_a_service_changed_by_someone_else_is_applied_again(world: World) -> None:
    world.converge()
    svc = copy.deepcopy(world.snap.services["demo-serve"])
    svc["spec"]["selector"] = {"app": "something-else"}
    world.snap = dataclasses.replace(world.snap, services={**world.snap.services, "demo-serve": svc})
    assert summary(world.plan().actions) == [("Apply", "services/demo-serve")]


def test_a_foreign_label_on_a_service_is_left_alone(world: World) -> None:
    world.converge()
    svc = copy.deepcopy(world.snap.services["demo-head"])
    svc["metadata"]["labels"]["team"] = "a"
    world.snap = dataclasses.replace(world.snap, services={**world.snap.services, "demo-head": svc})
    assert world.plan().actions == ()


def test_a_deleted_pod_is_recreated_and_nothing_else_moves(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(
        world.snap, pods=tuple(p for p in world.snap.pods if "worker" not in p["metadata"]["name"])
    )
    assert summary(world.plan().actions) == [("CreatePod", "demo-worker-cpu-0"), ("WriteStatus", "serveclusters/demo")]


def test_a_new_head_gets_the_config_again(world: World, k8s: Any) -> None:
    world.converge()
    head = next(p for p in world.snap.pods if p["metadata"]["name"] == "demo-head")
    new_head = copy.deepcopy(head)
    new_head["metadata"]["uid"] = "a-new-head"
    others = tuple(p for p in world.snap.pods if p is not head)
    world.snap = dataclasses.replace(
        world.snap, pods=others + (new_head,), serve=serve_report(list(others) + [new_head], {})
    )
    assert summary(world.plan().actions)[-1] == ("Submit", "HeadReplaced")


def test_no_submit_while_serve_cannot_be_asked(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(
        world.snap, serve=None, serve_error="connection refused", apps=world.snap.apps + (world.k8s.app("other"),)
    )
    plan = world.plan()
    assert not any(isinstance(a, Submit) for a in plan.actions)
    assert plan.busy


def test_a_rejected_config_is_not_submitted_again_and_the_cluster_says_why(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(world.snap, apps=world.snap.apps + (world.k8s.app("other"),))
    submit = next(a for a in world.plan().actions if isinstance(a, Submit))
    world.snap = dataclasses.replace(world.snap, rejection=Rejection(submit.config_hash, "bad import"))
    plan = world.plan()
    assert not any(isinstance(a, Submit) for a in plan.actions)
    status = next(a for a in plan.actions if isinstance(a, WriteStatus) and a.kind == "serveclusters")
    degraded = next(c for c in status.patch["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "bad import" in degraded["message"]


def test_an_application_deleted_while_serve_runs_it_keeps_its_finalizer_until_serve_drops_it(world: World) -> None:
    world.converge()
    app = copy.deepcopy(world.snap.apps[0])
    app["metadata"]["deletionTimestamp"] = "2024-05-03T12:00:00Z"
    world.snap = dataclasses.replace(world.snap, apps=(app,))
    plan = world.plan()
    assert summary(plan.actions)[-1] == ("Submit", "ConfigChanged"), "Serve is told to drop it first"
    assert not any(isinstance(a, SetFinalizers) for a in plan.actions)
    world.apply(plan.actions)  # Serve now runs no application
    release = [a for a in world.plan().actions if isinstance(a, SetFinalizers)]
    assert [(a.name, a.finalizers) for a in release] == [("hello", ())]


def test_the_ingress_follows_the_spec(world: World) -> None:
    world.converge()
    assert world.snap.ingresses == {}, "disabled by default"
    cluster = copy.deepcopy(world.snap.cluster)
    assert cluster is not None
    cluster["spec"]["ingress"] = {"enabled": True}
    world.snap = dataclasses.replace(world.snap, cluster=cluster)
    assert summary(world.plan().actions)[0] == ("Apply", "ingresses/demo-serve")
    world.converge()
    paths = world.snap.ingresses["demo-serve"]["spec"]["rules"][0]["http"]["paths"]
    assert [p["path"] for p in paths] == ["/hello"]
    cluster = copy.deepcopy(world.snap.cluster)
    assert cluster is not None
    cluster["spec"]["ingress"] = {"enabled": False}
    cluster["metadata"]["generation"] = 2
    world.snap = dataclasses.replace(world.snap, cluster=cluster)
    assert ("DeleteOwned", "ingresses/demo-serve") in summary(world.plan().actions)


def test_an_invalid_cluster_gets_only_a_status(world: World) -> None:
    cluster = copy.deepcopy(world.snap.cluster)
    assert cluster is not None
    cluster["spec"] = {"workerGroups": "not a list"}
    world.snap = dataclasses.replace(world.snap, cluster=cluster)
    plan = world.plan()
    assert summary(plan.actions) == [("WriteStatus", "serveclusters/demo")]
    ready = next(c for c in plan.actions[0].patch["conditions"] if c["type"] == "Ready")  # type: ignore[union-attr]
    assert ready["reason"] == "InvalidSpec"


# --- without a cluster: whatever order the events came in ---------------------------------------------------


@pytest.mark.parametrize("cluster_state", ["missing", "deleting"])
def test_applications_without_their_cluster_say_so_and_deleted_ones_are_released(k8s: Any, cluster_state: str) -> None:
    live = k8s.app("hello", finalizers=[FINALIZER])
    deleted = k8s.app("gone", finalizers=[FINALIZER, "someone.else/keep"], deleting=True)
    sdep = k8s.sdep("hello-model", "hello")
    cluster = k8s.cluster("demo", CLUSTER_SPEC, deleting=True) if cluster_state == "deleting" else None
    snap = Snapshot(
        namespace=k8s.namespace, name="demo", cluster=cluster, apps=(deleted, live), deployments=(sdep,), now=NOW
    )
    plan = planner.plan_round(snap, image=IMAGE)
    assert summary(plan.actions) == [
        ("SetFinalizers", "serveapplications/gone"),
        ("WriteStatus", "serveapplications/hello"),
        ("WriteStatus", "servedeployments/hello-model"),
    ]
    release = plan.actions[0]
    assert isinstance(release, SetFinalizers) and release.finalizers == ("someone.else/keep",)
    assert release.resource_version == deleted["metadata"]["resourceVersion"]
    ready = next(c for c in plan.actions[1].patch["conditions"] if c["type"] == "Ready")  # type: ignore[union-attr]
    assert ready["reason"] == "ClusterNotFound"
    assert plan.done, "the loop of a missing cluster ends once its work is done"


def test_without_a_cluster_a_second_round_plans_nothing(k8s: Any) -> None:
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=None, apps=(k8s.app("hello"),), now=NOW)
    world = World(k8s, snap)
    assert world.converge() == [[("WriteStatus", "serveapplications/hello")]]


def test_a_deleted_application_without_our_finalizer_is_left_alone(k8s: Any) -> None:
    gone = k8s.app("gone", finalizers=["someone.else/keep"], deleting=True)
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=None, apps=(gone,), now=NOW)
    assert planner.plan_round(snap, image=IMAGE).actions == ()


def test_orphan_deployments_wait_for_their_application(k8s: Any) -> None:
    snap = Snapshot(
        namespace=k8s.namespace, name=ORPHANS, cluster=None, deployments=(k8s.sdep("m", "nowhere"),), now=NOW
    )
    plan = planner.plan_round(snap, image=IMAGE)
    assert summary(plan.actions) == [("WriteStatus", "servedeployments/m")]
    progressing = next(c for c in plan.actions[0].patch["conditions"] if c["type"] == "Progressing")  # type: ignore[union-attr]
    assert progressing["reason"] == "WaitingForApplication"


def test_the_proxy_label_follows_serves_report(world: World) -> None:
    world.converge()
    worker = next(p for p in world.snap.pods if "worker" in p["metadata"]["name"])
    serve = copy.deepcopy(world.snap.serve)
    assert serve is not None
    for proxy in serve["proxies"].values():
        if proxy["node_ip"] == worker["status"]["podIP"]:
            proxy["status"] = "DRAINED"
    world.snap = dataclasses.replace(world.snap, serve=serve)
    plan = world.plan()
    labels = [a for a in plan.actions if isinstance(a, LabelPod)]
    unlabelled = {common.PROXY_LABEL: None, common.PROXY_ACTOR_LABEL: None}
    assert [(a.name, a.labels) for a in labels] == [(worker["metadata"]["name"], unlabelled)]


# --- the token Secret and the NetworkPolicy ---------------------------------------------------------------------


def with_spec(world: World, **fields: Any) -> None:
    cluster = copy.deepcopy(world.snap.cluster)
    assert cluster is not None
    cluster["spec"].update(fields)
    cluster["metadata"]["generation"] += 1
    world.snap = dataclasses.replace(world.snap, cluster=cluster)


def test_a_new_cluster_gets_its_token_secret_before_any_ray_pod(world: World) -> None:
    world.snap = dataclasses.replace(world.snap, token_secret=None)
    first = world.plan()
    assert ("CreateSecret", "demo-ray-token") in summary(first.actions)
    assert not [a for a in first.actions if isinstance(a, CreatePod)], "no Ray pod starts without its token"
    secret = next(a for a in first.actions if isinstance(a, CreateSecret)).secret
    assert "data" not in secret and "stringData" not in secret, "the executor makes the token"
    world.apply(first.actions)
    created = [a.pod for a in world.plan().actions if isinstance(a, CreatePod)]
    assert [p["metadata"]["name"] for p in created] == ["demo-head", "demo-worker-cpu-0"]
    assert {p["metadata"]["annotations"][auth.DIGEST_ANNOTATION] for p in created} == {"digest-1"}


def test_a_deleted_secret_is_made_anew_and_every_ray_pod_replaced_at_once(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(world.snap, token_secret=None)  # someone deleted it: a rotation
    plan = world.plan()
    assert ("CreateSecret", "demo-ray-token") in summary(plan.actions)
    assert not [a for a in plan.actions if isinstance(a, (CreatePod, DeletePod))], "pods wait for the new token"
    world.apply(plan.actions)
    deleted = [a for a in world.plan().actions if isinstance(a, DeletePod)]
    assert sorted(a.name for a in deleted) == ["demo-head", "demo-worker-cpu-0"]
    assert all("auth token changed" in a.why for a in deleted)
    world.converge()
    assert {p["metadata"]["annotations"][auth.DIGEST_ANNOTATION] for p in world.snap.pods} == {"digest-1"}


def test_a_secret_without_a_usable_token_is_replaced(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(world.snap, token_secret=TokenSecret("demo-ray-token", digest=None))
    plan = world.plan()
    assert ("DeleteOwned", "secrets/demo-ray-token") in summary(plan.actions)
    assert not [a for a in plan.actions if isinstance(a, (CreatePod, DeletePod))]


def test_disabled_auth_makes_no_secret_and_drops_an_old_one(world: World) -> None:
    with_spec(world, auth={"mode": "Disabled"})
    world.snap = dataclasses.replace(world.snap, token_secret=None)
    history = world.converge()
    assert not [step for round_ in history for step in round_ if step[0] == "CreateSecret"]
    assert all(auth.DIGEST_ANNOTATION not in p["metadata"]["annotations"] for p in world.snap.pods)
    world.snap = dataclasses.replace(world.snap, token_secret=TokenSecret("demo-ray-token", digest="old"))
    assert ("DeleteOwned", "secrets/demo-ray-token") in summary(world.plan().actions)


def test_the_network_policy_follows_the_spec(world: World) -> None:
    world.converge()
    assert list(world.snap.network_policies) == ["demo-ray"], "enabled by default"
    policy = copy.deepcopy(world.snap.network_policies["demo-ray"])
    policy["spec"]["ingress"] = [{}]  # someone opened everything: applied again
    world.snap = dataclasses.replace(world.snap, network_policies={"demo-ray": policy})
    assert summary(world.plan().actions) == [("Apply", "networkpolicies/demo-ray")]
    world.converge()
    with_spec(world, networkPolicy={"enabled": False})
    assert ("DeleteOwned", "networkpolicies/demo-ray") in summary(world.plan().actions)
    world.converge()
    assert world.snap.network_policies == {}


def test_the_operators_access_reaches_the_network_policy(world: World) -> None:
    access = netpol.Access(operator_namespace="ops", operator_pod_labels={"app": "op"})
    apply = next(a for a in planner.plan_round(world.snap, image=IMAGE, access=access).actions
                 if isinstance(a, Apply) and a.kind == "networkpolicies")
    peer = apply.obj["spec"]["ingress"][2]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ops"}
    assert peer["podSelector"]["matchLabels"] == {"app": "op"}


def test_a_starting_proxy_keeps_the_polls_fast_until_it_joins_the_serve_service(world: World) -> None:
    world.converge()
    starting = copy.deepcopy(world.snap.serve)
    assert starting is not None
    next(iter(starting["proxies"].values()))["status"] = "STARTING"
    world.snap = dataclasses.replace(world.snap, serve=starting)
    assert world.plan().busy, "a proxy about to serve is labelled within a fast poll, not a slow one"
