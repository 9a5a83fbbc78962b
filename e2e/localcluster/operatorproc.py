"""Install serveplane's CRDs and RBAC into a control plane and run the operator as its ServiceAccount.

The operator runs as a separate process with a token of its own ServiceAccount, bound to the very rules the
Helm chart ships (helm/serveplane/files/rbac-rules.yaml), so the tests prove that those rules are enough.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from .controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "helm" / "serveplane" / "files" / "rbac-rules.yaml"
CRDS_DIR = REPO / "crds"
NAMESPACE = "serveplane-system"
ACCOUNT = "serveplane-operator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rbac_objects(namespace: str = NAMESPACE, account: str = ACCOUNT) -> list[dict]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": account}, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


def install(cp: ControlPlane) -> None:
    """Apply the CRDs and wait until they are served, then the operator's namespace, account and RBAC."""
    cp.kubectl("apply", "--server-side", "-f", str(CRDS_DIR))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))
    cp.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(rbac_objects()))


class OperatorProcess:
    """`serveplane operator` as a subprocess, logging to a file; a context manager."""

    def __init__(self, cp: ControlPlane, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.cp = cp
        self.workdir = Path(workdir)
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = self.workdir / "operator.log"
        self.extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60.0) -> "OperatorProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.cp.create_service_account_kubeconfig(NAMESPACE, ACCOUNT, self.workdir / "operator.kubeconfig")
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "SERVEPLANE_METRICS_PORT": str(self.metrics_port),
            "SERVEPLANE_HEALTH_PORT": str(self.health_port),
            "SERVEPLANE_POLL_FAST_S": "1",
            "SERVEPLANE_POLL_SLOW_S": "5",
            "SERVEPLANE_DASHBOARD_TIMEOUT_S": "5",
            **self.extra_env,
        }
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "serveplane"), "operator"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"the operator did not become healthy:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
