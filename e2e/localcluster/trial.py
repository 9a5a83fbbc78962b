"""`serveplane dev up|down`: the whole product on one machine, for a person to try.

A real control plane, a real node (containerd, kubelet, kube-proxy, CoreDNS), serveplane installed by its Helm
chart from the images built from its Dockerfiles, real Ray in every pod, and the examples applied; `up` ends by
printing the curl lines that reach the example applications through the serve Service's ClusterIP (kube-proxy)
and through each Serve proxy's pod IP. Everything keeps running after `up` returns; `down` stops and removes it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import devenv
from .controlplane import ControlPlane
from .operatorproc import REPO
from .stack import Stack, timed
from .testkit import head_pod_name, ray_pod_selector

EXAMPLES = REPO / "examples"
EXAMPLE_FILES = ("cluster.yaml", "hello.yaml", "composed.yaml")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _running(directory: Path) -> Stack | None:
    try:
        stack = Stack.attach(directory)
    except (FileNotFoundError, ValueError):
        return None
    return stack if stack.healthy() else None


def up(state_dir: Path | str | None = None) -> Stack:
    directory = devenv.default_state_dir() if state_dir is None else Path(state_dir)
    started = time.monotonic()
    stack = _running(directory)
    if stack is not None:
        _say(f"control plane and node already running at {stack.cp.server_url}")
    else:
        # Whatever is left of an unhealthy earlier instance would hold the bridge, ports and state: clear it first.
        down(directory, quiet=True)
        stack = Stack(directory, detach=True).start()
    timed("examples applied and Ready", lambda: _apply_examples(stack.cp))
    _say(f"dev up took {time.monotonic() - started:.0f} s")
    _print_access(stack.cp, directory)
    return stack


def _apply_examples(cp: ControlPlane) -> None:
    for name in EXAMPLE_FILES:
        cp.kubectl("apply", "-n", "default", "-f", str(EXAMPLES / name))
    cp.kubectl(
        "wait", "-n", "default", "--for=condition=Ready", "--timeout=600s",
        "scl/demo", "sapp/hello", "sapp/composed", "sdep/composed-model",
    )


def serve_endpoints(cp: ControlPlane, namespace: str, service: str) -> list[str]:
    """The pod IPs the Service routes to now (ready endpoints), as kube-proxy does."""
    slices = json.loads(
        cp.kubectl(
            "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}", "-o", "json"
        ).stdout
    )["items"]
    return sorted(
        a
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for a in e["addresses"]
    )


def _print_access(cp: ControlPlane, directory: Path) -> None:
    cluster_ip = cp.kubectl("get", "service", "demo-serve", "-n", "default", "-o", "jsonpath={.spec.clusterIP}").stdout
    print(f"export KUBECONFIG={cp.kubeconfig}")
    print("# through the serve Service's ClusterIP (kube-proxy spreads it over the healthy Serve proxies):")
    print(f"curl http://{cluster_ip}:8000/hello/")
    print(f"curl 'http://{cluster_ip}:8000/composed/predict?x=3'")
    print("# through each Serve proxy (the pod IPs behind the serve Service):")
    for ip in serve_endpoints(cp, "default", "demo-serve"):
        print(f"curl http://{ip}:8000/hello/")
    # The head's name carries its generation's hash (it changes with an upgrade): the one running now.
    head = head_pod_name(cp, "demo", "default")
    print(f"# then, e.g.: serveplane dev kubectl get serveplane; serveplane dev kubectl logs {head}; "
          f"serveplane dev kubectl exec {head} -- ray status")
    print(f"# the demo cluster's Ray pods: serveplane dev kubectl get pods -l {ray_pod_selector('demo')}")
    print(f"# stop everything: serveplane dev down   (state in {directory})")


def down(state_dir: Path | str | None = None, *, quiet: bool = False) -> None:
    directory = devenv.default_state_dir() if state_dir is None else Path(state_dir)
    try:
        stack = Stack.attach(directory)
    except (FileNotFoundError, ValueError):
        stack = None
    if stack is not None:
        stack.stop()
        if not quiet:
            _say("node and control plane stopped; nothing of them is left on the machine")
    devenv.down(directory, quiet=quiet or stack is not None)
