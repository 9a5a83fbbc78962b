"""The e2e world: `serveplane dev up` as a user runs it (control plane, a real node with containerd, kubelet,
kube-proxy and CoreDNS, serveplane installed by its chart, the examples Ready), shared by every e2e test, and
`serveplane dev down` at the end, after which nothing of the node may be left on the machine."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from trialkit import Trial, serveplane

from serveplane.localcluster import nodeclean
from serveplane.localcluster.nodeconfig import NodeLayout
from serveplane.localcluster.stack import Stack

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here runs on the real node, whose control plane and Ray pods `serveplane dev up` starts: `e2e`,
    # and also `controlplane` and `ray`, so `-m "not controlplane"` and `-m "not ray"` leave these out too.
    # (A conftest's collection hook sees every item of the session, not just its folder's: hence the path test.)
    for item in items:
        if HERE in item.path.resolve().parents:
            for marker in (pytest.mark.e2e, pytest.mark.controlplane, pytest.mark.ray):
                item.add_marker(marker)


@pytest.fixture(scope="session")
def trial(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Trial]:
    state = tmp_path_factory.mktemp("trial") / "dev"
    env = {**os.environ, "SERVEPLANE_DEV_STATE_DIR": str(state)}
    up = serveplane(env, "dev", "up")
    # Each set-up step's time, for the CI log (past pytest's capture).
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        for line in up.stderr.splitlines():
            if line.startswith("[serveplane.localcluster]") or line.startswith("dev up took"):
                sys.stderr.write(f"\n{line}")
        sys.stderr.write("\n")
    node_state = state / "node" / "node.json"
    before = json.loads(node_state.read_text())["before"] if node_state.exists() else None
    try:
        assert up.returncode == 0, f"dev up failed:\n{up.stderr[-5000:]}"
        yield Trial(up, Stack.attach(state), env)
    finally:
        down = serveplane(env, "dev", "down", timeout=300)
        assert down.returncode == 0, down.stderr[-3000:]
        if before is not None:
            left = nodeclean.leftovers(NodeLayout(state / "node"), nodeclean.HostState.from_json(before))
            assert not left, "dev down left these behind:\n" + "\n".join(left)
