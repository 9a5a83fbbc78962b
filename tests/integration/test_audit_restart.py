"""The local control plane's audit log (who did what, as the API server saw it) and restarts of its components."""

from __future__ import annotations

import functools
import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from serveplane.localcluster import audit, processes
from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.testkit import wait_for

pytestmark = pytest.mark.controlplane


def _new_namespace(cp: ControlPlane) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def namespace(controlplane: ControlPlane) -> Iterator[str]:
    name = _new_namespace(controlplane)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_audit_log_shows_a_service_account_s_requests(
    controlplane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = controlplane
    user = f"system:serviceaccount:{namespace}:auditee"
    cp.kubectl("create", "serviceaccount", "auditee", "-n", namespace)
    cp.kubectl("create", "configmap", "data", "-n", namespace, "--from-literal=k=v")
    started = time.time()
    # A real token from the TokenRequest API, not admin impersonating (--as) the account.
    as_sa = functools.partial(
        cp.kubectl, as_kubeconfig=cp.create_service_account_kubeconfig(namespace, "auditee", tmp_path / "sa.kubeconfig")
    )
    assert as_sa("get", "configmap", "data", "-n", namespace, check=False).returncode != 0

    cp.kubectl("create", "role", "cm", "-n", namespace, "--verb=get,list,watch", "--resource=configmaps")
    cp.kubectl("create", "rolebinding", "cm", "-n", namespace, "--role=cm", f"--serviceaccount={namespace}:auditee")
    wait_for(
        "the RoleBinding to take effect",
        lambda: as_sa("auth", "can-i", "watch", "configmaps", "-n", namespace, check=False).returncode == 0,
        timeout=30,
    )
    granted = time.time()
    as_sa("get", "configmap", "data", "-n", namespace)
    as_sa("get", "configmaps", "-n", namespace)
    # A watch the server ends after a second: its one ResponseComplete event is logged then.
    as_sa("get", "--raw", f"/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=1")
    done = time.time()

    def watch_logged() -> list[audit.Request]:
        requests = audit.read(cp.audit_log)
        watches = audit.select(requests, user=user, since=granted)
        return requests if any(r.verb == "watch" for r in watches) else []

    requests = wait_for("the watch in the audit log", watch_logged, timeout=10, interval=0.2)

    mine = [r for r in audit.select(requests, user=user, since=started) if r.resource == "configmaps"]
    denied, get, listed, watch = mine
    assert (denied.verb, denied.namespace, denied.name, denied.code) == ("get", namespace, "data", 403)
    assert (get.verb, get.namespace, get.name, get.code) == ("get", namespace, "data", 200)
    assert (listed.verb, listed.namespace, listed.name, listed.code) == ("list", namespace, "", 200)
    assert (watch.verb, watch.namespace, watch.name, watch.code) == ("watch", namespace, "", 200)
    assert all(r.group == "" and r.subresource == "" for r in mine)
    assert "watch=true" in watch.uri and started <= denied.time.timestamp() <= done

    def resource_calls(counter: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        # Leave out kubectl's discovery (GET /api, /apis), which its cache may or may not answer.
        return {key: n for key, n in counter.items() if not key[1].startswith("/")}

    calls = audit.count(requests, user=user, since=granted)
    assert resource_calls(calls) == {("get", "configmaps"): 1, ("list", "configmaps"): 1}
    assert resource_calls(audit.count(requests, user=user, since=granted, exclude_verbs=())) == {
        ("get", "configmaps"): 1, ("list", "configmaps"): 1, ("watch", "configmaps"): 1,
    }
    before = resource_calls(audit.count(requests, user=user, since=started, until=granted))
    # The denied get, then `kubectl auth can-i` polls until the binding took effect.
    assert before.pop(("get", "configmaps")) == 1
    assert before.pop(("create", "selfsubjectaccessreviews")) >= 1 and not before
    # The token itself was asked for by the admin, on the account's `token` subresource.
    tokens = [
        r for r in audit.select(requests, user="admin", since=started)
        if (r.verb, r.target, r.namespace, r.name) == ("create", "serviceaccounts/token", namespace, "auditee")
    ]
    assert len(tokens) == 1 and tokens[0].code == 201


# -- restarts -----------------------------------------------------------------------------------------------------


@pytest.fixture
def own_controlplane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own: restarting the session's would disturb every other test."""
    with ControlPlane(tmp_path / "cp", node_names=["node-1"]) as cp:
        yield cp


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _await_line(lines: queue.Queue[str], wanted: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line == wanted:
            return
        seen.append(line)
    raise AssertionError(f"{wanted!r} not printed by the watch within {timeout:.0f}s; it printed {seen}")


def _assert_still_works(cp: ControlPlane, namespace: str, step: str) -> None:
    assert cp.healthy(), f"after {step}"
    # The state file follows the new pid.
    assert ControlPlane.attach(cp.state_dir).pids == cp.pids
    # The data survived.
    data = json.loads(cp.kubectl("get", "configmap", "survivor", "-n", namespace, "-o", "json").stdout)["data"]
    assert data == {"k": "v"}, f"after {step}"
    # A new watch through the API server sees a write made after it started.
    watch = subprocess.Popen(
        [
            str(cp.binary), "kubectl", f"--kubeconfig={cp.kubeconfig}", f"--cache-dir={cp.layout.kubectl_cache}",
            "get", "configmaps", "-n", namespace, "--watch", "-o", "name",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        lines = _lines(watch)
        _await_line(lines, "configmap/survivor")
        cp.kubectl("create", "configmap", f"after-{step}", "-n", namespace)
        _await_line(lines, f"configmap/after-{step}")
    finally:
        watch.kill()
        watch.wait()
    # The controller-manager's informers (long-lived watches) reconnected and still act on new objects.
    fresh = _new_namespace(cp)
    wait_for(
        f"the controller-manager to fill namespace {fresh} after {step}",
        lambda: cp.kubectl("get", "serviceaccount", "default", "-n", fresh, check=False).returncode == 0,
        timeout=60,
    )


def test_restart_etcd_then_apiserver_keeps_data_and_clients_work(own_controlplane: ControlPlane) -> None:
    cp = own_controlplane
    namespace = _new_namespace(cp)
    cp.kubectl("create", "configmap", "survivor", "-n", namespace, "--from-literal=k=v")
    before = dict(cp.pids)

    cp.restart("etcd")
    assert cp.pids["etcd"] != before["etcd"] and not processes.is_alive(before["etcd"])
    assert {c: p for c, p in cp.pids.items() if c != "etcd"} == {c: p for c, p in before.items() if c != "etcd"}
    _assert_still_works(cp, namespace, "etcd")

    ports = dict(cp.ports)
    restarted = time.time()
    cp.restart("kube-apiserver")
    assert cp.pids["kube-apiserver"] != before["kube-apiserver"] and not processes.is_alive(before["kube-apiserver"])
    assert cp.ports == ports
    _assert_still_works(cp, namespace, "kube-apiserver")
    # The new API server appends to the same audit log.
    assert audit.count(audit.read(cp.audit_log), user="admin", since=restarted)[("create", "configmaps")] == 1

    with pytest.raises(ValueError, match="unknown component"):
        cp.restart("kubelet")
