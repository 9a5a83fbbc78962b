"""`serveplane dev up|down`: the whole product on one machine, for a person to try.

A real control plane, the node runner playing the kubelet, the operator under its own ServiceAccount, real
Ray in every pod, and the examples applied; `up` ends by printing the curl lines that reach the example
applications. Everything keeps running after `up` returns; `down` stops and removes it all.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import devenv, processes
from .controlplane import ControlPlane
from .noderunner.launcher import NodeRunnerProcess
from .operatorproc import REPO, OperatorProcess, install

EXAMPLES = REPO / "examples"
EXAMPLE_FILES = ("cluster.yaml", "hello.yaml", "composed.yaml")
PIDS = "trial.json"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pids(directory: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads((directory / PIDS).read_text()).items()}
    except (FileNotFoundError, ValueError):
        return {}


def _running(pid: int | None, marker: str) -> bool:
    """True if `pid` is alive and still ours (its command line names `marker`), never some reused pid."""
    if not pid or not processes.is_alive(pid):
        return False
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def up(state_dir: Path | str | None = None) -> None:
    directory = devenv.default_state_dir() if state_dir is None else Path(state_dir)
    cp = devenv.up(directory)
    trial = directory / "trial"
    trial.mkdir(parents=True, exist_ok=True)
    pids = _pids(trial)
    if not _running(pids.get("noderunner"), "noderunner"):
        runner = NodeRunnerProcess(cp.kubeconfig, list(cp.node_names), trial / "noderunner", detach=True).start()
        pids["noderunner"] = runner._proc.pid if runner._proc else 0
        _say(f"node runner started; pod logs in {runner.state_dir / 'pods'}")
    install(cp)
    if not _running(pids.get("operator"), "operator"):
        operator = OperatorProcess(cp, trial / "operator", detach=True).start()
        pids["operator"] = operator.pid or 0
        _say(f"operator started as ServiceAccount serveplane-system/serveplane-operator; log {operator.log_path}")
    (trial / PIDS).write_text(json.dumps(pids))
    _apply_examples(cp)
    _print_access(cp, directory)


def _apply_examples(cp: ControlPlane) -> None:
    for name in EXAMPLE_FILES:
        cp.kubectl("apply", "-n", "default", "-f", str(EXAMPLES / name))
    _say("examples applied; waiting for them to be Ready (about a minute on a 2-core machine)")
    start = time.monotonic()
    cp.kubectl(
        "wait", "-n", "default", "--for=condition=Ready", "--timeout=600s",
        "scl/demo", "sapp/hello", "sapp/composed", "sdep/composed-model",
    )
    _say(f"Ready after {time.monotonic() - start:.0f} s")


def _print_access(cp: ControlPlane, directory: Path) -> None:
    slices = json.loads(
        cp.kubectl(
            "get", "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=demo-serve", "-o", "json"
        ).stdout
    )["items"]
    ips = sorted(
        a
        for s in slices
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for a in e["addresses"]
    )
    print(f"export KUBECONFIG={cp.kubeconfig}")
    print("# the serve Service's endpoints (pods whose Serve proxy is healthy):")
    for ip in ips:
        print(f"curl http://{ip}:8000/hello/")
        print(f"curl 'http://{ip}:8000/composed/predict?x=3'")
    print("# then, e.g.: serveplane dev kubectl get serveplane; "
          "serveplane dev kubectl scale sdep/composed-model --replicas=3")
    print(f"# stop everything: serveplane dev down   (state in {directory})")


def down(state_dir: Path | str | None = None) -> None:
    directory = devenv.default_state_dir() if state_dir is None else Path(state_dir)
    pids = _pids(directory / "trial")
    # The operator first, so it recreates no pod while the node runner stops them all.
    if _running(pids.get("operator"), "operator"):
        processes.stop_groups([pids["operator"]], grace=20)
        _say("operator stopped")
    if _running(pids.get("noderunner"), "noderunner"):
        processes.stop_groups([pids["noderunner"]], grace=90)
        _say("node runner stopped; its pods' processes are gone")
    devenv.down(directory)
