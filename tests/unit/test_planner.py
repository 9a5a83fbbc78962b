"""Table tests of a round's plan: for a given snapshot, exactly these actions; for a steady cluster, none."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from serveplane.operator import planner
from serveplane.operator.actions import (
    Action,
    AdoptHead,
    Apply,
    Create,
    CreatePod,
    CreateSecret,
    DeleteOwned,
    DeletePod,
    LabelPod,
    PostEvent,
    SetFinalizers,
    Submit,
    WriteStatus,
)
from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.cache import ORPHANS
from serveplane.operator.compose import start_key
from serveplane.operator.finalizers import FINALIZER
from serveplane.operator.manifests import auth, common, netpol, pods
from serveplane.operator.servereport import parse
from serveplane.operator.snapshot import Rejection, Snapshot, TokenSecret
from serveplane.operator.stages.context import Settings

IMAGE = "ray:1"
NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)
CLUSTER_SPEC = {"workerGroups": [{"name": "cpu", "replicas": 1}]}


def plan_round(snap: Snapshot, settings: Settings | None = None) -> Any:
    """A round on a snapshot whose Serve reports are Serve's JSON, parsed as the observe step parses them."""
    reports = {g: None if r is None else parse(r) for g, r in snap.reports.items()}
    return planner.plan_round(dataclasses.replace(snap, reports=reports), settings or Settings(image=IMAGE))


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
            case Apply(kind=kind, obj=obj) | Create(kind=kind, obj=obj):
                out.append((type(a).__name__, f"{kind}/{obj['metadata']['name']}"))
            case SetFinalizers(kind=kind, name=name) | WriteStatus(kind=kind, name=name):
                out.append((type(a).__name__, f"{kind}/{name}"))
            case Submit(reason=reason):
                out.append(("Submit", reason))
    return out


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386, as the API server applies a merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def generation_of(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"].get(common.GENERATION_LABEL, ""))


def serve_report(pods: list[dict[str, Any]], apps: dict[str, str]) -> dict[str, Any]:
    """Serve's GET answer: every pod's proxy HEALTHY, each application in the given state."""
    return {
        "proxies": {f"node-{i}": {"node_ip": p["status"]["podIP"], "status": "HEALTHY", "actor_id": f"a-{i}"}
                    for i, p in enumerate(pods)},
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
        self.app_state = "RUNNING"
        """What a submitted application becomes on Serve."""
        self.drain = False
        """Deleted pods stay, terminating (a drain), until the test removes them."""

    def plan(self) -> Any:
        return plan_round(self.snap)

    def _replace(self, objs: tuple[dict[str, Any], ...], name: str, change: Any) -> tuple[dict[str, Any], ...]:
        out = []
        for obj in objs:
            if obj["metadata"]["name"] == name:
                obj = copy.deepcopy(obj)
                change(obj)
                obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
            out.append(obj)
        return tuple(out)

    def _write(self, snap: Snapshot, write: WriteStatus) -> Snapshot:
        """A status merge patch, as the API server applies it."""

        def merge(obj: dict[str, Any]) -> None:
            merge_patch(obj.setdefault("status", {}), write.patch)

        if write.kind == "serveclusters":
            cluster = self._replace((snap.cluster,), write.name, merge)[0] if snap.cluster else None
            return dataclasses.replace(snap, cluster=cluster)
        if write.kind == "serveapplications":
            return dataclasses.replace(snap, apps=self._replace(snap.apps, write.name, merge))
        return dataclasses.replace(snap, deployments=self._replace(snap.deployments, write.name, merge))

    def apply(self, actions: tuple[Action, ...]) -> None:
        snap = self.snap
        for a in actions:
            match a:
                case CreatePod(pod=pod):
                    self._ip += 1
                    snap = dataclasses.replace(
                        snap, pods=snap.pods + (self.k8s.observed(pod, ip=f"10.0.0.{self._ip}"),)
                    )
                case DeletePod(name=name) if self.drain:

                    def going(pod: dict[str, Any]) -> None:
                        pod["metadata"]["deletionTimestamp"] = "2024-05-03T12:00:00Z"

                    snap = dataclasses.replace(snap, pods=self._replace(snap.pods, name, going))
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
                case Apply(kind="services", obj=obj) | Create(kind="services", obj=obj):
                    live = copy.deepcopy(obj)
                    # What the API server adds: a cluster IP and defaulted port fields the operator never sets.
                    live["spec"].setdefault("clusterIP", "10.96.0.10")
                    for port in live["spec"]["ports"]:
                        port.setdefault("protocol", "TCP")
                    live["metadata"]["resourceVersion"] = "1"
                    snap = dataclasses.replace(snap, services={**snap.services, obj["metadata"]["name"]: live})
                case Apply(kind="ingresses", obj=obj) | Create(kind="ingresses", obj=obj):
                    snap = dataclasses.replace(snap, ingresses={**snap.ingresses, obj["metadata"]["name"]: obj})
                case Apply(kind="networkpolicies", obj=obj) | Create(kind="networkpolicies", obj=obj):
                    policies = {**snap.network_policies, obj["metadata"]["name"]: obj}
                    snap = dataclasses.replace(snap, network_policies=policies)
                case DeleteOwned(kind="ingresses", name=name):
                    snap = dataclasses.replace(snap, ingresses={k: v for k, v in snap.ingresses.items() if k != name})
                case DeleteOwned(kind="networkpolicies", name=name):
                    policies = {k: v for k, v in snap.network_policies.items() if k != name}
                    snap = dataclasses.replace(snap, network_policies=policies)
                case Apply(kind=("serviceaccounts" | "rolebindings") as kind, obj=obj) | Create(
                    kind=("serviceaccounts" | "rolebindings") as kind, obj=obj
                ):
                    access = {**snap.autoscaler_access, (kind, obj["metadata"]["name"]): obj}
                    snap = dataclasses.replace(snap, autoscaler_access=access)
                case DeleteOwned(kind=("serviceaccounts" | "rolebindings") as kind, name=name):
                    access = {k: v for k, v in snap.autoscaler_access.items() if k != (kind, name)}
                    snap = dataclasses.replace(snap, autoscaler_access=access)
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
                case WriteStatus():
                    snap = self._write(snap, a)
                case Submit(generation=generation, record=record):
                    # What the executor writes once Serve accepts: the plan's own record, nothing computed here.
                    snap = self._write(snap, record)
                    assert snap.cluster is not None
                    names = {app["name"]: self.app_state for app in a.config["applications"]}
                    pods_of = [p for p in snap.pods if generation_of(p) == generation]
                    report = {**serve_report(pods_of, names), "target_capacity": a.config.get("target_capacity")}
                    # As Serve: the gRPC options of the first config a head gets stay until it goes.
                    report["grpc_options"] = (snap.reports.get(generation) or {}).get("grpc_options") or a.config[
                        "grpc_options"]
                    snap = dataclasses.replace(snap, reports={**snap.reports, generation: report})
                case AdoptHead(record=record):
                    snap = self._write(snap, record)
        self.snap = self._refresh(snap)

    def _refresh(self, snap: Snapshot) -> Snapshot:
        """Serve's reports follow the pods: a live head answers (empty at first), with a proxy on every pod of its
        generation; a generation without a head has no report."""
        reports = {}
        for pod in snap.pods:
            if pod["metadata"]["labels"].get(common.NODE_TYPE_LABEL) != "head":
                continue
            generation = generation_of(pod)
            apps = (snap.reports.get(generation) or {}).get("applications") or {}
            names = {name: app["status"] for name, app in apps.items()}
            old = snap.reports.get(generation) or {}
            pods_of = [p for p in snap.pods if generation_of(p) == generation]
            reports[generation] = {**serve_report(pods_of, names), "target_capacity": old.get("target_capacity")}
            if "grpc_options" in old:
                reports[generation]["grpc_options"] = old["grpc_options"]
        return dataclasses.replace(snap, reports=reports)

    def target(self) -> str:
        """The generation the cluster's spec asks for."""
        assert self.snap.cluster is not None
        spec = ServeClusterSpec.model_validate(self.snap.cluster["spec"])
        uid = self.snap.cluster["metadata"]["uid"]
        return pods.generation_name(
            cluster="demo", namespace=self.snap.namespace, uid=uid, spec=spec, image=IMAGE,
            serve_start=start_key(spec, list(self.snap.apps)),
        )

    @property
    def serve(self) -> dict[str, Any] | None:
        """The active generation's report."""
        return self.snap.reports.get(self.active())

    def active(self) -> str:
        assert self.snap.cluster is not None
        return str((self.snap.cluster.get("status") or {}).get("activeGeneration", ""))

    def set_serve(self, report: dict[str, Any] | None, error: str | None = None) -> None:
        """Replace the active generation's report (None: its dashboard does not answer)."""
        generation = self.active() or next((generation_of(p) for p in self.snap.pods), "")
        errors = {generation: error} if error else {}
        self.snap = dataclasses.replace(
            self.snap, reports={**self.snap.reports, generation: report}, report_errors=errors
        )

    def converge(self, rounds: int = 10) -> list[list[tuple[str, str]]]:
        """Plan and apply until a round plans nothing; the summaries of every round that did something."""
        history = []
        for _ in range(rounds):
            plan = self.plan()
            if not plan.actions:
                return history
            history.append(summary(plan.actions))
            self.apply(plan.actions)
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
    g = world.target()
    assert summary(plan.actions)[:6] == [
        ("Create", "services/demo-head"),
        ("Create", f"services/demo-{g}-head"),
        ("Create", "services/demo-serve"),
        ("Create", "networkpolicies/demo-ray"),
        ("CreatePod", f"demo-{g}-head"),
        ("CreatePod", f"demo-{g}-worker-cpu-0"),
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
    worker = f"demo-{world.target()}-worker-cpu-0"
    assert summary(world.plan().actions) == [("CreatePod", worker), ("WriteStatus", "serveclusters/demo")]


def test_a_new_head_gets_the_config_again(world: World, k8s: Any) -> None:
    world.converge()
    head = next(p for p in world.snap.pods if p["metadata"]["name"].endswith("-head"))
    new_head = copy.deepcopy(head)
    new_head["metadata"]["uid"] = "a-new-head"
    others = tuple(p for p in world.snap.pods if p is not head)
    world.snap = dataclasses.replace(world.snap, pods=others + (new_head,))
    world.set_serve(serve_report(list(others) + [new_head], {}))
    assert summary(world.plan().actions)[-1] == ("Submit", "HeadReplaced")


def test_no_submit_while_serve_cannot_be_asked(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(world.snap, apps=world.snap.apps + (world.k8s.app("other"),))
    world.set_serve(None, "connection refused")
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
    assert summary(world.plan().actions)[0] == ("Create", "ingresses/demo-serve")
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
    plan = plan_round(snap)
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
    assert plan_round(snap).actions == ()


def test_orphan_deployments_wait_for_their_application(k8s: Any) -> None:
    snap = Snapshot(
        namespace=k8s.namespace, name=ORPHANS, cluster=None, deployments=(k8s.sdep("m", "nowhere"),), now=NOW
    )
    plan = plan_round(snap)
    assert summary(plan.actions) == [("WriteStatus", "servedeployments/m")]
    progressing = next(c for c in plan.actions[0].patch["conditions"] if c["type"] == "Progressing")  # type: ignore[union-attr]
    assert progressing["reason"] == "WaitingForApplication"


def test_the_proxy_label_follows_serves_report(world: World) -> None:
    world.converge()
    worker = next(p for p in world.snap.pods if "worker" in p["metadata"]["name"])
    serve = copy.deepcopy(world.serve)
    assert serve is not None
    for proxy in serve["proxies"].values():
        if proxy["node_ip"] == worker["status"]["podIP"]:
            proxy["status"] = "DRAINED"
    world.set_serve(serve)
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
    g = world.target()
    assert [p["metadata"]["name"] for p in created] == [f"demo-{g}-head", f"demo-{g}-worker-cpu-0"]
    assert {p["metadata"]["annotations"][auth.DIGEST_ANNOTATION] for p in created} == {"digest-1"}


def test_a_deleted_secret_is_made_anew_and_every_ray_pod_replaced_at_once(world: World) -> None:
    world.converge()
    world.snap = dataclasses.replace(world.snap, token_secret=None)  # someone deleted it: a rotation
    plan = world.plan()
    assert ("CreateSecret", "demo-ray-token") in summary(plan.actions)
    assert not [a for a in plan.actions if isinstance(a, (CreatePod, DeletePod))], "pods wait for the new token"
    world.apply(plan.actions)
    deleted = [a for a in world.plan().actions if isinstance(a, DeletePod)]
    g = world.target()
    assert sorted(a.name for a in deleted) == [f"demo-{g}-head", f"demo-{g}-worker-cpu-0"]
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
    apply = next(a for a in plan_round(world.snap, Settings(image=IMAGE, access=access)).actions
                 if isinstance(a, Apply | Create) and a.kind == "networkpolicies")
    peer = apply.obj["spec"]["ingress"][2]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ops"}
    assert peer["podSelector"]["matchLabels"] == {"app": "op"}


def test_a_starting_proxy_keeps_the_polls_fast_until_it_joins_the_serve_service(world: World) -> None:
    world.converge()
    starting = copy.deepcopy(world.serve)
    assert starting is not None
    next(iter(starting["proxies"].values()))["status"] = "STARTING"
    world.set_serve(starting)
    assert world.plan().busy, "a proxy about to serve is labelled within a fast poll, not a slow one"


# --- upgrades: a new generation of the Ray cluster --------------------------------------------------------------


def serving_pods(world: World) -> list[str]:
    """The pods the serve Service selects: Ready and labelled by a healthy proxy."""
    return [
        p["metadata"]["name"] for p in world.snap.pods
        if p["metadata"]["labels"].get(common.PROXY_LABEL) == common.PROXY_HEALTHY
        and "deletionTimestamp" not in p["metadata"]
    ]


def upgrade(world: World, rounds: int = 60, **spec: Any) -> dict[str, Any]:
    """Change the spec and run rounds until the plan is empty, recording what a user would watch."""
    with_spec(world, **spec)
    seen: dict[str, Any] = {"peak_pods": 0, "rounds": 0, "no_endpoint_rounds": 0, "events": []}
    for _ in range(rounds):
        plan = world.plan()
        if not plan.actions:
            return seen
        seen["events"] += [a.message for a in plan.actions if isinstance(a, PostEvent)]
        world.apply(plan.actions)
        seen["rounds"] += 1
        seen["peak_pods"] = max(seen["peak_pods"], len(world.snap.pods))
        seen["no_endpoint_rounds"] += not serving_pods(world)
    raise AssertionError(f"the upgrade did not settle in {rounds} rounds: {summary(world.plan().actions)}")


@pytest.fixture
def steady(k8s: Any) -> World:
    """A steady cluster of a head and two workers, the application running and served from every pod."""
    snap = Snapshot(
        namespace=k8s.namespace, name="demo",
        cluster=k8s.cluster("demo", {"workerGroups": [{"name": "cpu", "replicas": 2}]}),
        apps=(k8s.app("hello"),), token_secret=TokenSecret("demo-ray-token", digest="digest-0"), now=NOW,
    )
    w = World(k8s, snap)
    w.converge()
    assert len(serving_pods(w)) == 3
    return w


def generations_of(world: World) -> set[str]:
    return {generation_of(p) for p in world.snap.pods}


def test_an_incremental_upgrade_never_runs_more_than_one_extra_pod_and_always_serves(steady: World) -> None:
    old = steady.target()
    seen = upgrade(steady, image="ray:2")
    new = steady.target()
    assert new != old
    assert seen["peak_pods"] <= 4, "N + maxSurgePods"
    assert seen["no_endpoint_rounds"] == 0, "the serve Service always has an endpoint"
    assert generations_of(steady) == {new}
    assert steady.snap.cluster is not None
    status = steady.snap.cluster["status"]
    assert status["activeGeneration"] == new and "upgrade" not in status
    assert len(serving_pods(steady)) == 3
    assert steady.serve is not None and steady.serve.get("target_capacity") is None, "full capacity at the end"
    assert any("Moving pod" in e for e in seen["events"]) and any("runs the cluster" in e for e in seen["events"])


def test_a_new_grpc_servicer_rolls_a_new_generation_whose_serve_starts_with_it(steady: World, k8s: Any) -> None:
    old = steady.target()
    servicer = "serveplane.examples.greeter_pb2_grpc.add_GreeterServicer_to_server"
    steady.snap = dataclasses.replace(
        steady.snap, apps=(*steady.snap.apps, k8s.app("greeter", {"grpcServicerFunctions": [servicer]}))
    )
    seen = upgrade(steady)
    new = steady.target()
    assert new != old, "Serve reads grpc_options only when it starts: the servicer needs a new head"
    assert seen["peak_pods"] <= 4 and seen["no_endpoint_rounds"] == 0
    assert generations_of(steady) == {new}
    assert steady.serve is not None
    assert steady.serve["grpc_options"]["grpc_servicer_functions"] == [servicer]
    assert set(steady.serve["applications"]) == {"hello", "greeter"}


def test_capacities_follow_each_generations_share_of_the_endpoints(steady: World) -> None:
    with_spec(steady, image="ray:2")
    shares = []
    for _ in range(60):
        plan = steady.plan()
        if not plan.actions:
            break
        for a in plan.actions:
            if isinstance(a, Submit) and "target_capacity" in a.config:
                shares.append((a.upgrade, a.config["target_capacity"]))
        steady.apply(plan.actions)
    assert (True, 25.0) in shares, "the new head is given the share it will have: 1 of 4 endpoints"
    assert (False, 75.0) in shares and (True, 50.0) in shares


def test_a_blue_green_upgrade_switches_once_the_whole_new_generation_runs(steady: World) -> None:
    old = steady.target()
    with_spec(steady, upgradeStrategy={"type": "BlueGreen", "oldGenerationDelaySeconds": 30})
    steady.converge()  # the strategy itself is no new generation
    assert generations_of(steady) == {old}
    seen = upgrade(steady, image="ray:2")
    new = steady.target()
    assert seen["peak_pods"] == 6 and seen["no_endpoint_rounds"] == 0
    assert generations_of(steady) == {old, new}, "the old generation waits out its delay, out of the Service"
    assert all(generation_of(p) == new for p in steady.snap.pods if p["metadata"]["name"] in serving_pods(steady))
    steady.snap = dataclasses.replace(steady.snap, now=NOW + timedelta(seconds=31))
    steady.converge()
    assert generations_of(steady) == {new}


def test_recreate_removes_the_old_generation_before_starting_the_new(steady: World) -> None:
    seen = upgrade(steady, image="ray:2", upgradeStrategy={"type": "Recreate"})
    assert seen["peak_pods"] == 3 and seen["no_endpoint_rounds"] > 0, "an outage, as chosen"
    assert generations_of(steady) == {steady.target()}


def test_worker_changes_stay_in_the_running_generation(steady: World) -> None:
    old = steady.target()
    upgrade(steady, workerGroups=[{"name": "cpu", "replicas": 3, "env": [{"name": "A", "value": "1"}]}])
    assert steady.target() == old and generations_of(steady) == {old}
    assert len(steady.snap.pods) == 4


def test_a_failing_new_generation_keeps_the_traffic_and_reverting_removes_it(steady: World) -> None:
    old = steady.target()
    steady.app_state = "DEPLOY_FAILED"
    seen = upgrade(steady, image="ray:broken")
    new = steady.target()
    assert seen["no_endpoint_rounds"] == 0
    assert all(generation_of(p) == old for p in steady.snap.pods if p["metadata"]["name"] in serving_pods(steady))
    assert len([p for p in steady.snap.pods if generation_of(p) == old]) == 3, "the old generation is whole"
    assert steady.snap.cluster is not None
    status = steady.snap.cluster["status"]
    assert status["activeGeneration"] == old and status["upgrade"]["failure"].startswith("application hello failed")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "UpgradeFailed")
    steady.app_state = "RUNNING"
    upgrade(steady, image=None)
    assert steady.target() == old and generations_of(steady) == {old}, f"{new} went with the revert"
    assert "upgrade" not in steady.snap.cluster["status"]


def test_a_new_generation_that_never_gets_ready_times_out(steady: World) -> None:
    with_spec(steady, image="ray:2", upgradeStrategy={"timeoutSeconds": 60})
    plan = steady.plan()
    steady.apply(plan.actions)
    new_head = next(p for p in steady.snap.pods if generation_of(p) == steady.target())
    not_ready = steady.k8s.observed(new_head, ready=False)
    steady.snap = dataclasses.replace(
        steady.snap, pods=tuple(not_ready if p is new_head else p for p in steady.snap.pods)
    )
    steady.apply(steady.plan().actions)
    steady.snap = dataclasses.replace(steady.snap, now=NOW + timedelta(seconds=61))
    steady.apply(steady.plan().actions)
    assert steady.snap.cluster is not None
    assert "not Ready" in steady.snap.cluster["status"]["upgrade"]["failure"]


def test_a_spec_change_during_an_upgrade_replaces_the_pending_generation(steady: World) -> None:
    old = steady.target()
    with_spec(steady, image="ray:2")
    for _ in range(3):
        steady.apply(steady.plan().actions)
    first = steady.target()
    assert first in generations_of(steady)
    upgrade(steady, image="ray:3")
    assert generations_of(steady) == {steady.target()} and steady.target() not in (old, first)


def test_the_upgrade_is_resumed_from_the_status_alone(steady: World, k8s: Any) -> None:
    """A restarted operator (or a new leader) plans from the same store and status: the same next step."""
    with_spec(steady, image="ray:2")
    for _ in range(4):
        steady.apply(steady.plan().actions)
    fresh = World(k8s, steady.snap)
    assert summary(fresh.plan().actions) == summary(steady.plan().actions)
    assert len({generation_of(p) for p in steady.snap.pods}) == 2, "no second new generation"


def test_an_old_pod_draining_longer_than_the_timeout_fails_nothing(steady: World) -> None:
    """timeoutSeconds is about the new generation: an old pod's slow drain is waited for, then the upgrade goes on."""
    with_spec(steady, image="ray:2", upgradeStrategy={"timeoutSeconds": 60})
    steady.drain = True
    for _ in range(20):
        steady.apply(steady.plan().actions)
        if any("deletionTimestamp" in p["metadata"] for p in steady.snap.pods):
            break
    going = [p["metadata"]["name"] for p in steady.snap.pods if "deletionTimestamp" in p["metadata"]]
    assert len(going) == 1
    steady.snap = dataclasses.replace(steady.snap, now=NOW + timedelta(seconds=300))
    for _ in range(3):  # capacities follow the drained pod's leaving the Service first
        steady.apply(steady.plan().actions)
    assert steady.snap.cluster is not None
    assert "failure" not in steady.snap.cluster["status"]["upgrade"]
    assert steady.snap.cluster["status"]["upgrade"]["step"] == f"Waiting for pod {going[0]} to drain and go"
    steady.drain = False
    left = tuple(p for p in steady.snap.pods if p["metadata"]["name"] not in going)
    steady.snap = dataclasses.replace(steady.snap, pods=left, now=NOW + timedelta(seconds=400))
    created = [a for a in steady.plan().actions if isinstance(a, CreatePod)]
    assert len(created) == 1, "the next new pod starts: the step taken is progress, not a timeout"
    steady.converge(60)
    assert generations_of(steady) == {steady.target()}


def test_a_serve_deployment_applied_with_its_application_settles_after_one_rebuild(k8s: Any) -> None:
    """Serve empties an application's deployments while it builds a new config: the deployments it built before
    are remembered (knownDeployments), so the ServeDeployment stays in the config instead of leaving and coming
    back with every rebuild (a PUT every round, the application never RUNNING)."""
    sdep = k8s.sdep("hello-model", "hello", {"deploymentName": "Hello", "numReplicas": 2})
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=k8s.cluster("demo", CLUSTER_SPEC),
                    apps=(k8s.app("hello"),), deployments=(sdep,), token_secret=TokenSecret("demo-ray-token", "d"),
                    now=NOW)
    world = World(k8s, snap)
    world.converge()
    submits = []
    for _ in range(4):
        # Serve built the application: it runs, with its deployment; then (after a new config) it rebuilds.
        built = copy.deepcopy(world.serve)
        assert built is not None
        built["applications"]["hello"]["deployments"] = {"Hello": {"status": "HEALTHY", "replica_states": {}}}
        world.set_serve(built)
        plan = world.plan()
        submits += [a for a in plan.actions if isinstance(a, Submit)]
        world.apply(plan.actions)
        rebuilding = copy.deepcopy(world.serve)
        assert rebuilding is not None
        rebuilding["applications"]["hello"].update({"status": "DEPLOYING", "deployments": {}})
        world.set_serve(rebuilding)
        plan = world.plan()
        submits += [a for a in plan.actions if isinstance(a, Submit)]
        world.apply(plan.actions)
    assert len(submits) == 1, [s.reason for s in submits]
    (override,) = [d for d in submits[0].config["applications"][0]["deployments"] if d["name"] == "Hello"]
    assert override["num_replicas"] == 2
    hello = next(a for a in world.snap.apps if a["metadata"]["name"] == "hello")
    assert hello["status"]["knownDeployments"] == ["Hello"]
