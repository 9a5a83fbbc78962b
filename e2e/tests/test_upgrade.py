"""Upgrades of a ServeCluster under steady traffic, end to end: a new image rolls out as a new generation of the
Ray cluster, Incremental (within N+1 pods) and BlueGreen (within 2N), failing no request and never leaving the
serve Service without an endpoint; a new generation that cannot run the application never gets traffic and goes
with the revert; an upgrade survives the operator's leader being killed in the middle of it.

Runs after the resilience tests on the same trial, in a namespace of its own. The new images are new tags of the
runtime image in the node's containerd: a different image reference is what makes a new generation, as a real
release would.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from trialkit import EndpointTraffic, PodPeak, Trial

from serveplane.localcluster.incluster import ChartOperator
from serveplane.localcluster.testkit import condition, generation_of, ray_pods
from serveplane.localcluster.testkit import wait_for as _wait_for

NS = "upgrade"
CLUSTER = "up"
IMAGE = "serveplane/runtime:0.1.0"
N = 2
"""Ray pods the spec asks for: a head and one worker."""
pytestmark = pytest.mark.timeout(1800)
wait_for = functools.partial(_wait_for, timeout=420.0, interval=1.0)

MANIFESTS = f"""
apiVersion: serveplane.dev/v1alpha1
kind: ServeCluster
metadata: {{name: {CLUSTER}}}
spec:
  image: {IMAGE}
  head:
    rayStartParams: {{num-cpus: "1", object-store-memory: "100000000"}}
  workerGroups:
    - name: cpu
      replicas: 1
      rayStartParams: {{num-cpus: "1", object-store-memory: "100000000", resources: '{{"hello": 10}}'}}
  upgradeStrategy: {{type: Incremental, timeoutSeconds: 120, oldGenerationDelaySeconds: 10}}
---
apiVersion: serveplane.dev/v1alpha1
kind: ServeApplication
metadata: {{name: hello}}
spec:
  cluster: {CLUSTER}
  importPath: serveplane.examples.hello:app
  routePrefix: /hello
  args: {{greeting: Hello across generations}}
  deployments:
    - name: Hello
      numReplicas: 2
      rayActorOptions: {{numCpus: 0.1}}
"""


class Upgrade:
    def __init__(self, trial: Trial) -> None:
        self.cp = trial.cp
        assert trial.stack.node is not None
        self.node = trial.stack.node
        self.operator = ChartOperator(self.cp, self.node)

    def cluster(self) -> dict[str, Any]:
        return json.loads(self.cp.kubectl("get", "scl", CLUSTER, "-n", NS, "-o", "json").stdout)

    def status(self) -> dict[str, Any]:
        return self.cluster().get("status") or {}

    def pods(self) -> list[dict[str, Any]]:
        return ray_pods(self.cp, CLUSTER, NS)

    def patch(self, patch: dict[str, Any]) -> None:
        self.cp.kubectl("patch", "scl", CLUSTER, "-n", NS, "--type=merge", "-p", json.dumps({"spec": patch}))

    def tag(self, tag: str) -> str:
        """A new tag of the runtime image in the node's containerd: a new image reference, the same content."""
        refs = self.node.ctr("images", "ls", "-q").stdout.split()
        source = next(r for r in refs if r.endswith(IMAGE))
        target = source.replace(IMAGE, f"serveplane/runtime:{tag}")
        if target not in refs:
            self.node.ctr("images", "tag", source, target)
        return f"serveplane/runtime:{tag}"

    def settled(self) -> str | None:
        """The active generation, once the cluster runs it alone: no upgrade, N Ready pods, all of it, Ready."""
        status = self.status()
        pods = self.pods()
        active = status.get("activeGeneration")
        if status.get("upgrade") or len(pods) != N or {generation_of(p) for p in pods} != {active}:
            return None
        if condition(self.cluster(), "Ready").get("status") != "True":
            return None
        return str(active)

    def answering_hosts(self, traffic: EndpointTraffic, count: int = 10) -> set[str]:
        """Which pods' replicas answer requests sent the way the traffic sends them."""
        hosts = set()
        for turn in range(count):
            ip = traffic.target(turn)
            assert ip, "the serve Service has an endpoint"
            with urllib.request.urlopen(f"http://{ip}:8000/hello/", timeout=10) as answer:
                hosts.add(json.loads(answer.read())["host"])
        return hosts


@pytest.fixture(scope="module")
def upgrade(trial: Trial) -> Iterator[Upgrade]:
    world = Upgrade(trial)
    # The resilience tests' cluster goes first: the node has room for one Ray cluster and an upgrade's extra pods.
    world.cp.kubectl("wait", "--for=delete", "namespace/ha", "--timeout=300s", check=False)
    world.cp.kubectl("create", "namespace", NS)
    world.cp.kubectl("apply", "-n", NS, "-f", "-", input=MANIFESTS)
    try:
        world.cp.kubectl("wait", "-n", NS, "--for=condition=Ready", "--timeout=600s", f"scl/{CLUSTER}", "sapp/hello")
        wait_for("the cluster to settle", world.settled)
        yield world
    finally:
        world.cp.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def traffic(upgrade: Upgrade) -> EndpointTraffic:
    return EndpointTraffic(upgrade.cp, NS, f"{CLUSTER}-serve", "/hello/", rate=10.0)


def roll_out(upgrade: Upgrade, patch: dict[str, Any], what: str) -> tuple[str, str, EndpointTraffic, PodPeak, float]:
    """Apply a change that makes a new generation under load; wait for the cluster to run it alone."""
    old = wait_for("a settled cluster", upgrade.settled)
    with traffic(upgrade) as load, PodPeak(upgrade.pods) as count:
        load.carry_on(20)
        start = time.monotonic()
        upgrade.patch(patch)
        new = wait_for("the new generation to run the cluster alone",
                       lambda: (lambda g: g if g and g != old else None)(upgrade.settled()), timeout=600)
        took = time.monotonic() - start
        load.carry_on(40)
        hosts = upgrade.answering_hosts(load)
    print(f"\n{what}: {load.report(f'generation {old} -> {new}')}; peak {count.peak} Ray pods; {took:.0f} s")
    assert all(f"-{new}-" in host for host in hosts), f"replicas of the new generation answer: {hosts}"
    return old, new, load, count, took


def test_an_incremental_image_upgrade_fails_no_request_within_n_plus_one_pods(upgrade: Upgrade) -> None:
    old, new, load, count, _ = roll_out(upgrade, {"image": upgrade.tag("0.1.0-b")}, "Incremental")
    assert load.failed == 0, load.failures[:5]
    assert load.no_endpoint_s == 0, load.changes
    assert count.peak <= N + 1, f"at most maxSurgePods (1) extra: {count.peak}"
    assert count.generations == {old, new}
    assert not [p for p in upgrade.pods() if generation_of(p) == old], "the old pods are gone"


def test_a_blue_green_upgrade_fails_no_request_within_twice_the_pods(upgrade: Upgrade) -> None:
    patch = {"image": upgrade.tag("0.1.0-c"), "upgradeStrategy": {"type": "BlueGreen"}}
    old, new, load, count, _ = roll_out(upgrade, patch, "BlueGreen")
    assert load.failed == 0, load.failures[:5]
    assert load.no_endpoint_s == 0, load.changes
    assert N + 1 < count.peak <= 2 * N, "the whole new generation, then the switch"
    assert count.generations == {old, new}


def test_a_new_generation_that_cannot_run_the_application_never_gets_traffic_and_reverting_removes_it(
    upgrade: Upgrade,
) -> None:
    """The new generation's workers lack the custom resource the application's replicas ask for (given in
    their worker group), so it never runs there: the upgrade fails after timeoutSeconds and traffic stays."""
    upgrade.patch({"upgradeStrategy": {"type": "Incremental", "timeoutSeconds": 60}})
    old = wait_for("a settled cluster", upgrade.settled)
    spec = upgrade.cluster()["spec"]
    groups = json.loads(json.dumps(spec["workerGroups"]))
    groups[0]["rayStartParams"]["resources"] = '{"elsewhere": 10}'
    hello = json.loads(upgrade.cp.kubectl("get", "sapp", "hello", "-n", NS, "-o", "json").stdout)
    upgrade.cp.kubectl("patch", "sapp", "hello", "-n", NS, "--type=merge", "-p", json.dumps({"spec": {
        "deployments": [{"name": "Hello", "numReplicas": 2,
                         "rayActorOptions": {"numCpus": 0.1, "resources": {"hello": 0.1}}}]}}))
    wait_for("the application to run with its resource", lambda: upgrade.settled() == old and json.loads(
        upgrade.cp.kubectl("get", "sapp", "hello", "-n", NS, "-o", "json").stdout
    ).get("status", {}).get("serveStatus") == "RUNNING")
    with traffic(upgrade) as load, PodPeak(upgrade.pods) as count:
        head = {"env": [{"name": "SERVEPLANE_TRY", "value": "no-hello-resource"}]}
        upgrade.patch({"head": {**spec.get("head", {}), **head}, "workerGroups": groups})
        failed = wait_for("the upgrade to fail", lambda: (upgrade.status().get("upgrade") or {}).get("failure"))
        degraded = condition(upgrade.cluster(), "Degraded")
        load.carry_on(20)
        serving = {generation_of(p) for p in upgrade.pods() if p["status"].get("podIP") in load.endpoints}
        assert serving == {old}, "traffic never left the running generation"
        # The spec as it was (a merge patch removes the head's env only with a null).
        upgrade.patch({"head": {**spec.get("head", {}), "env": None}, "workerGroups": spec["workerGroups"]})
        wait_for("the revert to remove the new generation", lambda: upgrade.settled() == old)
        load.carry_on(20)
    print(f"\nfailed generation: {load.report('the old generation throughout')}; peak {count.peak} Ray pods; "
          f"why: {failed}")
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "UpgradeFailed"), degraded
    assert "not all RUNNING" in failed or "not Ready" in failed
    assert load.failed == 0 and load.no_endpoint_s == 0, load.failures[:5]
    assert count.peak <= N + 1
    upgrade.cp.kubectl("patch", "sapp", "hello", "-n", NS, "--type=merge", "-p", json.dumps({"spec": {
        "deployments": hello["spec"]["deployments"]}}))
    upgrade.patch({"upgradeStrategy": {"timeoutSeconds": 600}})


def test_an_upgrade_resumes_after_the_operators_leader_is_killed_in_the_middle(upgrade: Upgrade) -> None:
    old = wait_for("a settled cluster", upgrade.settled)
    with traffic(upgrade) as load, PodPeak(upgrade.pods) as count:
        upgrade.patch({"image": upgrade.tag("0.1.0-d")})
        # Mid-upgrade: the new generation already serves beside the old one.
        wait_for("both generations to serve", lambda: len({
            generation_of(p) for p in upgrade.pods() if p["status"].get("podIP") in load.endpoints
        }) == 2, timeout=600, interval=0.5)
        leader = upgrade.operator.leader_name()
        assert leader
        upgrade.operator.kill(leader)
        new = wait_for("the upgrade to complete after the takeover",
                       lambda: (lambda g: g if g and g != old else None)(upgrade.settled()), timeout=600)
        load.carry_on(40)
    print(f"\nleader {leader} killed mid-upgrade: {load.report(f'generation {old} -> {new}')}; "
          f"peak {count.peak} Ray pods")
    assert load.failed == 0 and load.no_endpoint_s == 0, load.failures[:5]
    assert count.generations == {old, new}, "no second new generation"
    assert count.peak <= N + 1
