"""A user's journey, end to end: the examples `serveplane dev up` made Ready, HTTP, changes, faults.

Real parts only: the API server, controller-manager and scheduler built from Go modules, a real node (kubelet,
containerd, kube-proxy, CoreDNS), real Ray in every pod from the image built from helm/Dockerfile.runtime, and the
operator installed by its chart (two replicas under leader election, from helm/Dockerfile.operator). The steps run
in order and build on each other, as a user's session would; traffic goes through the serve Service's ClusterIP,
as a client in a pod would send it.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from trialkit import EndpointTraffic, Trial

from serveplane.localcluster import audit, nodeclean
from serveplane.localcluster.incluster import USER, ChartOperator, utcnow
from serveplane.localcluster.testkit import generation_of, head_pod
from serveplane.localcluster.testkit import wait_for as _wait_for
from serveplane.localcluster.trial import serve_endpoints

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The examples `dev up` applied.
NS = "default"
pytestmark = pytest.mark.timeout(1500)
# Ray on a 2-core machine: the journey's waits are longer than the API-server tests'.
wait_for = functools.partial(_wait_for, timeout=240.0, interval=1.0)


class World:
    def __init__(self, trial: Trial) -> None:
        self.cp = trial.cp
        assert trial.stack.node is not None
        self.node = trial.stack.node
        self.operator = ChartOperator(self.cp, self.node)
        self.timings: dict[str, float] = {}

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cp.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def items(self, kind: str, *selector: str) -> list[dict[str, Any]]:
        return json.loads(self.cp.kubectl("get", kind, "-n", NS, *selector, "-o", "json").stdout)["items"]

    def ray_pods(self) -> list[dict[str, Any]]:
        return self.items("pods", "-l", "app.kubernetes.io/managed-by=serveplane")

    def head(self) -> dict[str, Any] | None:
        """The demo cluster's head pod, by its labels (its name carries the generation's hash)."""
        return head_pod(self.cp, "demo", NS)

    def apply(self, text: str) -> None:
        self.cp.kubectl("apply", "-n", NS, "-f", "-", input=text)

    def condition(self, kind: str, name: str, cond: str) -> dict[str, Any]:
        for item in ((self.get(kind, name) or {}).get("status") or {}).get("conditions") or []:
            if item["type"] == cond:
                return item
        return {}

    def kubectl_wait_ready(self, *targets: str, timeout: int = 400) -> None:
        self.cp.kubectl("wait", "-n", NS, "--for=condition=Ready", f"--timeout={timeout}s", *targets)

    def serve_endpoints(self) -> list[str]:
        """Ready pod IPs behind the serve Service: where kube-proxy routes its ClusterIP."""
        return serve_endpoints(self.cp, NS, "demo-serve")

    def serve_cluster_ip(self) -> str:
        return str(self.get("service", "demo-serve")["spec"]["clusterIP"])

    def head_ip(self) -> str:
        return self.head()["status"]["podIP"]

    def ray_token(self) -> str:
        """The cluster's Ray auth token, from the Secret the operator made (as an admin with access would read it)."""
        secret = self.get("secret", "demo-ray-token")
        assert secret is not None, "token authentication is on by default: the operator makes the Secret"
        return base64.b64decode(secret["data"]["token"]).decode()

    def dashboard(self, path: str, token: str | None) -> urllib.request.Request:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return urllib.request.Request(f"http://{self.head_ip()}:8265{path}", headers=headers)

    def serve_status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.dashboard("/api/serve/applications/", self.ray_token()), timeout=10) as answer:
            return json.loads(answer.read())

    def ray_node_hosts(self) -> set[str]:
        """The hosts (pod names) of the alive nodes of the Ray cluster the head runs."""
        request = self.dashboard("/nodes?view=hostNameList", self.ray_token())
        with urllib.request.urlopen(request, timeout=10) as answer:
            return set(json.loads(answer.read())["data"]["hostNameList"])  # the dashboard answers in camelCase

    def leader(self) -> str:
        return wait_for("an operator replica to lead", self.operator.leader_name, timeout=60, interval=0.5)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples (with these labels) as the leading replica exports them now."""
        return self.operator.metric(self.leader(), name, **labels)


def http_json(ip: str, path: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{ip}:8000{path}", timeout=timeout) as answer:
        return json.loads(answer.read())


class Traffic(EndpointTraffic):
    """Requests sent to an application throughout a change through the serve Service's ClusterIP (kube-proxy
    picks a ready endpoint for each new connection), about 20 a second, while the Service's ready endpoints are
    re-read every half second to count the time with none."""

    def __init__(self, world: World, path: str) -> None:
        super().__init__(world.cp, NS, "demo-serve", path, rate=20.0)
        self.cluster_ip = world.serve_cluster_ip()

    def target(self, turn: int) -> str:
        return self.cluster_ip

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        print("\n" + self.report(f"through {self.cluster_ip}"))


@pytest.fixture(scope="module")
def world(trial: Trial) -> Iterator[World]:
    w = World(trial)
    yield w
    print("\njourney timings:", json.dumps(w.timings, indent=1))
    problems = w.operator.problems()
    assert not problems, "the operator hit RBAC denials or failed a reconcile:\n" + "\n".join(problems[:20])


def test_the_examples_dev_up_applied_are_ready(world: World) -> None:
    world.kubectl_wait_ready("scl/demo", "sapp/hello", "sapp/composed", "sdep/composed-model", timeout=60)
    cluster = world.get("scl", "demo")
    assert cluster["status"]["readyNodes"] == cluster["status"]["desiredNodes"] == 3
    assert sorted(cluster["status"]["applications"]) == ["composed", "hello"]
    assert world.get("sapp", "hello")["status"]["serveStatus"] == "RUNNING"
    assert {p["spec"]["containers"][0]["image"] for p in world.ray_pods()} == {"serveplane/runtime:0.1.0"}


def test_the_ray_dashboard_refuses_requests_without_the_clusters_token(world: World) -> None:
    for path in ("/api/jobs/", "/api/serve/applications/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(world.dashboard(path, None), timeout=10)
        assert refused.value.code in (401, 403), path
        with urllib.request.urlopen(world.dashboard(path, world.ray_token()), timeout=10) as answer:
            assert answer.status == 200, path
    head = world.head()
    assert world.ray_token() not in json.dumps(head), "the pod only references the Secret"


def test_both_applications_answer_through_proxies_on_several_pods(world: World) -> None:
    endpoints = wait_for("two serve endpoints", lambda: (lambda e: e if len(e) >= 2 else None)(world.serve_endpoints()))
    pods = {p["status"]["podIP"]: p["metadata"]["name"] for p in world.ray_pods()}
    assert len({pods[ip] for ip in endpoints}) >= 2, "traffic must reach proxies on more than one pod"
    for ip in endpoints:
        hello = http_json(ip, "/hello/")
        assert hello["greeting"] == "Hello from serveplane"
        predicted = http_json(ip, "/composed/predict?x=3")
        assert predicted["output"] == 6.0


def test_kubectl_scale_the_model_to_three_replicas(world: World) -> None:
    world.cp.kubectl("scale", "sdep/composed-model", "-n", NS, "--replicas=3")

    def three() -> bool:
        sdep = world.get("sdep", "composed-model")
        ready = world.condition("sdep", "composed-model", "Ready")
        return (
            sdep["status"].get("replicas") == 3
            and ready.get("status") == "True"
            and ready.get("observedGeneration") == sdep["metadata"]["generation"]
        )

    wait_for("3 Model replicas in the status", three)
    model = world.serve_status()["applications"]["composed"]["deployments"]["Model"]
    assert sum(1 for r in model["replicas"] if r["state"] == "RUNNING") == 3


def test_args_update_in_place_without_restarts_or_failed_requests(world: World) -> None:
    before = {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0]["restartCount"])
        for p in world.ray_pods()
    }
    doc = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
    doc["spec"]["args"]["greeting"] = "Updated in place"
    endpoints = world.serve_endpoints()
    with Traffic(world, "/composed/predict?x=1") as traffic:
        start = time.monotonic()
        world.apply(yaml.safe_dump(doc))
        wait_for(
            "the new greeting",
            lambda: all(http_json(ip, "/hello/")["greeting"] == "Updated in place" for ip in endpoints),
            interval=0.25,
        )
        world.timings["args_update_s"] = round(time.monotonic() - start, 1)
        traffic.carry_on(40)
    assert traffic.sent > 20 and traffic.failed == 0 and traffic.no_endpoint_s == 0, traffic.errors[:5]
    after = {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0]["restartCount"])
        for p in world.ray_pods()
    }
    assert after == before, "an args update must not restart or replace any pod"
    world.kubectl_wait_ready("sapp/hello", timeout=120)


def test_bad_import_path_and_route_clash_are_isolated(world: World) -> None:
    bad = {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeApplication",
        "metadata": {"name": "broken"},
        "spec": {"cluster": "demo", "importPath": "no_such_module_xyz:app"},
    }
    clash = {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeApplication",
        "metadata": {"name": "clash"},
        "spec": {"cluster": "demo", "importPath": "serveplane.examples.hello:app", "routePrefix": "/hello"},
    }
    endpoints = world.serve_endpoints()
    with Traffic(world, "/hello/") as traffic:
        world.apply(yaml.safe_dump_all([bad, clash]))
        degraded = wait_for(
            "broken to be Degraded",
            lambda: (lambda c: c if c.get("status") == "True" else None)(world.condition("sapp", "broken", "Degraded")),
        )
        assert degraded["reason"] == "DeployFailed"
        assert "no_such_module_xyz" in degraded["message"]
        conflict = wait_for(
            "clash to be Degraded",
            lambda: (lambda c: c if c.get("status") == "True" else None)(world.condition("sapp", "clash", "Degraded")),
        )
        assert conflict["reason"] == "RoutePrefixConflict" and "'hello'" in conflict["message"]
        traffic.carry_on(60)
    assert traffic.failed == 0 and traffic.no_endpoint_s == 0, traffic.errors[:5]
    for ip in endpoints:
        assert http_json(ip, "/composed/predict?x=2")["output"] == 4.0
    assert world.condition("sapp", "hello", "Ready").get("status") == "True"
    world.cp.kubectl("delete", "sapp", "broken", "clash", "-n", NS, "--timeout=120s")


def test_deleting_the_head_pod_recovers_and_shows_the_outage(world: World) -> None:
    old = world.head()
    seen_outage = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not seen_outage.is_set():
            if (
                world.condition("scl", "demo", "Ready").get("status") == "False"
                and world.condition("sapp", "hello", "Ready").get("status") == "False"
            ):
                seen_outage.set()
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    world.cp.kubectl("delete", "pod", old["metadata"]["name"], "-n", NS, "--wait=false")
    wait_for(
        "a new head pod",
        lambda: (world.head() or {}).get("metadata", {}).get("uid") not in (None, old["metadata"]["uid"]),
    )
    world.kubectl_wait_ready("scl/demo", "sapp/hello", "sapp/composed", "sdep/composed-model", timeout=400)
    watcher.join(5)
    assert seen_outage.is_set(), "the statuses must show the outage while it lasts"
    new = world.head()
    # The same generation, so the same name: a lost head is replaced in place, no upgrade.
    assert (new["metadata"]["name"], generation_of(new)) == (old["metadata"]["name"], generation_of(old))
    cluster = wait_for(
        "the config resubmitted to the new head",
        lambda: (lambda c: c if c["status"].get("appliedHeadUid") == new["metadata"]["uid"] else None)(
            world.get("scl", "demo")
        ),
    )
    assert cluster["status"]["appliedHeadUid"] == new["metadata"]["uid"]
    # Without GCS fault tolerance the new head is a new Ray cluster: Serve starts empty and gets the config again.
    assert cluster["status"]["lastHeadRecovery"]["how"] == "Resubmitted", cluster["status"]
    ip = wait_for("a serve endpoint", lambda: world.serve_endpoints())[0]
    wait_for("hello to answer again", lambda: http_json(ip, "/hello/")["greeting"] == "Updated in place")
    # The workers' Ray leaves the lost cluster only once its GCS reconnect times out (Ray's 60 s), then restarts
    # and joins the new head: the steps after this one start from a whole cluster.
    pod_names = {p["metadata"]["name"] for p in world.ray_pods()}
    wait_for("every Ray pod to join the new head", lambda: world.ray_node_hosts() == pod_names, timeout=300)
    world.kubectl_wait_ready("scl/demo", "sapp/hello", "sapp/composed", timeout=120)


def test_deleting_an_application_removes_it_from_serve_only(world: World) -> None:
    with Traffic(world, "/composed/predict?x=1") as traffic:
        world.cp.kubectl("delete", "sapp", "hello", "-n", NS, "--timeout=120s")
        assert "hello" not in world.serve_status()["applications"], "the resource goes only after Serve dropped it"
        traffic.carry_on(40)
    assert traffic.failed == 0 and traffic.no_endpoint_s == 0, traffic.errors[:5]
    ingress = world.get("ingress", "demo-serve")
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/composed"]


def test_operator_metrics_follow_the_journey(world: World) -> None:
    def value(name: str, **labels: str) -> float:
        return world.metric(name, **labels)

    # The first submission, scale, args, bad apps added and removed, the new head, the deleted application.
    assert value("serveplane_serve_config_submissions_total", result="applied") >= 6
    assert value("serveplane_serve_config_submissions_total", reason="HeadReplaced") >= 1
    assert value("serveplane_pod_actions_total", action="create") >= 4, "3 pods, then the head again"
    assert value("serveplane_dashboard_requests_total", method="PUT", code="2xx") >= 6
    assert value("serveplane_dashboard_requests_total", method="GET", code="2xx") > 10
    assert value("serveplane_reconcile_total", kind="ServeCluster") > 10
    assert value("serveplane_spec_to_applied_seconds_count") >= 6
    # The gauge reads the operator's store, which learns of the deletion from its watch.
    wait_for("the gauge to count the one application left", lambda: value(
        "serveplane_resources", kind="serveapplications", ready="True") == 1, timeout=30)


def test_operator_restart_resubmits_nothing_and_restarts_nothing(world: World) -> None:
    """Both replicas replaced at once (a node drain, a `kubectl rollout restart`): the new ones start cold."""
    before = pods_and_deploy_times(world)
    old = {p["metadata"]["name"] for p in world.operator.pods()}
    world.cp.kubectl("delete", "pods", "-n", "serveplane-system", "-l", "app.kubernetes.io/name=serveplane")
    new_leader = wait_for(
        "a new replica to lead",
        lambda: (lambda name: name if name and name not in old and world.operator.leading(name) else None)(
            world.operator.leader_name()
        ),
        timeout=120,
    )
    # Let the new operator reconcile several rounds before judging what it did.
    wait_for(
        "a few reconciles by the new operator",
        lambda: world.operator.metric(new_leader, "serveplane_reconcile_total") >= 3,
        timeout=60,
    )
    assert world.metric("serveplane_serve_config_submissions_total") == 0, "a restarted operator must not resubmit"
    assert world.metric("serveplane_pod_actions_total") == 0
    assert pods_and_deploy_times(world) == before
    world.kubectl_wait_ready("scl/demo", "sapp/composed", timeout=60)


def operator_requests(world: World, since: float, until: float) -> collections.Counter[tuple[str, str]]:
    """What the operator asked of the API server in [since, until): every verb but watch, leases apart."""
    calls = audit.count(audit.read(world.cp.audit_log), user=USER, since=since, until=until)
    return collections.Counter({k: v for k, v in calls.items() if not k[1].startswith("leases")})


def pods_and_deploy_times(world: World) -> tuple[dict[str, Any], dict[str, float]]:
    """Each pod's UID and restarts, and when Serve last deployed each application: what a restart must keep."""
    pods = {
        p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0]["restartCount"])
        for p in world.ray_pods()
    }
    deployed = {name: app["last_deployed_time_s"] for name, app in world.serve_status()["applications"].items()}
    return pods, deployed


def quiet_since(world: World, seconds: float) -> bool:
    """The operator has written nothing for `seconds` (by the audit log): its reaction to the journey is over."""
    now = time.time()
    return not operator_requests(world, now - seconds, now)


def test_a_steady_minute_costs_the_api_server_nothing(world: World) -> None:
    """Idle: no GET, LIST or write by the operator's account (watches aside), so nothing grows with the cluster."""
    world.kubectl_wait_ready("scl/demo", "sapp/composed", "sdep/composed-model", timeout=120)
    wait_for("the operator to go quiet", lambda: quiet_since(world, 10))
    gets_before = world.metric("serveplane_dashboard_requests_total", method="GET")
    start = time.time()
    time.sleep(60)  # the measured window itself, not a wait for a condition
    calls = operator_requests(world, start, time.time())
    gets = world.metric("serveplane_dashboard_requests_total", method="GET") - gets_before
    world.timings["idle_api_requests_per_min"] = sum(calls.values())
    world.timings["idle_dashboard_gets_per_min"] = gets
    print(
        f"\nsteady minute: {sum(calls.values())} API requests by the operator {dict(calls)}; {gets:.0f} dashboard GETs"
    )
    assert not calls, f"the operator made API requests while nothing changed: {dict(calls)}"
    # One cluster, polled slowly (the chart's polling.slowSeconds, 15): about 4 a minute, never fast polling.
    assert 0 < gets <= 60 / 15 + 2


def take_over(world: World, during: Callable[[], None] = lambda: None) -> float:
    """kill -9 the leading replica's process, do `during` at once, and return the seconds until a replica leads
    again: the standby, once the Lease expires, or the killed one's restarted container, which holds the Lease
    under the same identity (the pod's name) and may take it back at once, as client-go's election allows."""
    leader = world.leader()
    standby = next(p["metadata"]["name"] for p in world.operator.pods() if p["metadata"]["name"] != leader)
    assert world.operator.leading(leader) and not world.operator.leading(standby), "one leader"
    restarts = world.operator.restarts()[leader]
    world.operator.kill(leader)
    killed = time.monotonic()
    during()

    def new_leader() -> str | None:
        name = world.operator.leader_name()
        fresh = name == standby or world.operator.restarts().get(name or "", 0) > restarts
        return name if fresh and world.operator.leading(name or "") else None

    name = wait_for("a replica to lead again", new_leader, timeout=60, interval=0.2)
    print(f"\nleader {leader} killed -> {'its restarted container' if name == leader else 'the standby'} leads")
    return time.monotonic() - killed


def replicas_ready(world: World) -> bool:
    pods = world.operator.pods()
    return len(pods) == 2 and all(all(c["ready"] for c in p["status"].get("containerStatuses", [])) for p in pods)


def test_a_killed_leader_is_succeeded_and_its_successor_submits_nothing(world: World) -> None:
    world.kubectl_wait_ready("scl/demo", "sapp/composed", "sdep/composed-model", timeout=120)
    wait_for("both replicas ready", lambda: replicas_ready(world), timeout=120)
    before = pods_and_deploy_times(world)
    takeover = take_over(world)
    world.timings["leader_takeover_s"] = round(takeover, 1)
    print(f"leader killed -> a replica leading in {takeover:.1f} s")
    # The chart's Lease: 10 s, standbys retry every 2 s; a restarted container needs its start-up too.
    assert takeover < 30
    wait_for("a few rounds by the new leader", lambda: world.metric("serveplane_reconcile_total") >= 3, timeout=60)
    assert world.metric("serveplane_serve_config_submissions_total") == 0, "the new leader must not resubmit"
    assert world.metric("serveplane_pod_actions_total") == 0, "the new leader restarts no Ray pod"
    assert pods_and_deploy_times(world) == before, "Serve's deploy times and the pods are untouched"


def test_a_change_made_during_a_takeover_is_applied(world: World) -> None:
    # The replica killed before is back (the kubelet restarted its container).
    wait_for("both replicas ready", lambda: replicas_ready(world), timeout=120)
    before = pods_and_deploy_times(world)[0]

    def scale() -> None:
        world.cp.kubectl(
            "patch", "sdep", "composed-model", "-n", NS, "--type=merge", "-p", '{"spec":{"numReplicas":2}}'
        )

    takeover = take_over(world, during=scale)
    assert takeover < 30

    def two_replicas() -> bool:
        return bool(
            world.serve_status()["applications"]["composed"]["deployments"]["Model"]["target_num_replicas"] == 2
        )

    wait_for("the change made during the takeover to reach Serve", two_replicas)
    assert world.metric("serveplane_serve_config_submissions_total", reason="ConfigChanged") == 1
    assert world.metric("serveplane_serve_config_submissions_total") == 1, "only the change is submitted"
    assert world.metric("serveplane_pod_actions_total") == 0
    assert pods_and_deploy_times(world)[0] == before
    world.kubectl_wait_ready("sdep/composed-model", timeout=240)


def total(world: World, name: str, **labels: str) -> float:
    """A metric summed over every operator replica: what the operator did, whichever replica led."""
    return sum(world.operator.metric(p["metadata"]["name"], name, **labels) for p in world.operator.pods())


@pytest.mark.parametrize("component", ["etcd", "kube-apiserver"])
def test_the_operator_rides_out_a_control_plane_restart(world: World, component: str) -> None:
    world.kubectl_wait_ready("scl/demo", "sapp/composed", "sdep/composed-model", timeout=120)
    wait_for("both replicas ready", lambda: replicas_ready(world), timeout=120)
    before = pods_and_deploy_times(world)
    submitted = total(world, "serveplane_serve_config_submissions_total")
    pod_actions = total(world, "serveplane_pod_actions_total")
    rounds = {p["metadata"]["name"]: world.operator.metric(p["metadata"]["name"], "serveplane_reconcile_total")
              for p in world.operator.pods()}
    broken_at = utcnow()
    world.cp.restart(component)

    def rounds_after() -> bool:
        # While etcd is away no lease can be renewed: the leader may step back, and either replica lead after.
        leader = world.leader()
        return world.operator.metric(leader, "serveplane_reconcile_total") >= rounds.get(leader, 0) + 2

    wait_for(f"rounds after the {component} restart", rounds_after, timeout=120)
    assert total(world, "serveplane_serve_config_submissions_total") == submitted, "a reconnect resubmits nothing"
    assert pods_and_deploy_times(world) == before
    replicas = 1 if component == "etcd" else 2
    world.cp.kubectl(
        "patch", "sdep", "composed-model", "-n", NS, "--type=merge",
        "-p", json.dumps({"spec": {"numReplicas": replicas}}),
    )

    def applied() -> bool:
        deployments = world.serve_status()["applications"]["composed"]["deployments"]
        return deployments["Model"]["target_num_replicas"] == replicas

    wait_for(f"the change made after the {component} restart to reach Serve", applied, timeout=120)
    # Until the restarted API server has refilled its RBAC caches it denies requests (403) for a moment: the
    # operator's log may show that window; it reconnected, since the change above reached it through its watch.
    world.operator.excuse(broken_at, utcnow())
    assert total(world, "serveplane_serve_config_submissions_total") == submitted + 1, "only the change"
    assert total(world, "serveplane_pod_actions_total") == pod_actions
    assert pods_and_deploy_times(world)[0] == before[0], f"a {component} restart must restart no Ray pod"
    world.kubectl_wait_ready("scl/demo", "sdep/composed-model", timeout=240)


def ray_processes() -> list[str]:
    """Ray's processes in the node's pods (raylets, GCS, workers, Serve replicas), seen from the host."""
    return [line for line in pod_command_lines() if "ray" in line]


def pod_command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and nodeclean.in_kubepods(int(entry.name)):
            lines.append(nodeclean.cmdline(int(entry.name)))
    return lines


def test_deleting_the_cluster_leaves_nothing_behind(world: World) -> None:
    running = ray_processes()
    # Three Ray nodes with Serve: many processes (raylets, GCS, workers, replicas), all in the pods' cgroups.
    assert len(running) > 10 and any("raylet" in line for line in running), running
    world.cp.kubectl("delete", "scl", "demo", "-n", NS, "--wait=false")
    wait_for("every pod to go", lambda: world.ray_pods() == [], timeout=180)
    for kind, name in (("service", "demo-head"), ("service", "demo-serve"), ("ingress", "demo-serve")):
        wait_for(f"{kind} {name} to go", lambda kind=kind, name=name: world.get(kind, name) is None)
    wait_for("every generation's head Service to go", lambda: not world.items(
        "services", "-l", "serveplane.dev/cluster=demo"))
    wait_for("no Ray process left", lambda: not ray_processes(), timeout=60)
