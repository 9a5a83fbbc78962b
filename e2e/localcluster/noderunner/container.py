"""One container of a pod: start, exit, restart backoff, probes, stop; and its ContainerStatus.

The pod worker owns each ContainerRunner and is the only one to call its
methods; the exit watcher and probe threads only record what they saw (under
the lock) and wake the worker, which then acts on it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import envvars, procs
from .instance import MARKER_ENV, Instance
from .probes import ProbeSpec, ProbeWorker, Target, run_action
from .status import rfc3339

# Restart delays: the first restart is immediate (as the kubelet's), then
# 1s, 2s, 4s, 8s, 10s, 10s... The kubelet's 10s-5min is far too slow for tests.
BACKOFF_INITIAL = 1.0
BACKOFF_CAP = 10.0
# A run this long counts as healthy and resets the backoff.
BACKOFF_RESET_AFTER = 2 * BACKOFF_CAP
# What the kubelet grants after a preStop hook that used up the grace period.
MIN_GRACE_AFTER_HOOK = 2.0


@dataclass
class PodRuntime:
    """What the containers of one pod share: its sandbox, identity and directories."""

    pod: Mapping[str, Any]
    instance: Instance
    netns: str
    pod_ip: str
    host_ip: str
    hostname: str
    pod_dir: Path
    work_dir: Path
    reader: envvars.ObjectReader | None
    wake: Callable[[], None]
    event: Callable[[str], None]

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]

    def log_path(self, container: str) -> Path:
        return self.pod_dir / f"{container}.log"


class Backoff:
    """Capped exponential restart delay, reset by a long enough run."""

    def __init__(self) -> None:
        self._failures = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= BACKOFF_RESET_AFTER:
            self._failures = 0
        delay = 0.0 if self._failures == 0 else min(BACKOFF_INITIAL * 2 ** (self._failures - 1), BACKOFF_CAP)
        self._failures += 1
        return delay


class StartError(RuntimeError):
    pass


class ContainerRunner:
    """Runs one container spec again and again, as restarts require."""

    def __init__(self, spec: Mapping[str, Any], runtime: PodRuntime, *, init: bool, restart_count: int = 0) -> None:
        self.spec = spec
        self.runtime = runtime
        self.init = init
        self.name: str = spec["name"]
        self.restart_count = restart_count
        self.marker = runtime.instance.marker(runtime.uid, self.name)
        self.backoff = Backoff()
        self.state: dict[str, Any] = {"waiting": {"reason": "PodInitializing" if not init else "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.exit_code: int | None = None
        self.has_run = False
        # Monotonic time of the next (re)start; None: it is not to run (again).
        self.next_start: float | None = 0.0
        self.kill_reason: str | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._env: dict[str, str] = {}
        self._exited: tuple[int, str, str | None, str | None] | None = None
        self._exit_event = threading.Event()
        self._probe_stop = threading.Event()
        self._started_gate = threading.Event()
        self._started = False
        self._probe_ready = False
        self._killing = False
        self._run_started_wall = ""
        self._run_started_mono = 0.0

    # -- what the pod worker reads -----------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def started(self) -> bool:
        return self.running and self._started

    @property
    def ready(self) -> bool:
        if self.init:
            return self.exit_code == 0 and not self.running
        if not self.started:
            return False
        return self._probe_ready if "readinessProbe" in self.spec else True

    @property
    def container_id(self) -> str:
        return f"serveplane://{self.runtime.uid[:8]}-{self.name}-{self.restart_count}"

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.has_run:
            status["containerID"] = self.container_id
        return status

    # -- start --------------------------------------------------------------

    def start(self) -> None:
        """Start a run now; a run that cannot start becomes an exit with code 128 (StartError)."""
        if self.has_run:
            self.restart_count += 1
        self.has_run = True
        self.next_start = None
        self.kill_reason = None
        self._killing = False
        self._exit_event.clear()
        self._probe_stop = threading.Event()
        self._started_gate = threading.Event()
        self._started = False
        self._probe_ready = False
        self._run_started_wall = rfc3339()
        self._run_started_mono = time.monotonic()
        rt = self.runtime
        try:
            facts = envvars.PodFacts(rt.pod, rt.pod_ip, rt.host_ip)
            self._env = envvars.container_env(self.spec, facts, rt.hostname, rt.reader)
            self._env[MARKER_ENV] = self.marker
            argv = envvars.container_argv(self.spec, self._env)
            _check_executable(argv, self._env)
            proc = procs.spawn_container(
                argv, netns=rt.netns, hostname=rt.hostname, env=self._env, cwd=self.cwd, log_path=rt.log_path(self.name)
            )
        except Exception as exc:  # noqa: BLE001 - whatever stops a start (env lookups included) is a failed start
            reason = "CreateContainerConfigError" if isinstance(exc, envvars.EnvError) else "StartError"
            rt.event(f"container {self.name}: {reason}: {exc}")
            with self._lock:
                self._exited = (128, rfc3339(), reason, str(exc))
            self._exit_event.set()
            rt.wake()
            return
        with self._lock:
            self._proc = proc
        self.state = {"running": {"startedAt": self._run_started_wall}}
        rt.event(f"container {self.name}: started (pid {proc.pid}, restart {self.restart_count}): {argv}")
        threading.Thread(target=self._watch, args=(proc,), name=f"exit-{self.name}", daemon=True).start()
        if not self.init:
            self._start_probes()
        else:
            self._started = True

    def _start_probes(self) -> None:
        target = self.target()
        spec = self.spec
        if "startupProbe" in spec:
            self._probe(ProbeSpec.parse("startup", spec["startupProbe"]), target, None)
        else:
            self._started = True
            self._started_gate.set()
        for kind, key in (("readiness", "readinessProbe"), ("liveness", "livenessProbe")):
            if key in spec:
                self._probe(ProbeSpec.parse(kind, spec[key]), target, self._started_gate)

    def _probe(self, probe: ProbeSpec, target: Target, gate: threading.Event | None) -> None:
        ProbeWorker(probe, target, self._run_started_mono, self._on_probe, self._probe_stop, gate).start()

    @property
    def cwd(self) -> Path:
        """workingDir if it exists on this host, else the pod's work dir (shared by its containers)."""
        working_dir = self.spec.get("workingDir") or ""
        return Path(working_dir) if os.path.isdir(working_dir) else self.runtime.work_dir

    def target(self) -> Target:
        ports = {p["name"]: int(p["containerPort"]) for p in self.spec.get("ports") or [] if p.get("name")}
        return Target(pod_ip=self.runtime.pod_ip, netns=self.runtime.netns, env=dict(self._env), ports=ports,
                      cwd=self.cwd)

    def _on_probe(self, kind: str, ok: bool, message: str) -> None:
        with self._lock:
            if kind == "readiness":
                self._probe_ready = ok
            elif kind == "startup" and ok:
                self._started = True
                self._started_gate.set()
            elif not ok and self.kill_reason is None:
                self.kill_reason = f"{kind} probe failed: {message}"
        if kind == "readiness":
            self.runtime.event(f"container {self.name}: readiness {'succeeded' if ok else 'failed: ' + message}")
        self.runtime.wake()

    def _watch(self, proc: subprocess.Popen) -> None:
        code = procs.exit_code(proc.wait())
        # The main process is gone: like a container runtime, take the rest of the container with it.
        procs.signal_container(proc.pid, self.marker, signal.SIGKILL)
        with self._lock:
            if self._proc is proc:
                self._exited = (code, rfc3339(), None, None)
        self._exit_event.set()
        self.runtime.wake()

    # -- exit and restart ---------------------------------------------------

    def collect_exit(self) -> bool:
        """Turn a recorded exit into the terminated state; True if there was one."""
        with self._lock:
            exited, self._exited = self._exited, None
            if exited is None:
                return False
            self._proc = None
        self._probe_stop.set()
        code, finished, reason, message = exited
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": self._run_started_wall or finished,
            "finishedAt": finished,
            "containerID": self.container_id,
        }
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        self.exit_code = code
        self.runtime.event(f"container {self.name}: exited with {code}" + (f" ({reason}: {message})" if reason else ""))
        return True

    def schedule_restart(self) -> float:
        """After an exit: restart after the backoff delay; returns the delay."""
        delay = self.backoff.next_delay(time.monotonic() - self._run_started_mono)
        self.last_state = self.state
        if delay > 0:
            self.state = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:g}s restarting failed container={self.name} "
                           f"pod={self.runtime.pod['metadata']['name']}",
            }}
        self.next_start = time.monotonic() + delay
        return delay

    # -- stop ---------------------------------------------------------------

    def kill_async(self, grace: float) -> None:
        """Stop the run in the background (preStop, SIGTERM, SIGKILL), e.g. for a failed liveness probe."""
        if self._killing or not self.running:
            return
        self._killing = True
        self.runtime.event(f"container {self.name}: killing: {self.kill_reason}")
        threading.Thread(target=self.stop, args=(time.monotonic() + grace, True), daemon=True).start()

    def stop(self, deadline: float, run_pre_stop: bool) -> None:
        """preStop hook, SIGTERM to the whole container, SIGKILL at ``deadline``; returns once it is dead."""
        self._killing = True
        self._probe_stop.set()
        with self._lock:
            proc = self._proc
        if proc is None or self._exit_event.is_set():
            return
        hook = ((self.spec.get("lifecycle") or {}).get("preStop")) if run_pre_stop else None
        if hook:
            timeout = max(deadline - time.monotonic(), 0.1)
            ok, message = run_action(hook, self.target(), timeout)
            self.runtime.event(f"container {self.name}: preStop hook {'ran' if ok else 'failed: ' + message}")
            deadline = max(deadline, time.monotonic() + MIN_GRACE_AFTER_HOOK)
        if self._exit_event.is_set():
            return
        procs.signal_container(proc.pid, self.marker, signal.SIGTERM)
        if not self._exit_event.wait(max(deadline - time.monotonic(), 0.0)):
            self.runtime.event(f"container {self.name}: grace period over, SIGKILL")
            procs.signal_container(proc.pid, self.marker, signal.SIGKILL)
            self._exit_event.wait(10.0)


def _check_executable(argv: list[str], env: Mapping[str, str]) -> None:
    if not argv:
        raise StartError("no command or args (images are not run, so there is no entrypoint)")
    exe = argv[0]
    if "/" in exe:
        if not os.access(exe, os.X_OK):
            raise StartError(f'exec: "{exe}": not an executable file')
    elif shutil.which(exe, path=env.get("PATH")) is None:
        raise StartError(f'exec: "{exe}": executable file not found in $PATH')
