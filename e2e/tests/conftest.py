"""The e2e world: the local control plane, a node runner that runs pods as real processes, and the operator
running as its own ServiceAccount. Everything is stopped at the end, and nothing may be left running."""
from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.noderunner.launcher import NodeRunnerProcess
from serveplane.localcluster.operatorproc import OperatorProcess, install


def ray_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (a pod's state dir or a Ray temp dir)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


@pytest.fixture(scope="session")
def leftovers() -> Callable[[str], list[str]]:
    return ray_processes


@pytest.fixture(scope="session")
def noderunner(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunnerProcess]:
    runner = NodeRunnerProcess(controlplane.kubeconfig, ["node-1"], tmp_path_factory.mktemp("noderunner"))
    with runner:
        yield runner
    leftovers = ray_processes(str(runner.state_dir))
    assert not leftovers, "processes outlived the node runner:\n" + "\n".join(leftovers)


@pytest.fixture(scope="session")
def operator_process(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    install(controlplane)
    with OperatorProcess(controlplane, tmp_path_factory.mktemp("e2e-operator")) as proc:
        yield proc
    proc.assert_clean()
