"""operator/leader.py against the real API server, as the operator's own ServiceAccount (the chart's RBAC rules).

Replicas run as separate OS processes (a small runner: acquire, print a line, hold; SIGTERM releases), talking
through the operator's own aiohttp client, so SIGKILL is a real crash: one leads, the other waits while the
leader renews, and takes over once the lease has expired on its own clock; a SIGTERM'd leader releases and the
standby takes over at its next attempt. In-process electors over the official client's CoordinationV1Api race
for a new Lease (exactly one wins), renew without reading, and notice a Lease stolen by hand.
Every wait is a condition with a deadline; the measured takeover times are printed (`pytest -s`).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import ACCOUNT, NAMESPACE, install
from serveplane.localcluster.testkit import get_object, wait_for
from serveplane.operator import leader
from serveplane.operator.leader import LeaderElector, LeaseConfig

# The module's (and the chart's) default timing: lease 10 s, renew 2 s, retry 2 s.
DEFAULTS = LeaseConfig(namespace="-", identity="-")

RUNNER = r"""
import asyncio, signal, sys
import kopf
from serveplane.operator.clients.kube import Kube, credentials
from serveplane.operator.leader import LeaderElector, LeaseConfig

def say(*words):
    print(*words, flush=True)

async def main():
    namespace, name, identity = sys.argv[1:4]
    settings = kopf.OperatorSettings()
    kube = Kube(lambda: credentials(settings))
    elector = LeaderElector(api=kube, config=LeaseConfig(namespace=namespace, name=name, identity=identity))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def report():
        seen = None
        while True:
            if elector.holder != seen:
                seen = elector.holder
                say("sees", seen or "-")
            await asyncio.sleep(0.05)

    async def lead():
        await elector.acquire()
        say("leader", identity)
        await elector.hold()
        say("lost", identity)

    reporting, leading = asyncio.create_task(report()), asyncio.create_task(lead())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({leading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        leading.cancel()
        await elector.release()
        say("released", identity)
    reporting.cancel()
    await kube.close()

say("started")
asyncio.run(main())
"""


class Replica:
    """One runner process; its stdout lines are kept with the monotonic time each arrived."""

    def __init__(self, identity: str, namespace: str, lease: str, kubeconfig: Path, workdir: Path) -> None:
        self.identity = identity
        self.lines: list[tuple[float, str]] = []
        self._stderr = open(workdir / f"{identity}.stderr", "w+b")  # noqa: SIM115 - closed in stop()
        # cwd outside the repository: its `operator/` folder would shadow the standard library's module.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, namespace, lease, identity], cwd=workdir, stdout=subprocess.PIPE,
            stderr=self._stderr, env={**os.environ, "KUBECONFIG": str(kubeconfig)}, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode().strip()))

    def said(self, line: str) -> float | None:
        """When the runner printed `line` (monotonic), or None."""
        return next((at for at, text in self.lines if text == line), None)

    def wait(self, line: str, timeout: float) -> float:
        def probe() -> float | None:
            assert self.proc.poll() is None or self.said(line) is not None, self.output()
            return self.said(line)

        return wait_for(f"{self.identity} to print {line!r}", probe, timeout=timeout, interval=0.05)

    def output(self) -> str:
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")[-3000:]
        return "stdout:\n" + "\n".join(text for _, text in self.lines) + "\nstderr:\n" + err

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)
        self._stderr.close()


@pytest.fixture(scope="module")
def account_kubeconfig(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig of the operator's ServiceAccount, bound to exactly helm/serveplane/files/rbac-rules.yaml."""
    install(controlplane)
    return controlplane.create_service_account_kubeconfig(
        NAMESPACE, ACCOUNT, tmp_path_factory.mktemp("leader") / "operator.kubeconfig")


@pytest.fixture
def spawn(account_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Callable[[str, str], Replica]]:
    started: list[Replica] = []

    def start(identity: str, lease: str) -> Replica:
        replica = Replica(identity, namespace, lease, account_kubeconfig, tmp_path)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


def read_lease(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    lease = get_object(cp, "lease", name, namespace)
    assert lease is not None, f"no Lease {namespace}/{name}"
    return lease


def spec_of(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return read_lease(cp, namespace, name)["spec"]


def test_a_standby_waits_while_the_leader_renews_and_takes_over_after_sigkill(
    controlplane: ControlPlane, spawn: Callable[[str, str], Replica], namespace: str
) -> None:
    cp, lease = controlplane, "kill"
    a = spawn("replica-a", lease)
    a.wait("leader replica-a", timeout=30)
    b = spawn("replica-b", lease)
    b.wait("sees replica-a", timeout=30)
    seen_wall = datetime.now(UTC)
    # b keeps waiting while a renews: let a's renewals run past a whole lease duration plus a retry period
    # after b first saw the record. A standby that judged expiry wrongly would have taken over by then.
    horizon = DEFAULTS.lease_duration_s + DEFAULTS.retry_period_s

    def renewed_past_horizon() -> bool:
        spec = spec_of(cp, namespace, lease)
        renewed = leader.parse_time(spec["renewTime"])
        assert spec["holderIdentity"] == "replica-a", spec
        return renewed is not None and (renewed - seen_wall).total_seconds() > horizon

    wait_for("replica-a to renew past a lease duration", renewed_past_horizon, timeout=horizon + 15, interval=0.5)
    assert b.said("leader replica-b") is None, b.output()
    before = spec_of(cp, namespace, lease)
    assert before["leaseTransitions"] == 0 and before["leaseDurationSeconds"] == 10

    killed = time.monotonic()
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(10)
    last = spec_of(cp, namespace, lease)  # the dead leader's last renewal
    assert last["holderIdentity"] == "replica-a"
    led = b.wait("leader replica-b", timeout=30)
    took = led - killed
    print(f"\nSIGKILL of the leader -> the standby holds the Lease after {took:.1f} s "
          f"(lease {DEFAULTS.lease_duration_s:g} s, retry {DEFAULTS.retry_period_s:g} s)")
    assert took < 15, took
    after = spec_of(cp, namespace, lease)
    assert after["holderIdentity"] == "replica-b" and after["leaseTransitions"] == 1
    # Never before the lease duration had passed since the last renewal (one machine: one wall clock).
    waited = (leader.parse_time(after["acquireTime"]) - leader.parse_time(last["renewTime"])).total_seconds()
    assert waited >= DEFAULTS.lease_duration_s, waited


def test_a_leader_stopped_with_sigterm_releases_and_the_standby_takes_over_at_once(
    controlplane: ControlPlane, spawn: Callable[[str, str], Replica], namespace: str
) -> None:
    cp, lease = controlplane, "release"
    a = spawn("replica-a", lease)
    a.wait("leader replica-a", timeout=30)
    b = spawn("replica-b", lease)
    b.wait("sees replica-a", timeout=30)
    stopped = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    a.wait("released replica-a", timeout=10)
    assert a.proc.wait(10) == 0, a.output()
    led = b.wait("leader replica-b", timeout=30)
    took = led - stopped
    print(f"\nSIGTERM of the leader (release) -> the standby holds the Lease after {took:.1f} s")
    assert took < DEFAULTS.retry_period_s + 2, took  # its next attempt, not a lease duration
    spec = spec_of(cp, namespace, lease)
    assert spec["holderIdentity"] == "replica-b" and spec["leaseDurationSeconds"] == 10
    assert spec["leaseTransitions"] == 1


class CountingApi:
    """The official client's CoordinationV1Api, counting the Lease reads."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.reads = 0

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return self._api.read_namespaced_lease(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def coordination_api(kubeconfig: Path) -> CountingApi:
    from kubernetes import client, config

    return CountingApi(client.CoordinationV1Api(config.new_client_from_config(config_file=str(kubeconfig))))


def until(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """wait_for in a thread, for use inside the event loop the electors run in."""
    return asyncio.to_thread(wait_for, what, probe, timeout, 0.2)


def test_two_electors_racing_for_a_new_lease_one_wins_and_release_hands_over(
    controlplane: ControlPlane, account_kubeconfig: Path, namespace: str
) -> None:
    cp, lease = controlplane, "race"
    apis = [coordination_api(account_kubeconfig) for _ in range(2)]
    electors = [LeaderElector(api=api, config=LeaseConfig(namespace=namespace, name=lease, identity=identity))
                for api, identity in zip(apis, ("racer-1", "racer-2"), strict=True)]

    async def run() -> float:
        tasks = [asyncio.create_task(elector.acquire()) for elector in electors]
        done, pending = await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "neither elector acquired the Lease"
        (winner,) = [e for e, t in zip(electors, tasks, strict=True) if t in done]
        (loser,) = [e for e in electors if e is not winner]
        (waiting,) = pending
        # The loser has read the winner's record and keeps waiting through the winner's renewals.
        holding = asyncio.create_task(winner.hold())
        await until("the loser to see the winner", lambda: loser.holder == winner.config.identity, 15)
        renewed = spec_of(cp, namespace, lease)["renewTime"]
        await until("a renewal", lambda: spec_of(cp, namespace, lease)["renewTime"] != renewed, 15)
        assert not waiting.done() and not loser.is_leader and winner.is_leader
        holding.cancel()
        released = time.monotonic()
        await winner.release()
        assert not winner.is_leader
        await asyncio.wait_for(waiting, 15)
        return time.monotonic() - released

    took = asyncio.run(run())
    print(f"\nrelease() -> the other elector holds the Lease after {took:.1f} s")
    assert took < DEFAULTS.retry_period_s + 2, took
    spec = spec_of(cp, namespace, lease)
    assert spec["holderIdentity"] in ("racer-1", "racer-2") and spec["leaseTransitions"] == 1


def test_renewals_do_not_read_and_a_stolen_lease_ends_hold(
    controlplane: ControlPlane, account_kubeconfig: Path, namespace: str
) -> None:
    cp, lease = controlplane, "stolen"
    api = coordination_api(account_kubeconfig)
    elector = LeaderElector(api=api, config=LeaseConfig(namespace=namespace, name=lease, identity="victim"))

    async def run() -> float:
        await elector.acquire()
        reads = api.reads
        holding = asyncio.create_task(elector.hold())
        renewals: set[str] = set()

        def renewed_three_times() -> bool:
            renewals.add(spec_of(cp, namespace, lease)["renewTime"])
            return len(renewals) >= 4

        await until("three renewals", renewed_three_times, 20)
        assert api.reads == reads, "the leader read the Lease before renewing"
        now = leader.format_time(datetime.now(UTC))
        stolen = time.monotonic()
        cp.kubectl("patch", "lease", lease, "-n", namespace, "--type=merge", "-p", json.dumps(
            {"spec": {"holderIdentity": "thief", "acquireTime": now, "renewTime": now}}))
        await asyncio.wait_for(holding, 15)
        took = time.monotonic() - stolen
        # Its next renewal got a 409 (stale resourceVersion); it read the Lease once and saw the thief.
        assert api.reads == reads + 1, api.reads - reads
        return took

    took = asyncio.run(run())
    print(f"\na stolen Lease -> hold() returned after {took:.1f} s")
    assert took < DEFAULTS.renew_period_s + 3, took
    assert not elector.is_leader and elector.holder == "thief"
    assert spec_of(cp, namespace, lease)["holderIdentity"] == "thief"
