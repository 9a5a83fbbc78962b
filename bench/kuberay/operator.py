"""KubeRay's operator as a host process against the local control plane, under its own ServiceAccount.

The CRDs and RBAC come from the module's config/ (what its kustomize base applies), with the namespace kustomize
would fill in; the process gets a token kubeconfig for the ServiceAccount, so the API server's audit log tells
its requests apart from the bench's own (admin) kubectl calls, and it runs with exactly KubeRay's permissions.
Its HTTP requests to Ray go through the counting proxy (httpproxy.py), which also resolves cluster names.
"""
from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from serveplane.localcluster import processes
from serveplane.localcluster.controlplane import ControlPlane

from .build import KubeRay
from .httpproxy import CountingProxy

NAMESPACE = "kuberay-system"
ACCOUNT = "kuberay-operator"
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
CRDS = ("rayclusters.ray.io", "rayservices.ray.io", "rayjobs.ray.io")
CLUSTER_SCOPED = frozenset({"ClusterRole", "ClusterRoleBinding"})


def rbac_documents(kuberay: KubeRay, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The module's RBAC objects placed in `namespace`, as its kustomization (namespace: ...) would place them."""
    documents = []
    for path in kuberay.rbac:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
            documents.append(doc)
    return documents


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class HostOperator:
    """install() the CRDs and RBAC, start() the process; stop() ends it (and only it), uninstall() undoes install."""

    def __init__(self, cp: ControlPlane, kuberay: KubeRay, workdir: Path) -> None:
        self.cp, self.kuberay, self.workdir = cp, kuberay, workdir
        self.proxy = CountingProxy()
        self.log = workdir / "ray-operator.log"
        self.pid: int | None = None
        self._proc: Any = None

    def install(self) -> None:
        # The CRDs are ~1 MB each: too big for client-side apply's last-applied annotation.
        for crd in self.kuberay.crds:
            self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        for crd in CRDS:
            self._wait_established(crd)
        if self.cp.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
            self.cp.kubectl("create", "namespace", NAMESPACE)
        items = {"apiVersion": "v1", "kind": "List", "items": rbac_documents(self.kuberay)}
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(items))

    def _wait_established(self, crd: str, timeout: float = 60.0) -> None:
        # Polled, not `kubectl wait`: that fails outright on a CRD so new that it has no conditions yet.
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.cp.kubectl("get", "crd", crd, "-o", f"jsonpath={jsonpath}", check=False).stdout.strip()
            if found == "True":
                return
            time.sleep(0.5)
        raise TimeoutError(f"CRD {crd} not Established after {timeout:.0f} s")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.cp.create_service_account_kubeconfig(NAMESPACE, ACCOUNT, self.workdir / "kubeconfig")
        proxy_port = self.proxy.start()
        metrics, probe = processes.free_port(), processes.free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "KUBECONFIG": str(kubeconfig),
            # Go's http.DefaultTransport: the dashboard and Serve-proxy clients go through the proxy; the API
            # server (loopback) does not.
            "HTTP_PROXY": f"http://127.0.0.1:{proxy_port}",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        argv = [
            str(self.kuberay.binary),
            # As its Deployment runs it (leader election on), in a namespace of our own since it is not in a pod.
            "--enable-leader-election=true", f"--leader-election-namespace={NAMESPACE}",
            # Loopback ports of our choosing: its defaults (:8080, :8082) would bind every address of the host.
            f"--metrics-addr=127.0.0.1:{metrics}", f"--health-probe-bind-address=127.0.0.1:{probe}",
        ]
        self._proc = processes.spawn(argv, self.log, detach=False, env=env, cwd=self.workdir)
        self.pid = self._proc.pid
        self._wait_ready(f"http://127.0.0.1:{probe}/readyz")

    def _wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.pid is not None
            if not processes.is_alive(self.pid):
                raise RuntimeError(f"KubeRay's operator exited:\n{processes.tail(self.log)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"KubeRay's operator not ready after {timeout:.0f} s:\n{processes.tail(self.log)}")

    def rss_mib(self) -> float:
        assert self.pid is not None, "not started"
        return rss_mib(self.pid)

    def alive(self) -> bool:
        return self.pid is not None and processes.is_alive(self.pid)

    def stop(self) -> None:
        if self.pid is not None:
            # Its own session, so its process group is its pid: only what we started is signalled.
            processes.stop_groups([self.pid])
            if self._proc is not None:
                self._proc.wait(timeout=10)
            self.pid = self._proc = None
        self.proxy.stop()

    def uninstall(self) -> None:
        for doc in rbac_documents(self.kuberay):
            if doc["kind"] in CLUSTER_SCOPED:
                self.cp.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found", check=False)
        self.cp.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=120s", check=False)
        for crd in CRDS:
            self.cp.kubectl("delete", "crd", crd, "--ignore-not-found", "--timeout=120s", check=False)
