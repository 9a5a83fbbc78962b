"""Child processes of the entrypoint: spawn them, and reap the orphans that Ray leaves to us.

In a container the entrypoint is PID 1, and on a host it makes itself a child subreaper, so Ray processes whose
parent died are re-parented to it and would stay zombies unless waited for. Children started through `spawn` are
reaped by their own `Popen` (their owner), so `reap` only peeks (WNOWAIT) and leaves those alone: reaping them here
would rob `Popen` of their exit status.
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import threading
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Linux only, best effort: orphans of our descendants become our children instead of init's."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc: int = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return rc == 0
    except (OSError, AttributeError):
        return False


class Reaper:
    def __init__(self) -> None:
        # Held while spawning and while reaping: a child that exits before its pid is recorded as owned must not be
        # reaped by `reap` in between.
        self._lock = threading.Lock()
        self._owned: set[int] = set()

    def spawn(self, command: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            proc: subprocess.Popen[bytes] = subprocess.Popen(command, **popen_kwargs)
            self._owned.add(proc.pid)
            return proc

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        """The owner has collected the exit status (or gave up on the child)."""
        with self._lock:
            self._owned.discard(proc.pid)

    def reap(self) -> int:
        """Wait for exited children we do not own; return how many were reaped."""
        reaped = 0
        with self._lock:
            while True:
                try:
                    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    break
                if info is None or info.si_pid in self._owned:
                    # The owner's Popen will collect it; other zombies wait for the next round.
                    break
                try:
                    os.waitpid(info.si_pid, os.WNOHANG)
                    reaped += 1
                except ChildProcessError:
                    break
        return reaped
