"""The e2e world: the local control plane, a node runner that runs pods as real processes, and the operator
running as its own ServiceAccount. Everything is stopped at the end, and nothing may be left running."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.noderunner.launcher import NodeRunnerProcess
from serveplane.localcluster.noderunner.procs import marked_pids
from serveplane.localcluster.operatorproc import OperatorProcess, election_env, install


def pod_processes(instance: int) -> list[str]:
    """Command lines of live processes started for pods by node runner `instance`.

    The runner marks every container's environment, and Ray's own processes (raylet, GCS, workers, Serve
    replicas) inherit it, so this finds them all, however they were spawned.
    """
    lines = []
    for pid in marked_pids(f"{instance}/"):
        try:
            lines.append(f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return lines


@pytest.fixture(scope="session")
def leftovers() -> Callable[[int], list[str]]:
    return pod_processes


@pytest.fixture(scope="session")
def noderunner(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunnerProcess]:
    runner = NodeRunnerProcess(controlplane.kubeconfig, ["node-1"], tmp_path_factory.mktemp("noderunner"))
    with runner:
        yield runner
    left = pod_processes(int(runner.info["instance"]))
    assert not left, "processes outlived the node runner:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def operator_process(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    install(controlplane)
    # Under leader election, as the chart runs it: the journey kills this leader and lets standbys take over.
    with OperatorProcess(controlplane, tmp_path_factory.mktemp("e2e-operator"), env=election_env("operator-a")) as proc:
        yield proc
    proc.assert_clean()
