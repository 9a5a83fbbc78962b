"""The whole local Kubernetes: the control plane, a real node, cluster DNS, and serveplane installed by its chart.

What `make up` and the e2e suite run on. Each step is timed and printed (a cold machine builds the node's
binaries and images first; later runs reuse them from the cache). The operator runs in-cluster, as its
chart's Deployment, from the image built from helm/Dockerfile.operator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from . import dns, images
from .controlplane import ControlPlane
from .helm import Helm
from .node import Node, primary_address
from .operatorproc import NAMESPACE, REPO

T = TypeVar("T")
CHART = REPO / "helm" / "serveplane"
RELEASE = "serveplane"


def _say(message: str) -> None:
    print(f"[serveplane.localcluster] {message}", file=sys.stderr, flush=True)


def timed(what: str, run: Callable[[], T]) -> T:
    started = time.monotonic()
    result = run()
    _say(f"{what}: {time.monotonic() - started:.1f} s")
    return result


class Stack:
    """Start with `start()` (or as a context manager); `stop()` undoes everything, `attach()` finds it again."""

    def __init__(self, state_dir: Path, *, detach: bool = False, operator_values: tuple[str, ...] = ()) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.detach = detach
        self.operator_values = operator_values
        # The control plane's files at the top (so `serveplane dev kubectl` finds it), the node's and helm's below.
        self.cp = ControlPlane(self.state_dir, node_names=(), node_address=primary_address(), detach=detach)
        self.node: Node | None = None
        self.helm: Helm | None = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        built = timed("node binaries and images (built or found in the cache)", images.ensure_images)
        timed("control plane", self.cp.start)
        try:
            archives = [image.path for image in built]
            self.node = Node(self.cp, self.state_dir / "node", images=archives, detach=self.detach)
            timed("node (containerd, kubelet, kube-proxy)", self.node.start)
            timed("cluster DNS (CoreDNS)", lambda: dns.install(self.cp, images.COREDNS))
            self.helm = Helm(self.cp, self.state_dir / "helm")
            timed("operator (helm install)", self.install_operator)
        except BaseException:
            self.stop()
            raise
        return self

    def install_operator(self) -> None:
        assert self.helm is not None
        self.helm(
            "upgrade", "--install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
            "--wait", "--timeout", "5m", *self.operator_values,
        )

    def operator_pods(self) -> list[dict[str, object]]:
        out = self.cp.kubectl(
            "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=serveplane", "-o", "json"
        ).stdout
        items: list[dict[str, object]] = json.loads(out)["items"]
        return items

    def healthy(self) -> bool:
        return self.cp.healthy() and self.node is not None and self.node.running()

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        self.cp.stop(remove_state=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.state_dir)], capture_output=True)

    @classmethod
    def attach(cls, state_dir: Path) -> Stack:
        """The stack an earlier `start()` (maybe another process) left in ``state_dir``."""
        stack = cls.__new__(cls)
        stack.state_dir = Path(state_dir).resolve()
        stack.detach = True
        stack.operator_values = ()
        stack.cp = ControlPlane.attach(stack.state_dir)
        try:
            stack.node = Node.attach(stack.cp, stack.state_dir / "node")
        except FileNotFoundError:
            stack.node = None
        stack.helm = Helm(stack.cp, stack.state_dir / "helm")
        return stack
