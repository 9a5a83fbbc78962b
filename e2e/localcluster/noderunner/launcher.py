"""Run the node runner as a subprocess: a context manager for tests and dev scripts.

A subprocess keeps the pods' lifetime independent of the test process's
threads and makes "stop" a plain SIGTERM; if the test process dies outright,
the runner gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and cleans up.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cleanup import cleanup
from .pod import pod_dir
from .runner import READY_FILE

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class NodeRunnerProcess:
    """``python -m serveplane.localcluster.noderunner`` as a child process.

    Use as ``with NodeRunnerProcess(cp.kubeconfig) as runner: ...``. Its own
    output goes to ``<state_dir>/noderunner.log``; pod logs to ``pod_log()``.
    """

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        nodes: Sequence[str] = ("node-1",),
        state_dir: str | os.PathLike[str] | None = None,
        *,
        instance: int | None = None,
        shutdown_grace: float = 10.0,
        start_timeout: float = 90.0,
        verbose: bool = False,
        detach: bool = False,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.nodes = list(nodes)
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="serveplane-noderunner-")).resolve()
        self.instance = instance
        self.shutdown_grace = shutdown_grace
        self.start_timeout = start_timeout
        self.verbose = verbose
        # Detached (for `serveplane dev up`): the runner outlives this process and is stopped by pid later.
        self.detach = detach
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / "noderunner.log"

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return pod_dir(self.state_dir, namespace, pod)

    def pod_log(self, namespace: str, pod: str, container: str) -> Path:
        return pod_dir(self.state_dir, namespace, pod) / f"{container}.log"

    def __enter__(self) -> NodeRunnerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> NodeRunnerProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ready = self.state_dir / READY_FILE
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "serveplane.localcluster.noderunner", "--kubeconfig", self.kubeconfig,
                "--state-dir", str(self.state_dir), "--shutdown-grace", str(self.shutdown_grace)]
        for node in self.nodes:
            argv += ["--node", node]
        if self.instance is not None:
            argv += ["--instance", str(self.instance)]
        if self.verbose:
            argv.append("--verbose")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=None if self.detach else _die_with_parent, close_fds=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while not ready.exists():
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"node runner exited during start-up; log:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"node runner not ready after {self.start_timeout:.0f}s; log:\n{self._tail()}")
            time.sleep(0.1)
        self.info = json.loads(ready.read_text())
        return self

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM and wait; SIGKILL plus an outside cleanup if it does not finish in time."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        timeout = timeout if timeout is not None else self.shutdown_grace + 30.0
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            index = self.info.get("instance", self.instance)
            if index is not None:
                cleanup(int(index))

    def _tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
