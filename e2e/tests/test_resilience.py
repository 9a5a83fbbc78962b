"""GCS fault tolerance on a real Redis, end to end: a ServeCluster whose GCS keeps its state in Debian's
redis-server (started here, with a password, on the node's address) loses its head pod under steady traffic and
fails no request; then its head's Ray crashes, and only requests on their way to the head's own proxy may fail;
deleting the cluster removes its keys from Redis.

Runs after the journey (which deletes the examples' cluster), on the same trial: the node has room for one Ray
cluster on 2 cores. The head has no CPUs for replicas (num-cpus 0), as a production head should, so every
replica lives on a worker and survives the head.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from trialkit import EndpointTraffic, Poller, Trial

from serveplane.localcluster import node, processes
from serveplane.localcluster.controlplane import KubectlError
from serveplane.localcluster.incluster import ChartOperator
from serveplane.localcluster.redis import RedisServer
from serveplane.localcluster.testkit import condition, generation_of, head_pod, worker_pods
from serveplane.localcluster.testkit import wait_for as _wait_for
from serveplane.localcluster.trial import serve_endpoints

NS = "ha"
pytestmark = pytest.mark.timeout(1500)
wait_for = functools.partial(_wait_for, timeout=300.0, interval=1.0)


class HA:
    def __init__(self, trial: Trial, redis: RedisServer) -> None:
        self.cp, self.redis = trial.cp, redis
        assert trial.stack.node is not None
        self.operator = ChartOperator(self.cp, trial.stack.node)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cp.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def pods(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.cp.kubectl("get", "pods", "-n", NS, "-o", "json").stdout)["items"]
        return {p["metadata"]["name"]: p for p in items}

    def head(self) -> dict[str, Any] | None:
        """The cluster's head pod, by its labels (its name carries the generation's hash)."""
        return head_pod(self.cp, "ha", NS)

    def workers(self) -> dict[str, tuple[str, int]]:
        """Worker pod name -> (UID, container restarts)."""
        return {
            p["metadata"]["name"]: (
                p["metadata"]["uid"], sum(c.get("restartCount", 0) for c in p["status"]["containerStatuses"])
            )
            for p in worker_pods(self.cp, "ha", NS)
        }

    def submissions(self) -> float:
        """Serve configs PUT by any operator replica."""
        return sum(
            self.operator.metric(p["metadata"]["name"], "serveplane_serve_config_submissions_total")
            for p in self.operator.pods()
        )

    def recovery(self, head_uid: str) -> dict[str, Any] | None:
        """The cluster's lastHeadRecovery once it names this head."""
        found = ((self.get("scl", "ha") or {}).get("status") or {}).get("lastHeadRecovery") or {}
        return found if found.get("headUid") == head_uid else None

    def every_proxy_serves(self) -> bool:
        """The steady state: the serve Service routes to the Serve proxy of every Ray pod."""
        return len(serve_endpoints(self.cp, NS, "ha-serve")) == len(self.pods())

    def serving(self) -> bool:
        cluster, app = self.get("scl", "ha"), self.get("sapp", "hello")
        return condition(cluster, "Ready").get("status") == "True" and (app or {}).get("status", {}).get(
            "serveStatus"
        ) == "RUNNING"


class ProxyReports(Poller):
    """Serve's proxy states as the head's dashboard reports them (with the cluster's token), each time they change:
    with the endpoints' timeline, what a failure window is made of."""

    def __init__(self, ha: HA, traffic: EndpointTraffic) -> None:
        super().__init__()
        self.ha, self.traffic = ha, traffic
        self.changes: list[tuple[float, dict[str, str] | str]] = []
        secret = self.ha.get("secret", "ha-ray-token") or {}
        self.token = base64.b64decode((secret.get("data") or {}).get("token", "")).decode()

    def poll(self) -> None:
        try:
            head = self.ha.head() or {}
        except KubectlError:  # the API server is not what is under test: no head seen this time
            head = {}
        ip = (head.get("status") or {}).get("podIP")
        seen: dict[str, str] | str
        try:
            request = urllib.request.Request(f"http://{ip}:8265/api/serve/applications/",
                                             headers={"Authorization": f"Bearer {self.token}"})
            with urllib.request.urlopen(request, timeout=3) as answer:
                report = json.loads(answer.read())
            seen = {p["node_ip"]: p["status"] for p in (report.get("proxies") or {}).values()}
        except (OSError, ValueError) as error:
            seen = f"no answer ({type(error).__name__})"
        if not self.changes or self.changes[-1][1] != seen:
            self.changes.append((time.monotonic() - self.traffic.started, seen))


def print_timeline(traffic: EndpointTraffic, proxies: ProxyReports) -> None:
    events = [(t, f"endpoints {e}") for t, e in traffic.changes] + [(t, f"proxies {p}") for t, p in proxies.changes]
    events += [(t - traffic.started, f"FAILED {ip or '-'}: {error[:80]}") for t, ip, error in traffic.failures[:30]]
    for t, line in sorted(events):
        print(f"  {t:7.2f}s {line}")


def manifests(redis: RedisServer) -> str:
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: redis-auth}}
stringData: {{password: "{redis.password}"}}
---
apiVersion: serveplane.dev/v1alpha1
kind: ServeCluster
metadata: {{name: ha}}
spec:
  image: serveplane/runtime:0.1.0
  head:
    rayStartParams: {{num-cpus: "0", object-store-memory: "100000000"}}
  workerGroups:
    - name: cpu
      replicas: 2
      rayStartParams: {{num-cpus: "1", object-store-memory: "100000000"}}
  gcsFaultTolerance:
    redisAddress: "{redis.address}"
    redisPassword: {{secretKeyRef: {{name: redis-auth, key: password}}}}
---
apiVersion: serveplane.dev/v1alpha1
kind: ServeApplication
metadata: {{name: hello}}
spec:
  cluster: ha
  importPath: serveplane.examples.hello:app
  routePrefix: /hello
  args: {{greeting: Hello from a fault-tolerant cluster}}
  deployments:
    - name: Hello
      numReplicas: 2
      maxReplicasPerNode: 1
      rayActorOptions: {{numCpus: 0.1}}
"""


@pytest.fixture(scope="module")
def ha(trial: Trial, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HA]:
    redis = RedisServer(node.primary_address(), processes.free_port(), tmp_path_factory.mktemp("redis")).start()
    world = HA(trial, redis)
    world.cp.kubectl("create", "namespace", NS)
    world.cp.kubectl("apply", "-n", NS, "-f", "-", input=manifests(redis))
    try:
        world.cp.kubectl("wait", "-n", NS, "--for=condition=Ready", "--timeout=600s", "scl/ha", "sapp/hello")
        yield world
    finally:
        world.cp.kubectl("delete", "namespace", NS, "--wait=false", check=False)
        redis.stop()


def test_the_head_keeps_the_clusters_state_in_redis(ha: HA) -> None:
    uid = ha.get("scl", "ha")["metadata"]["uid"]
    pod = ha.head()
    # Each generation is a Ray cluster of its own: its GCS's namespace is the ServeCluster's UID and its name.
    namespace = f"{uid}-{generation_of(pod)}"
    assert ha.redis.keys(f"RAY{namespace}@*"), "the GCS's tables are in Redis under the cluster's UID and generation"
    head = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in head["env"]}
    assert env["RAY_external_storage_namespace"]["value"] == namespace
    password = next(e for e in head["env"] if e["name"] == "SERVEPLANE_REDIS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "password"}
    assert ha.redis.password not in json.dumps(ha.pods()), "the password is only referenced"
    assert "serveplane.dev/redis-cleanup" in ha.get("scl", "ha")["metadata"]["finalizers"]


def test_deleting_the_head_pod_fails_no_request_and_restarts_no_worker(ha: HA) -> None:
    old = ha.head()
    old_head = old["metadata"]["uid"]
    workers, submitted = ha.workers(), ha.submissions()
    with EndpointTraffic(ha.cp, NS, "ha-serve", "/hello/") as traffic, ProxyReports(ha, traffic) as proxies:
        wait_for("the serve Service to route to every proxy", ha.every_proxy_serves)
        wait_for("traffic to flow", lambda: traffic.sent - traffic.failed > 20)
        ha.cp.kubectl("delete", "pod", old["metadata"]["name"], "-n", NS, "--wait=false")
        wait_for("a new head pod", lambda: (ha.head() or {}).get("metadata", {}).get("uid")
                 not in (None, old_head))
        new = ha.head()
        # The same generation (so the same name and the same Redis namespace): a replacement, not an upgrade.
        assert (new["metadata"]["name"], generation_of(new)) == (old["metadata"]["name"], generation_of(old))
        new_head = new["metadata"]["uid"]
        recovered = wait_for("Serve back on the new head", lambda: ha.recovery(new_head))
        wait_for("the cluster Ready and serving again", ha.serving)
        traffic.carry_on(20)
    print("\n" + traffic.report("head pod deleted (GCS fault tolerance)"))
    print_timeline(traffic, proxies)
    assert recovered["how"] == "RecoveredFromGcs", recovered
    assert ha.submissions() == submitted, "Serve came back from the GCS: nothing was resubmitted"
    assert ha.workers() == workers, "the workers' pods and containers are the ones of before"
    assert traffic.failed == 0, traffic.report("head pod deleted")


def test_a_crash_of_the_heads_ray_fails_only_requests_to_the_heads_proxy(ha: HA) -> None:
    head = ha.head()
    head_ip, restarts = head["status"]["podIP"], head["status"]["containerStatuses"][0].get("restartCount", 0)
    workers, submitted = ha.workers(), ha.submissions()
    kill_ray = ("import os; me = os.getpid(); "
                "[os.kill(int(p), 9) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, me)]")
    with EndpointTraffic(ha.cp, NS, "ha-serve", "/hello/") as traffic, ProxyReports(ha, traffic) as proxies:
        wait_for("the serve Service to route to every proxy", ha.every_proxy_serves)
        wait_for("traffic to flow", lambda: traffic.sent - traffic.failed > 20)
        # Every process of the head's container but the runtime (PID 1), which then exits: the kubelet restarts it.
        ha.cp.kubectl("exec", "-n", NS, head["metadata"]["name"], "--", "python", "-c", kill_ray, check=False)
        wait_for("the head's container restarted", lambda: ha.get("pod", head["metadata"]["name"])["status"]
                 ["containerStatuses"][0].get("restartCount", 0) > restarts)
        wait_for("the cluster Ready and serving again", ha.serving, timeout=400)
        traffic.carry_on(20)
    print("\n" + traffic.report("head's Ray SIGKILLed (GCS fault tolerance)"))
    print_timeline(traffic, proxies)
    assert {ip for _, ip, _ in traffic.failures} <= {head_ip}, traffic.failures[:10]
    assert ha.submissions() == submitted, "Serve came back from the GCS on the restarted head: nothing resubmitted"
    assert ha.workers() == workers


def test_deleting_the_cluster_removes_its_state_from_redis(ha: HA) -> None:
    uid = ha.get("scl", "ha")["metadata"]["uid"]
    namespace = f"{uid}-{generation_of(ha.head())}"
    assert ha.redis.keys(f"RAY{namespace}@*")
    ha.cp.kubectl("delete", "sapp", "hello", "-n", NS, "--timeout=300s")
    ha.cp.kubectl("delete", "scl", "ha", "-n", NS, "--timeout=300s")
    # Every generation's keys (RAY<uid>-<generation>@...), and any under the bare UID.
    assert ha.redis.keys(f"RAY{uid}*") == [], "the clean-up pod removed the cluster's keys before it went"
    wait_for("the clean-up pod gone", lambda: "ha-redis-cleanup" not in ha.pods())
    assert not ha.pods(), ha.pods().keys()
