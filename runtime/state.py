"""The node's shared state: written by the entrypoint's supervisor (main thread), read by the agent (its own thread).

A lock guards it because the two run in different threads; every read returns a frozen snapshot so a probe's
decision is made on one consistent view. Liveness of a tracked pid is re-read from /proc at snapshot time rather
than trusted from the supervisor's last poll, so a wedged main thread cannot make a dead raylet look alive.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from . import procfs
from .probes import Phase, ProcessView


@dataclass(frozen=True)
class NodeInfo:
    phase: Phase = Phase.WAITING_FOR_HEAD
    raylet_pid: int | None = None
    gcs_pid: int | None = None  # head only
    started_at: float | None = None  # time.monotonic() when `ray start` was launched
    draining_since: float | None = None  # time.monotonic() when /drain was first called


class NodeState:
    def __init__(self, *, is_head: bool, startup_grace_s: float) -> None:
        self.is_head = is_head
        self.startup_grace_s = startup_grace_s
        self._lock = threading.Lock()
        self._info = NodeInfo(phase=Phase.STARTING if is_head else Phase.WAITING_FOR_HEAD)

    def info(self) -> NodeInfo:
        with self._lock:
            return self._info

    def update(self, **changes: object) -> NodeInfo:
        with self._lock:
            self._info = replace(self._info, **changes)  # type: ignore[arg-type]
            return self._info

    def start_draining(self) -> float:
        """Mark the node draining (idempotent); return when draining began."""
        with self._lock:
            if self._info.draining_since is None:
                self._info = replace(self._info, draining_since=time.monotonic())
            assert self._info.draining_since is not None
            return self._info.draining_since

    def process_view(self) -> ProcessView:
        info = self.info()
        return ProcessView(
            is_head=self.is_head,
            phase=info.phase,
            raylet_alive=info.raylet_pid is not None and procfs.is_alive(info.raylet_pid),
            gcs_alive=info.gcs_pid is not None and procfs.is_alive(info.gcs_pid),
            seconds_since_start=None if info.started_at is None else time.monotonic() - info.started_at,
            startup_grace_s=self.startup_grace_s,
        )
