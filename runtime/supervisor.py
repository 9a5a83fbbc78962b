"""Run `ray start --block` for this node, watch its raylet and GCS, and stop every Ray process it spawned.

Called by the entrypoint's main loop (`start`, `poll`, `stop`). `ray start` runs in a new session: Ray's workers
move to process groups of their own but keep the session id, so the session is how we find every Ray process of
this node even when pods share a PID namespace (local test clusters). `ray stop` is never used: it kills every Ray
process on the machine by name, including other pods'.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping

from . import procfs
from .probes import Phase
from .reaper import Reaper
from .state import NodeState

log = logging.getLogger(__name__)

RAYLET = "raylet"
GCS = "gcs_server"
_POLL_S = 0.1
# Exec'd in front of `ray start`: if the entrypoint is SIGKILLed (no chance to stop Ray), the kernel sends SIGTERM to
# `ray start`, whose handler stops every Ray process. Pods of a local test cluster share the host's PID namespace,
# where nothing else would. A trampoline instead of preexec_fn, which is unsafe once the agent thread runs;
# PR_SET_PDEATHSIG survives exec. argv: [expected parent pid, command...].
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit('serveplane.runtime: parent gone before ray start'); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)
_LEFTOVER_GRACE_S = 2.0
_KILL_TIMEOUT_S = 10.0


# Flags whose value is a secret: logged as ***.
_SECRET_FLAGS = ("--redis-password=",)


def _masked(command: list[str]) -> list[str]:
    return [next((f"{flag}***" for flag in _SECRET_FLAGS if arg.startswith(flag)), arg) for arg in command]


class RaySupervisor:
    def __init__(self, *, state: NodeState, reaper: Reaper, temp_dir: str) -> None:
        self._state = state
        self._reaper = reaper
        self._temp_dir = temp_dir
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def session(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, command: list[str], env: Mapping[str, str]) -> None:
        log.info("starting: %s", " ".join(_masked(command)))
        fate_shared = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
        self._proc = self._reaper.spawn(fate_shared, env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True)
        self._state.update(phase=Phase.STARTING, started_at=time.monotonic())

    def members(self) -> list[procfs.ProcStat]:
        return procfs.session_members(self.session) if self.session else []

    def poll(self) -> str | None:
        """Track raylet/GCS; return why Ray is dead, or None while it lives (or is still starting)."""
        assert self._proc is not None, "start() first"
        code = self._proc.poll()
        if code is not None:
            self._reaper.release(self._proc)
            return f"ray start exited with code {code}"
        info = self._state.info()
        if info.phase is Phase.STARTING:
            self._discover()
            return None
        if info.raylet_pid is not None and not procfs.is_alive(info.raylet_pid):
            return f"raylet (pid {info.raylet_pid}) died"
        if self._state.is_head and info.gcs_pid is not None and not procfs.is_alive(info.gcs_pid):
            return f"gcs_server (pid {info.gcs_pid}) died"
        return None

    def _discover(self) -> None:
        """Find raylet (and on the head gcs_server) among `ray start`'s children; then Ray is running."""
        assert self._proc is not None
        children = {m.comm: m.pid for m in self.members() if m.ppid == self._proc.pid}
        raylet, gcs = children.get(RAYLET), children.get(GCS)
        if raylet is None or (self._state.is_head and gcs is None):
            return
        node_id = next((a.split("=", 1)[1] for a in procfs.cmdline(raylet) if a.startswith("--node_id=")), None)
        self._state.update(phase=Phase.RUNNING, raylet_pid=raylet, gcs_pid=gcs)
        log.info("ray running: raylet pid %s, gcs pid %s, node id %s", raylet, gcs, node_id)

    def stop(self, grace_s: float) -> list[int]:
        """Forward SIGTERM to `ray start` and give it `grace_s` to exit; then end what is left. Return survivors.

        On SIGTERM `ray start` (Ray >= 2.60) drains the node through the GCS for up to
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S, so Serve moves replicas away, then stops raylet, GCS and the rest in
        its own order (raylet first, it stops its workers) and exits. `grace_s` must cover that drain.
        """
        if self._proc is None:
            return []
        self._state.update(phase=Phase.STOPPING)
        if self._proc.poll() is None:
            self._signal([self._proc.pid], signal.SIGTERM)
            self._wait_gone([self._proc.pid], time.monotonic() + grace_s)
        # Whatever outlived `ray start` (it was SIGKILLed before its cleanup, or a worker lingers): SIGTERM first so
        # it can flush logs, then SIGKILL.
        leftovers = self._remaining()
        if leftovers:
            log.info("SIGTERM to %d Ray processes left after `ray start`", len(leftovers))
            self._signal(leftovers, signal.SIGTERM)
            self._wait_gone(leftovers, time.monotonic() + _LEFTOVER_GRACE_S)
        survivors = self._kill_remaining(deadline=time.monotonic() + _KILL_TIMEOUT_S)
        if self._proc.poll() is not None:
            self._reaper.release(self._proc)
        self._state.update(phase=Phase.EXITED)
        return survivors

    def _remaining(self) -> list[int]:
        # Also by temp dir: catches a Ray process that left our session (none does today, but it is cheap).
        return sorted({m.pid for m in self.members()} | set(procfs.mentioning(self._temp_dir)))

    def _kill_remaining(self, deadline: float) -> list[int]:
        remaining = self._remaining()
        if remaining:
            log.warning("SIGKILL to %d Ray processes that outlived their grace: %s", len(remaining), remaining)
        # Loop: a dying raylet may still fork workers while we kill.
        while remaining and time.monotonic() < deadline:
            self._signal(remaining, signal.SIGKILL)
            self._wait_gone(remaining, min(deadline, time.monotonic() + 1.0))
            remaining = self._remaining()
        return remaining

    def _wait_gone(self, pids: Iterable[int], deadline: float) -> None:
        waiting = set(pids)
        while waiting and time.monotonic() < deadline:
            self._collect()
            waiting = {pid for pid in waiting if procfs.is_alive(pid)}
            if waiting:
                time.sleep(_POLL_S)

    def _collect(self) -> None:
        assert self._proc is not None
        self._proc.poll()
        self._reaper.reap()

    @staticmethod
    def _signal(pids: Iterable[int], signum: signal.Signals) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
