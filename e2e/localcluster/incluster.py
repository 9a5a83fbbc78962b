"""The operator as its chart runs it on the real node, seen from outside: its pods, the leader, its metrics, its
logs, and a way to kill a replica outright (SIGKILL to its process, from the host, as the kernel's OOM killer or a
crash would).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import urllib.request
from typing import Any

from .controlplane import ControlPlane
from .node import Node
from .operatorproc import NAMESPACE

RELEASE = "serveplane"
SELECTOR = "app.kubernetes.io/name=serveplane"
ACCOUNT = RELEASE
USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
LEASE = "serveplane-operator"


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples (with these labels) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


class ChartOperator:
    def __init__(self, cp: ControlPlane, node: Node) -> None:
        self.cp, self.node = cp, node
        # Windows (UTC) in which the test itself broke the API server: log lines from them are excused.
        self._excused: list[tuple[datetime.datetime, datetime.datetime]] = []

    def pods(self) -> list[dict[str, Any]]:
        out = self.cp.kubectl("get", "pods", "-n", NAMESPACE, "-l", SELECTOR, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def leader_name(self) -> str | None:
        """The Lease's holder, as every replica reads it."""
        result = self.cp.kubectl(
            "get", "lease", LEASE, "-n", NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}", check=False
        )
        return result.stdout.strip() or None

    def pod(self, name: str) -> dict[str, Any]:
        return next(p for p in self.pods() if p["metadata"]["name"] == name)

    def metrics_text(self, name: str) -> str:
        ip = self.pod(name)["status"]["podIP"]
        with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10) as answer:
            text: str = answer.read().decode()
        return text

    def metric(self, name: str, metric: str, **labels: str) -> float:
        return metric_sum(self.metrics_text(name), metric, **labels)

    def leading(self, name: str) -> bool:
        try:
            return self.metric(name, "serveplane_leader") == 1
        except OSError:
            return False

    def host_pid(self, name: str) -> int:
        """The host's pid of the replica's main process (its container's task in containerd)."""
        status = self.pod(name)["status"]["containerStatuses"][0]
        container_id = status["containerID"].split("://", 1)[1]
        tasks = self.node.ctr("tasks", "list").stdout.splitlines()[1:]
        return next(int(line.split()[1]) for line in tasks if line.split()[0] == container_id)

    def kill(self, name: str) -> None:
        """SIGKILL the replica's process from the host; the kubelet restarts its container (a crash)."""
        os.kill(self.host_pid(name), signal.SIGKILL)

    def restarts(self) -> dict[str, int]:
        return {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in self.pods()}

    def excuse(self, start: datetime.datetime, end: datetime.datetime) -> None:
        self._excused.append((start, end))

    def _lines(self, name: str, previous: bool) -> list[tuple[datetime.datetime, str]]:
        args = ["logs", "-n", NAMESPACE, name, "--timestamps", *(["--previous"] if previous else [])]
        result = self.cp.kubectl(*args, check=False)
        lines = []
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            stamp, _, text = line.partition(" ")
            when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            lines.append((when, text))
        return lines

    def problems(self) -> list[str]:
        """Log lines of every replica (and of containers killed before) that show an RBAC denial or a failed
        reconcile, outside the excused windows."""
        found = []
        for pod in self.pods():
            name = pod["metadata"]["name"]
            for previous in (False, True):
                for when, text in self._lines(name, previous):
                    if any(start <= when <= end for start, end in self._excused):
                        continue
                    if "Forbidden" in text or " 403" in text or "Traceback" in text:
                        found.append(f"{name}: {text}")
        return found


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
