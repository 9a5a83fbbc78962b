"""Leader election between operator replicas against the real API server (no Ray: the e2e journey adds that).

One replica leads and reconciles, the other watches and waits; kill -9 the leader and the standby takes over
within a lease duration; a leader stopped cleanly hands over at once.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from serveplane.localcluster import audit
from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import ACCOUNT, NAMESPACE, OperatorProcess, election_env, install
from serveplane.localcluster.testkit import get_object, head_pod, wait_for, worker_pods

LEASE = "serveplane-operator"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"


def leading(proc: OperatorProcess) -> bool:
    with urllib.request.urlopen(proc.metrics_url, timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("serveplane_leader "):
                return float(line.split()[1]) == 1
    return False


def holder(cp: ControlPlane) -> str:
    lease = get_object(cp, "lease", LEASE, NAMESPACE) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@pytest.fixture
def replicas(controlplane: ControlPlane, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    install(controlplane)
    procs = [OperatorProcess(controlplane, tmp_path / name, env=election_env(name)) for name in ("op-a", "op-b")]
    procs[0].start()
    wait_for("op-a to lead", lambda: leading(procs[0]), timeout=30)
    procs[1].start()
    yield procs
    for proc in procs:
        proc.stop()
        proc.assert_clean()


def cluster(namespace: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "serveplane.dev/v1alpha1",
            "kind": "ServeCluster",
            "metadata": {"name": "demo", "namespace": namespace},
            "spec": {},
        }
    )


def test_only_the_leader_reconciles_and_a_killed_one_is_replaced(
    controlplane: ControlPlane, replicas: list[OperatorProcess], namespace: str
) -> None:
    cp = controlplane
    a, b = replicas
    assert holder(cp) == "op-a"
    assert not leading(b)
    cp.kubectl("apply", "-f", "-", input=cluster(namespace))
    wait_for("the leader to create the head pod", lambda: head_pod(cp, "demo", namespace))
    assert a.pid is not None
    os.killpg(a.pid, signal.SIGKILL)
    killed = time.monotonic()
    # A change while nobody leads: the new leader must act on it.
    cp.kubectl(
        "patch",
        "scl",
        "demo",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"workerGroups": [{"name": "cpu", "replicas": 1}]}}),
    )
    wait_for("op-b to lead", lambda: leading(b), timeout=30, interval=0.2)
    takeover = time.monotonic() - killed
    print(f"\nkill -9 of the leader -> standby leading in {takeover:.1f} s")
    assert takeover < 15
    assert holder(cp) == "op-b"
    wait_for("the new leader to apply the change", lambda: worker_pods(cp, "demo", namespace, "cpu"))


def test_a_leader_stopped_cleanly_hands_over_at_once(
    controlplane: ControlPlane, replicas: list[OperatorProcess]
) -> None:
    a, b = replicas
    started = time.monotonic()
    a.stop()
    wait_for("op-b to lead", lambda: leading(b), timeout=30, interval=0.2)
    handover = time.monotonic() - started
    print(f"\nclean stop of the leader -> standby leading in {handover:.1f} s")
    assert handover < 6, "a released lease is taken at the standby's next retry, not after a lease duration"


def test_a_leader_whose_lease_is_taken_steps_back_and_renewals_never_read(
    controlplane: ControlPlane, replicas: list[OperatorProcess]
) -> None:
    cp = controlplane
    a, b = replicas
    b.stop()  # the replicas share one account: alone, the leader's requests are the only ones on the Lease
    since = time.time()
    wait_for("a few renewals", lambda: len(lease_requests(cp, since)) >= 3, timeout=30)
    verbs = {r.verb for r in lease_requests(cp, since)}
    assert verbs == {"update"}, f"a holder renews with its last resourceVersion and never reads first: {verbs}"
    lease = get_object(cp, "lease", LEASE, NAMESPACE)
    assert lease is not None
    lease["spec"]["holderIdentity"] = "someone-else"
    lease["spec"]["leaseDurationSeconds"] = 60
    cp.kubectl("replace", "-f", "-", input=json.dumps(lease))
    try:
        # Reconciling beside another leader is what must never happen: the old leader stops, and waits as a standby.
        wait_for("the old leader to stop reconciling", lambda: not leading(a), timeout=30, interval=0.2)
        assert holder(cp) == "someone-else"
        assert not a.exited(), "it stays up, watching, to lead again later"
    finally:
        cp.kubectl("delete", "lease", LEASE, "-n", NAMESPACE)  # later tests' operators must not wait a minute


def lease_requests(cp: ControlPlane, since: float) -> list[audit.Request]:
    return [r for r in audit.select(audit.read(cp.audit_log), user=USER, since=since) if r.resource == "leases"]
