"""gRPC through Serve's proxies, end to end: a ServeCluster of its own runs the HTTP `hello` example and the two gRPC
applications of examples/grpc.yaml (one code, two greetings, the servicer function they declare imported by every
proxy from the Ray image). A grpcio client reaches each application through the serve Service's gRPC port on every
ready endpoint and through its ClusterIP, picked by the `application` metadata; an unknown application gets
NOT_FOUND; HTTP answers on the same proxies; sustained gRPC calls over the ready endpoints (re-read every half
second), with HTTP traffic beside them, fail none. Last, every metric the chart's Grafana dashboard queries is
exported by the operator, a Ray pod's metrics port or a node agent once that traffic (and one HTTP 404, one failed
gRPC call) went through.

Runs after the resilience tests (their namespace gone first) on the same trial; alone, the examples' `demo` cluster
goes first: the node's two cores hold one Ray cluster. Its cluster and namespace are gone, pods and all, before the
upgrade tests start.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from ray.serve.generated.serve_pb2 import ListApplicationsRequest
from ray.serve.generated.serve_pb2_grpc import RayServeAPIServiceStub
from trialkit import CallTraffic, EndpointTraffic, PodPeak, Trial

from serveplane.examples.greeter_pb2 import HelloReply, HelloRequest
from serveplane.examples.greeter_pb2_grpc import GreeterStub
from serveplane.examples.grpc_greeter import SERVICE, SERVICER_FUNCTION
from serveplane.localcluster.incluster import ChartOperator
from serveplane.localcluster.testkit import condition, generation_of, head_pod, ray_pods
from serveplane.localcluster.testkit import wait_for as _wait_for
from serveplane.localcluster.trial import serve_endpoints

NS = "grpc"
CLUSTER = "grpc"
SERVICE_NAME = f"{CLUSTER}-serve"
HTTP_PORT, GRPC_PORT = 8000, 9000
# Ray's own metrics (`ray start --metrics-export-port`) and the node agent (/metrics), on every Ray pod.
RAY_METRICS_PORT, AGENT_PORT = 8080, 8471
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.timeout(1500)
wait_for = functools.partial(_wait_for, timeout=300.0, interval=1.0)


def example(name: str) -> list[dict[str, Any]]:
    """The documents of examples/<name>, on this module's cluster."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    for doc in docs:
        if doc["kind"] == "ServeCluster":
            doc["metadata"]["name"] = CLUSTER
        else:
            doc["spec"]["cluster"] = CLUSTER
    return docs


def small_cluster() -> dict[str, Any]:
    """The examples' cluster made small: a head and one worker, one Ray CPU each; no Ingress."""
    (cluster,) = example("cluster.yaml")
    small = {"num-cpus": "1", "object-store-memory": "100000000"}
    cluster["spec"]["head"]["rayStartParams"] = small
    cluster["spec"]["workerGroups"][0].update(replicas=1, rayStartParams=dict(small))
    cluster["spec"].pop("ingress", None)
    return cluster


HELLO = example("hello.yaml")
GREETERS = example("grpc.yaml")
GREETINGS = {d["metadata"]["name"]: d["spec"]["args"]["greeting"] for d in GREETERS}
"""gRPC application -> the greeting it answers with (its args)."""
APPS = sorted(GREETINGS)


def greeter(target: str) -> tuple[grpc.Channel, GreeterStub]:
    channel = grpc.insecure_channel(target)
    return channel, GreeterStub(channel)


def say_hello(target: str, app: str | None, name: str = "serveplane") -> HelloReply:
    """One SayHello on a new connection (as a new client would, so a ClusterIP balances every call)."""
    channel, stub = greeter(target)
    with channel:
        metadata = (("application", app),) if app else ()
        reply: HelloReply = stub.SayHello(HelloRequest(name=name), metadata=metadata, timeout=10)
        return reply


def check(reply: HelloReply, app: str, name: str = "serveplane") -> HelloReply:
    """The reply of `app` itself: its own greeting and its name."""
    expected = f"{GREETINGS[app]}, {name}!"
    if (reply.message, reply.application) != (expected, app):
        raise AssertionError(f"asked {app}, got {reply.application!r} saying {reply.message!r}")
    return reply


def rejection(target: str, app: str | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        say_hello(target, app)
    assert isinstance(caught.value, grpc.RpcError)
    return caught.value


class World:
    def __init__(self, trial: Trial) -> None:
        self.cp = trial.cp
        assert trial.stack.node is not None
        self.operator = ChartOperator(self.cp, trial.stack.node)
        self.roll: dict[str, Any] = {}
        """How adding the gRPC applications to the running HTTP cluster went."""

    def get(self, kind: str, name: str, namespace: str = NS) -> dict[str, Any] | None:
        result = self.cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def pods(self) -> list[dict[str, Any]]:
        return ray_pods(self.cp, CLUSTER, NS)

    def endpoints(self) -> list[str]:
        return serve_endpoints(self.cp, NS, SERVICE_NAME)

    def cluster_ip(self) -> str:
        return str((self.get("service", SERVICE_NAME) or {})["spec"]["clusterIP"])

    def settled(self, apps: list[dict[str, Any]]) -> str | None:
        """The active generation once Ready, alone (no upgrade) and the serve Service routing to every Ray pod,
        with these applications Ready."""
        cluster = self.get("scl", CLUSTER)
        status = (cluster or {}).get("status") or {}
        pods = self.pods()
        if condition(cluster, "Ready").get("status") != "True" or status.get("upgrade"):
            return None
        if {generation_of(p) for p in pods} != {status.get("activeGeneration")}:
            return None
        if not all(condition(self.get("sapp", d["metadata"]["name"]), "Ready").get("status") == "True" for d in apps):
            return None
        return status["activeGeneration"] if len(pods) >= 2 and len(self.endpoints()) == len(pods) else None

    def serve_details(self) -> dict[str, Any]:
        """Serve's own report (the head's dashboard, with the cluster's token): what its proxies were started with."""
        secret = self.get("secret", f"{CLUSTER}-ray-token") or {}
        token = base64.b64decode((secret.get("data") or {}).get("token", "")).decode()
        head = head_pod(self.cp, CLUSTER, NS) or {}
        request = urllib.request.Request(f"http://{head['status']['podIP']}:8265/api/serve/applications/",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            details: dict[str, Any] = json.loads(answer.read())
        return details

    def scrape(self, ip: str, port: int) -> str:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=10) as answer:
            text: str = answer.read().decode()
        return text


def http_get(ip: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{ip}:{HTTP_PORT}{path}", timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


@pytest.fixture(scope="module")
def world(trial: Trial) -> Iterator[World]:
    world = World(trial)
    world.cp.kubectl("wait", "--for=delete", "namespace/ha", "--timeout=300s", check=False)
    # After the journey it is gone already; when this module runs alone, the examples' cluster makes room.
    world.cp.kubectl("delete", "scl", "demo", "-n", "default", "--ignore-not-found", "--timeout=300s")
    wait_for("the demo cluster's pods gone", lambda: not ray_pods(world.cp, "demo", "default"))
    started = time.monotonic()
    world.cp.kubectl("create", "namespace", NS)
    # HTTP first, as a cluster that gets its first gRPC application later: Serve reads its servicers only when it
    # starts, so the greeters must roll the cluster to a new generation, under traffic.
    world.cp.kubectl("apply", "-n", NS, "-f", "-", input=yaml.safe_dump_all([small_cluster(), *HELLO]))
    try:
        world.cp.kubectl("wait", "-n", NS, "--for=condition=Ready", "--timeout=600s", f"scl/{CLUSTER}", "sapp/hello")
        before = wait_for("one generation Ready with hello", lambda: world.settled(HELLO), timeout=420)
        print(f"\ncluster {CLUSTER} with hello Ready in {time.monotonic() - started:.0f} s: generation {before}, "
              f"{len(world.pods())} Ray pods")
        started = time.monotonic()
        with PodPeak(world.pods) as pods, EndpointTraffic(world.cp, NS, SERVICE_NAME, "/hello/", rate=5.0) as http:
            world.cp.kubectl("apply", "-n", NS, "-f", "-", input=yaml.safe_dump_all(GREETERS))

            def rolled() -> str | None:
                now = world.settled(HELLO + GREETERS)
                return now if now != before else None

            after = wait_for("a new generation Ready with every application", rolled, timeout=600)
            http.carry_on(20)
        world.roll = {"before": before, "after": after, "peak": pods.peak, "generations": sorted(pods.generations),
                      "took_s": time.monotonic() - started, "http": http}
        print(f"the greeters rolled {CLUSTER} from generation {before} to {after} in {world.roll['took_s']:.0f} s, "
              f"peak {pods.peak} Ray pods\n{http.report('HTTP to hello through the roll')}")
        yield world
    finally:
        started = time.monotonic()
        for kind in ("sapp", "scl"):
            world.cp.kubectl("delete", kind, "--all", "-n", NS, "--timeout=300s", check=False)
        world.cp.kubectl("delete", "namespace", NS, "--timeout=300s", check=False)
        wait_for("the cluster's pods gone", lambda: not world.pods())
        print(f"\ncluster {CLUSTER} deleted, its pods and namespace gone in {time.monotonic() - started:.0f} s")


def test_the_first_grpc_application_rolled_the_cluster_within_n_plus_one_pods_failing_no_request(
    world: World,
) -> None:
    roll = world.roll
    assert roll["after"] != roll["before"], "Serve must restart on a new head to serve a new servicer"
    assert roll["peak"] <= 3, f"N+1 = 3 pods at most (head and one worker, one surge pod), saw {roll['peak']}"
    http = roll["http"]
    assert http.sent >= 20 and http.failed == 0, http.failures[:5]
    assert http.no_endpoint_s == 0, http.changes


def test_serves_proxies_were_started_with_the_applications_servicer_function(world: World) -> None:
    grpc_options = world.serve_details().get("grpc_options") or {}
    assert grpc_options.get("port") == GRPC_PORT, grpc_options
    assert grpc_options.get("grpc_servicer_functions") == [SERVICER_FUNCTION], grpc_options


def test_each_application_answers_with_its_own_greeting_on_every_proxy_and_the_cluster_ip(world: World) -> None:
    endpoints, cluster_ip = world.endpoints(), world.cluster_ip()
    assert len(endpoints) >= 2, endpoints
    answered: dict[str, dict[str, str]] = {}
    for ip in [*endpoints, cluster_ip]:
        target = f"{ip}:{GRPC_PORT}"
        answered[ip] = {app: check(say_hello(target, app), app).host for app in APPS}
        channel, stub = greeter(target)
        with channel:
            apps = RayServeAPIServiceStub(channel).ListApplications(ListApplicationsRequest(), timeout=10)
            assert sorted(apps.application_names) == sorted([*APPS, "hello"])
            for app in APPS:
                stream = stub.SayHelloStream(HelloRequest(name="stream", count=3), metadata=(("application", app),),
                                             timeout=10)
                assert [check(reply, app, "stream").message for reply in stream] == [f"{GREETINGS[app]}, stream!"] * 3
    print(f"\ngRPC {SERVICE}/SayHello answered, per proxy (then the ClusterIP {cluster_ip}): app -> replica's pod")
    for ip, hosts in answered.items():
        print(f"  {ip}: {hosts}")

    target = f"{cluster_ip}:{GRPC_PORT}"
    unknown = rejection(target, "nobody")
    assert unknown.code() == grpc.StatusCode.NOT_FOUND, unknown
    assert "Application 'nobody' not found" in (unknown.details() or ""), unknown.details()
    unnamed = rejection(target, None)
    assert unnamed.code() == grpc.StatusCode.NOT_FOUND, unnamed
    assert "Application metadata not set" in (unnamed.details() or ""), unnamed.details()


def test_the_http_application_answers_on_the_same_proxies(world: World) -> None:
    greeting = HELLO[0]["spec"]["args"]["greeting"]
    for ip in [*world.endpoints(), world.cluster_ip()]:
        assert http_get(ip, "/hello/")["greeting"] == greeting, ip
        check(say_hello(f"{ip}:{GRPC_PORT}", APPS[0]), APPS[0])


def test_sustained_grpc_calls_over_the_ready_endpoints_fail_none_beside_http_traffic(world: World) -> None:
    lock = threading.Lock()
    asked: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def call(ip: str) -> None:
        with lock:  # each endpoint's calls go to both applications in turn
            app = APPS[asked[ip] % len(APPS)]
            asked[ip] += 1
        check(say_hello(f"{ip}:{GRPC_PORT}", app), app)
        with lock:
            calls[(ip, app)] += 1

    endpoints = world.endpoints()
    grpc_load = CallTraffic(world.cp, NS, SERVICE_NAME, f"/{SERVICE}/SayHello", call, rate=10.0)
    with grpc_load, EndpointTraffic(world.cp, NS, SERVICE_NAME, "/hello/", rate=5.0) as http_load:
        grpc_load.carry_on(200, timeout=120)  # about 20 s
    took = time.monotonic() - grpc_load.started
    print(f"\n{grpc_load.report('sustained gRPC, both applications in turn')} in {took:.0f} s")
    print(http_load.report("HTTP beside it"))
    print(f"  gRPC calls answered per (endpoint, application): {dict(sorted(calls.items()))}")
    assert grpc_load.failed == 0, grpc_load.failures[:5]
    assert http_load.failed == 0, http_load.failures[:5]
    assert grpc_load.no_endpoint_s == 0 and http_load.no_endpoint_s == 0, grpc_load.changes
    assert set(calls) == {(ip, app) for ip in endpoints for app in APPS}, "every proxy served both applications"


def test_every_metric_the_grafana_dashboard_queries_is_exported(world: World) -> None:
    """Last: after the traffic above, one HTTP 404 and one failed gRPC call (so the error counters exist too)."""
    from serveplane.localcluster import promql  # the dashboard's side of the check

    cluster_ip = world.cluster_ip()
    with pytest.raises(urllib.error.HTTPError) as not_found:
        http_get(cluster_ip, "/nowhere/")
    assert not_found.value.code == 404
    assert rejection(f"{cluster_ip}:{GRPC_PORT}", "nobody").code() == grpc.StatusCode.NOT_FOUND
    wanted = promql.dashboard_metric_names()
    assert wanted, "the dashboard queries metrics"
    seen: dict[str, set[str]] = {}

    def missing() -> set[str]:
        leader = world.operator.leader_name()
        assert leader, "an operator replica leads"
        seen["operator"] = promql.exported_names(world.operator.metrics_text(leader))
        for pod in world.pods():
            ip, name = pod["status"]["podIP"], pod["metadata"]["name"]
            seen[f"{name} ray"] = promql.exported_names(world.scrape(ip, RAY_METRICS_PORT))
            seen[f"{name} agent"] = promql.exported_names(world.scrape(ip, AGENT_PORT))
        return wanted - set().union(*seen.values())

    # Ray's metrics agent exports what its processes recorded every few seconds: wait for it, not for a time.
    last: set[str] = set()

    def all_exported() -> bool:
        nonlocal last
        last = missing()
        return not last

    try:
        wait_for("every metric the dashboard queries to be exported", all_exported, timeout=120)
    except AssertionError:
        pass  # what is missing is told below
    print(f"\n{len(wanted)} metric names queried by the dashboard; names exported per source: "
          f"{ {source: len(names) for source, names in seen.items()} }")
    print("  missing: " + (", ".join(sorted(last)) or "none"))
    assert not last, f"the dashboard queries metrics nothing exports: {sorted(last)}"
