"""What the e2e tests share about the trial that `serveplane dev up` started (the `trial` fixture)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.stack import Stack

SERVEPLANE = str(Path(sys.executable).parent / "serveplane")


def serveplane(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The `serveplane` command as a user runs it."""
    return subprocess.run([SERVEPLANE, *args], env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Trial:
    """What `serveplane dev up` printed, and the stack it left running."""

    up: subprocess.CompletedProcess[str]
    stack: Stack
    env: dict[str, str]

    @property
    def cp(self) -> ControlPlane:
        return self.stack.cp
