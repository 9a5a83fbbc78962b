"""Ray's autoscaler sizing a worker group for Serve, end to end: a ServeDeployment under load asks for more replicas
than the Ray nodes hold, a worker pod of the group starts and the replicas run; with the load gone the replicas go
and the idle worker, the one Ray's autoscaler chose, is drained and removed, failing no request of the traffic that
goes on. The autoscaler's decisions live in the status: re-applying the same manifests (client-side and
server-side) changes nothing and shows no diff while the cluster runs more workers than its spec's `replicas`.

The worker group's Ray CPUs (2) hold two replicas of 1 CPU; the head offers none. Runs last, in a namespace of its
own, once the upgrade tests' cluster is gone (the node's two cores).
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from trialkit import EndpointTraffic, PodPeak, Trial

from serveplane.localcluster.testkit import condition, worker_pods
from serveplane.localcluster.testkit import wait_for as _wait_for

NS = "autoscale"
CLUSTER = "scaler"
MAX_WORKERS = 2
IDLE_S = 20
pytestmark = pytest.mark.timeout(1500)
wait_for = functools.partial(_wait_for, timeout=300.0, interval=1.0)

MANIFESTS = f"""
apiVersion: serveplane.dev/v1alpha1
kind: ServeCluster
metadata: {{name: {CLUSTER}}}
spec:
  image: serveplane/runtime:0.1.0
  head:
    rayStartParams: {{num-cpus: "0", object-store-memory: "100000000"}}
  workerGroups:
    - name: cpu
      replicas: 1
      minReplicas: 1
      maxReplicas: {MAX_WORKERS}
      rayStartParams: {{num-cpus: "2", object-store-memory: "100000000"}}
  autoscaling: {{enabled: true, idleTimeoutSeconds: {IDLE_S}}}
---
apiVersion: serveplane.dev/v1alpha1
kind: ServeApplication
metadata: {{name: hello}}
spec:
  cluster: {CLUSTER}
  importPath: serveplane.examples.hello:app
  routePrefix: /hello
  args: {{greeting: Hello from a growing cluster}}
---
apiVersion: serveplane.dev/v1alpha1
kind: ServeDeployment
metadata: {{name: hello-hello}}
spec:
  application: hello
  deploymentName: Hello
  rayActorOptions: {{numCpus: 1}}
  autoscalingConfig:
    minReplicas: 1
    maxReplicas: 4
    targetOngoingRequests: 1
    upscaleDelayS: 2
    downscaleDelayS: 10
    metricsIntervalS: 1
    lookBackPeriodS: 4
"""


class World:
    def __init__(self, trial: Trial) -> None:
        self.cp = trial.cp

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", kind, name, "-n", NS, "-o", "json").stdout)

    def status(self) -> dict[str, Any]:
        return self.get("scl", CLUSTER).get("status") or {}

    def worker_pods(self) -> list[dict[str, Any]]:
        return [p for p in worker_pods(self.cp, CLUSTER, NS, group="cpu") if not p["metadata"].get("deletionTimestamp")]

    def workers(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.worker_pods())

    def ready_workers(self) -> list[str]:
        return sorted(
            p["metadata"]["name"] for p in worker_pods(self.cp, CLUSTER, NS, group="cpu")
            if not p["metadata"].get("deletionTimestamp")
            and condition(p, "Ready").get("status") == "True"
        )

    def replicas(self) -> tuple[int, int | None]:
        """(replicas running, replicas Serve aims for) of the autoscaled deployment."""
        status = self.get("sdep", "hello-hello").get("status") or {}
        return int(status.get("replicas", 0)), status.get("targetReplicas")

    def events(self, reason: str) -> list[str]:
        found = json.loads(self.cp.kubectl(
            "get", "events", "-n", NS, "--field-selector", f"reason={reason}", "-o", "json").stdout)["items"]
        return [e["message"] for e in found]

    def diff(self, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl("diff", "-n", NS, *flags, "-f", "-", input=MANIFESTS, check=False)


@pytest.fixture(scope="module")
def world(trial: Trial) -> Iterator[World]:
    world = World(trial)
    world.cp.kubectl("wait", "--for=delete", "namespace/upgrade", "--timeout=300s", check=False)
    world.cp.kubectl("create", "namespace", NS)
    # Server-side, as Argo CD's server-side apply makes them (and as test_gitops starts).
    world.cp.kubectl("apply", "--server-side", "-n", NS, "-f", "-", input=MANIFESTS)
    try:
        world.cp.kubectl("wait", "-n", NS, "--for=condition=Ready", "--timeout=600s", f"scl/{CLUSTER}", "sapp/hello")
        wait_for("one replica running", lambda: world.replicas()[0] == 1)
        yield world
    finally:
        world.cp.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def heavy(world: World) -> EndpointTraffic:
    """Six clients at once, each request holding a replica for a second: about six ongoing requests, which
    Serve (one ongoing request per replica) answers with its maximum of four replicas; two fit on a worker."""
    return EndpointTraffic(world.cp, NS, f"{CLUSTER}-serve", "/hello/work?seconds=1", rate=5.0, senders=6)


def light(world: World) -> EndpointTraffic:
    return EndpointTraffic(world.cp, NS, f"{CLUSTER}-serve", "/hello/", rate=10.0)


def test_a_group_grows_for_replicas_that_do_not_fit_and_its_idle_worker_goes_without_a_failed_request(
    world: World,
) -> None:
    (first,) = world.workers()
    with PodPeak(world.worker_pods) as workers:
        with heavy(world) as load:
            start = time.monotonic()
            new = wait_for("a second worker pod of the group", lambda: (set(world.workers()) - {first}) or None,
                           timeout=60)
            created = time.monotonic() - start
            wait_for("the new worker Ready", lambda: len(world.ready_workers()) == MAX_WORKERS)
            ready = time.monotonic() - start
            wait_for("four replicas running", lambda: world.replicas() == (4, 4))
            running = time.monotonic() - start
            status = world.status()
            group = status["workerGroups"][0]
            # Re-applying the manifests (as Argo CD or kubectl would) while the group runs more than `replicas`:
            # a server-side diff, a client-side apply and its diff, a server-side apply (test_gitops' order).
            generation = world.get("scl", CLUSTER)["metadata"]["generation"]
            diffs = [world.diff("--server-side")]
            world.cp.kubectl("apply", "-n", NS, "-f", "-", input=MANIFESTS)
            diffs.append(world.diff())
            world.cp.kubectl("apply", "--server-side", "-n", NS, "-f", "-", input=MANIFESTS)
            load.carry_on(30)
            assert world.get("scl", CLUSTER)["metadata"]["generation"] == generation, "no spec change"
            assert len(world.workers()) == MAX_WORKERS, "re-applying the spec reverted nothing"
        print(f"\nscale-up: {load.report('six clients')}; new worker {sorted(new)} created {created:.1f} s after "
              f"the load started, Ready at {ready:.1f} s, four replicas RUNNING at {running:.1f} s")
        with light(world) as calm:
            end = time.monotonic()
            wait_for("one replica left", lambda: world.replicas() == (1, 1))
            down = time.monotonic() - end
            chosen: set[str] = set()

            def one_worker_left() -> bool:
                asks = ((world.status().get("autoscaler") or {}).get("groups") or {}).get("cpu") or {}
                chosen.update(asks.get("workersToDelete") or [])
                return len(world.workers()) == 1

            wait_for("the idle worker removed", one_worker_left, timeout=IDLE_S + 240)
            gone = time.monotonic() - end
            calm.carry_on(30)
        print(f"scale-down: {calm.report('one client')}; replicas down to 1 {down:.1f} s after the load ended, "
              f"worker {sorted(chosen)} gone at {gone:.1f} s (idleTimeoutSeconds {IDLE_S})")
    for answer in diffs:
        assert answer.returncode == 0, f"kubectl diff shows a change:\n{answer.stdout}{answer.stderr}"
    assert (group["desired"], group["requested"], group["maxReplicas"]) == (MAX_WORKERS, MAX_WORKERS, MAX_WORKERS)
    assert "cpu 1 -> 2" in status["autoscaler"]["lastDecision"], status["autoscaler"]
    assert any("cpu: 1 -> 2 pods" in m for m in world.events("ScaledUp")), world.events("ScaledUp")
    assert workers.peak == MAX_WORKERS, f"never more than maxReplicas workers: {workers.peak}"
    assert load.failed == 0, load.failures[:5]
    left = world.workers()
    removed = set(workers.seen) - set(left)
    why = (f"chose {chosen}, removed {removed}, left {left}; autoscaler: {world.status().get('autoscaler')}; "
           f"events: {world.events('ScaledDown')}")
    assert chosen and removed == chosen, f"the worker removed is the one the autoscaler chose: {why}"
    assert len(left) == 1 and not set(left) & chosen, why
    assert any("cpu: 2 -> 1 pods" in m for m in world.events("ScaledDown")), world.events("ScaledDown")
    assert calm.failed == 0 and calm.no_endpoint_s == 0, calm.failures[:5]
    assert world.status()["workerGroups"][0]["desired"] == 1
