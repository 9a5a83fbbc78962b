"""Install serveplane's CRDs and RBAC into a control plane and run the operator as its ServiceAccount.

The operator runs as a separate process with a token of its own ServiceAccount, bound to the very rules the
Helm chart ships (helm/serveplane/files/rbac-rules.yaml), so the tests prove that those rules are enough.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from . import processes
from .controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "helm" / "serveplane" / "files" / "rbac-rules.yaml"
# The rules of Ray's autoscaler beside an autoscaling cluster's head, bound per cluster by the operator.
AUTOSCALER_RULES_FILE = RULES_FILE.with_name("autoscaler-rules.yaml")
CRDS_DIR = REPO / "crds"
NAMESPACE = "serveplane-system"
ACCOUNT = "serveplane-operator"


def rbac_objects(namespace: str = NAMESPACE, account: str = ACCOUNT) -> list[dict]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": account},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


def election_env(identity: str) -> dict[str, str]:
    """The environment of one replica under leader election, as the chart sets it (POD_NAME from the pod)."""
    return {
        "SERVEPLANE_LEADER_ELECTION": "true",
        "SERVEPLANE_LEADER_ELECTION_NAMESPACE": NAMESPACE,
        "POD_NAME": identity,
    }


def install(cp: ControlPlane) -> None:
    """Apply the CRDs and wait until they are served, then the operator's namespace, account and RBAC."""
    cp.kubectl("apply", "--server-side", "-f", str(CRDS_DIR))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))
    cp.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(rbac_objects()))


class OperatorProcess:
    """`serveplane operator` as a subprocess, logging to a file; a context manager."""

    def __init__(
        self, cp: ControlPlane, workdir: Path, env: dict[str, str] | None = None, *, detach: bool = False
    ) -> None:
        self.cp = cp
        self.workdir = Path(workdir)
        self.detach = detach
        self.metrics_port = processes.free_port()
        self.health_port = processes.free_port()
        self.log_path = self.workdir / "operator.log"
        self.extra_env = env or {}
        self._excused: list[tuple[int, int]] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60.0) -> OperatorProcess:
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
        self._proc = processes.spawn(
            [str(Path(sys.executable).parent / "serveplane"), "operator"], self.log_path, detach=self.detach, env=env
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

    def log_size(self) -> int:
        """Where the log ends now (bytes): marks for `excuse`."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def excuse(self, start: int, end: int) -> None:
        """Leave the log's bytes [start, end) out of `assert_clean`: a window where the test itself broke the API
        server (a restarted kube-apiserver denies requests until its RBAC caches are filled again)."""
        self._excused.append((start, end))

    def assert_clean(self) -> None:
        """Fail if the operator was ever denied by RBAC or failed a reconcile (its log is the witness)."""
        raw = self.log_path.read_bytes()
        for start, end in sorted(self._excused, reverse=True):
            raw = raw[:start] + raw[end:]
        log = raw.decode(errors="replace")
        assert "Forbidden" not in log and " 403" not in log, "the operator hit RBAC denials:\n" + self.log_tail()
        assert "Traceback" not in log, "the operator failed a reconcile:\n" + self.log_tail(200)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def exited(self) -> bool:
        """The process has ended by itself (it was started and has not been stopped)."""
        return self._proc is not None and self._proc.poll() is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def stop(self, timeout: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            processes.stop_groups([proc.pid], grace=timeout)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
