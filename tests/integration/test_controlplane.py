"""Prove the local control plane is a real one: real apiserver, controllers, scheduler, RBAC."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serveplane.localcluster import processes
from serveplane.localcluster.build import kubernetes_version
from serveplane.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def get_json(cp: ControlPlane, *args: str) -> dict:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def exists(cp: ControlPlane, *args: str) -> bool:
    result = cp.kubectl("get", *args, check=False)
    if result.returncode != 0 and "NotFound" not in result.stderr:
        raise AssertionError(result.stderr)
    return result.returncode == 0


@pytest.fixture
def namespace(controlplane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    # No kubelet ever confirms a pod's graceful deletion, so force it, or the
    # namespace would stay Terminating forever.
    controlplane.kubectl("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force", check=False)
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_version_is_the_built_kubernetes(controlplane: ControlPlane) -> None:
    expected = kubernetes_version()
    server = json.loads(controlplane.kubectl("get", "--raw", "/version").stdout)
    assert server["gitVersion"] == expected
    assert (server["major"], server["minor"]) == tuple(expected.lstrip("v").split(".")[:2])
    both = json.loads(controlplane.kubectl("version", "-o", "json").stdout)
    assert both["clientVersion"]["gitVersion"] == expected
    assert both["serverVersion"]["gitVersion"] == expected


def test_namespace_lifecycle_runs_the_real_controllers(controlplane: ControlPlane) -> None:
    cp = controlplane
    name = f"ns-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", name)
    # serviceaccount and root-ca-certificate-publisher controllers fill a new namespace.
    wait_until(lambda: exists(cp, "serviceaccount", "default", "-n", name), what="default ServiceAccount")
    wait_until(lambda: exists(cp, "configmap", "kube-root-ca.crt", "-n", name), what="kube-root-ca.crt")
    cp.kubectl("create", "configmap", "payload", "-n", name, "--from-literal=k=v")

    cp.kubectl("delete", "namespace", name, "--wait=false")
    # The namespace controller must empty it and remove the `kubernetes` finalizer.
    wait_until(lambda: not exists(cp, "namespace", name), what=f"namespace {name} to be finalized")


def test_garbage_collector_deletes_orphaned_dependents(controlplane: ControlPlane, namespace: str) -> None:
    cp = controlplane
    cp.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = get_json(cp, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    cp.kubectl("create", "-f", "-", input=json.dumps(dependent))
    assert exists(cp, "configmap", "dependent", "-n", namespace)

    # Background cascade: the API server removes only the owner; the
    # dependent goes only if the controller-manager's garbage collector runs.
    cp.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=background")
    wait_until(lambda: not exists(cp, "configmap", "dependent", "-n", namespace), what="dependent to be collected")


def test_scheduler_binds_pod_to_node(controlplane: ControlPlane, namespace: str) -> None:
    cp = controlplane
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "main", "image": "example.invalid/sleeper:1",
                    "resources": {"requests": {"cpu": "2", "memory": "1Gi"}},
                }
            ]
        },
    }
    cp.kubectl("create", "-f", "-", input=json.dumps(pod))

    def scheduled() -> bool:
        return bool(get_json(cp, "pod", "sleeper", "-n", namespace)["spec"].get("nodeName"))

    wait_until(scheduled, what="pod to be scheduled")
    obj = get_json(cp, "pod", "sleeper", "-n", namespace)
    assert obj["spec"]["nodeName"] == "node-1"
    conditions = {c["type"]: c["status"] for c in obj["status"].get("conditions", [])}
    assert conditions.get("PodScheduled") == "True"
    # The ServiceAccount admission plugin mounted the default SA's token volume.
    assert obj["spec"]["serviceAccountName"] == "default"


def test_service_account_kubeconfig_obeys_rbac(controlplane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    cp = controlplane
    cp.kubectl("create", "serviceaccount", "operator", "-n", namespace)
    cp.kubectl("create", "configmap", "data", "-n", namespace)
    kubeconfig = cp.create_service_account_kubeconfig(namespace, "operator", tmp_path / "sa.kubeconfig")

    whoami = json.loads(cp.kubectl("auth", "whoami", "-o", "json", as_kubeconfig=kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:operator"

    denied = cp.kubectl("get", "configmaps", "-n", namespace, check=False, as_kubeconfig=kubeconfig)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    cp.kubectl("create", "role", "read-cm", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    cp.kubectl(
        "create", "rolebinding", "read-cm", "-n", namespace, "--role=read-cm",
        f"--serviceaccount={namespace}:operator",
    )

    def allowed() -> bool:
        done = cp.kubectl("get", "configmap", "data", "-n", namespace, check=False, as_kubeconfig=kubeconfig)
        return done.returncode == 0

    wait_until(allowed, timeout=30, what="RoleBinding to take effect")
    # Still nothing beyond what the Role grants.
    other = cp.kubectl("get", "secrets", "-n", namespace, check=False, as_kubeconfig=kubeconfig)
    assert other.returncode != 0 and "forbidden" in other.stderr.lower()


def _dev(state_dir: Path, call: str) -> subprocess.CompletedProcess:
    # A separate interpreter, like the `serveplane dev` command, so the test
    # sees whether the processes outlive the command that started them.
    code = f"from serveplane.localcluster import devenv; devenv.{call}"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=state_dir.parent, capture_output=True, text=True, check=True
    )


def test_dev_up_is_detached_idempotent_and_down_cleans_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    first = _dev(state_dir, f"up({str(state_dir)!r}, node_names=['node-1', 'node-2'])")
    assert f"export KUBECONFIG={state_dir.resolve() / 'admin.kubeconfig'}" in first.stdout
    pids: dict[str, int] = {}
    try:
        cp = ControlPlane.attach(state_dir)
        assert cp.healthy(), "the control plane died with the command that started it"
        pids = dict(cp.pids)
        names = {n["metadata"]["name"] for n in get_json(cp, "nodes")["items"]}
        assert names == {"node-1", "node-2"}

        second = _dev(state_dir, f"up({str(state_dir)!r})")
        assert "already running" in second.stderr
        assert ControlPlane.attach(state_dir).pids == pids

        listed = _dev(state_dir, f"kubectl(['get', 'nodes', '-o', 'name'], {str(state_dir)!r})")
        assert "node/node-2" in listed.stdout
    finally:
        _dev(state_dir, f"down({str(state_dir)!r})")
    assert not state_dir.exists()
    assert not any(processes.is_alive(pid) for pid in pids.values())
