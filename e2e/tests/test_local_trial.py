"""The README's first command, for real: `serveplane dev up` to curl-able applications, then `dev down`.

It runs in a state directory of its own (SERVEPLANE_DEV_STATE_DIR), beside the suite's own control plane, and
reuses the cached control-plane binary.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from serveplane.localcluster.processes import is_alive

SERVEPLANE = str(Path(sys.executable).parent / "serveplane")
pytestmark = pytest.mark.timeout(900)


def test_dev_up_answers_curl_and_dev_down_leaves_nothing(
    tmp_path: Path, leftovers: Callable[[int], list[str]]
) -> None:
    state = tmp_path / "dev"
    env = {**os.environ, "SERVEPLANE_DEV_STATE_DIR": str(state)}

    def serveplane(*args: str, timeout: float = 700) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SERVEPLANE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path
        )

    trial = state / "trial"
    try:
        up = serveplane("dev", "up")
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"export KUBECONFIG={state}" in up.stdout
        urls = re.findall(r"curl '?(http://[0-9.]+:8000/[^' \n]+)'?", up.stdout)
        assert any("/hello/" in u for u in urls) and any("/composed/predict" in u for u in urls), up.stdout
        for url in urls:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = json.loads(answer.read())
            assert body.get("greeting") == "Hello from serveplane" or body.get("output") == 6.0, body
        version = serveplane("dev", "kubectl", "version", timeout=60)
        assert "Server Version: v1.37.2" in version.stdout, version.stdout + version.stderr
        explained = serveplane("dev", "kubectl", "explain", "serveapplication.spec", timeout=60)
        assert "package.module:attribute" in explained.stdout
        again = serveplane("dev", "up")
        assert again.returncode == 0 and "already running" in again.stderr, "a second up reuses what runs"
    finally:
        pids = json.loads((trial / "trial.json").read_text()) if (trial / "trial.json").exists() else {}
        runner = trial / "noderunner" / "noderunner.json"
        instance = json.loads(runner.read_text())["instance"] if runner.exists() else None
        down = serveplane("dev", "down", timeout=200)
    assert down.returncode == 0, down.stderr
    assert instance is not None and not leftovers(int(instance)), "dev down must stop every pod process"
    for name, pid in pids.items():
        assert not is_alive(pid), f"the {name} outlived dev down"
    assert not state.exists()
