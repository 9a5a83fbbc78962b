"""One pod on one of our nodes, from sandbox to deletion: the kubelet's pod worker.

Each pod gets a thread. It builds the sandbox (netns, veth, IP, hosts file),
drives the containers through init, start, exit and restart, reports status
whenever it changes, and on deletion runs preStop hooks, stops the containers
within the grace period, removes the sandbox and finally deletes the pod
object with grace period 0.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import network, procs, status
from .container import ContainerRunner, PodRuntime
from .dns import ClusterDns, PodEntry
from .instance import Instance
from .kube import Kube

log = logging.getLogger(__name__)

DEFAULT_GRACE = 30.0
# A pod deleted from the API server behind our back (force delete) gets this long.
GONE_GRACE = 2.0
SANDBOX_RETRY = 2.0
# The longest the worker sleeps without news; status is re-checked that often.
MAX_SLEEP = 1.0


def pod_dir(state_dir: Path, namespace: str, pod: str) -> Path:
    """Where a pod's logs and working directory live: one layout for the runner and whoever reads it."""
    return state_dir / "pods" / f"{namespace}_{pod}"


@dataclass
class RunnerContext:
    """What every pod worker shares with the runner."""

    kube: Kube
    instance: Instance
    pool: network.IpPool
    dns: ClusterDns
    node_slots: Mapping[str, int]
    host_ip: str
    state_dir: Path

    def pod_dir(self, namespace: str, name: str, uid: str) -> Path:
        """``<state>/pods/<ns>_<name>``; an earlier pod of the same name has its dir moved aside."""
        directory = pod_dir(self.state_dir, namespace, name)
        uid_file = directory / "uid"
        if directory.exists():
            old = uid_file.read_text().strip() if uid_file.exists() else "unknown"
            if old != uid:
                aside = directory.with_name(f"{directory.name}.{old[:8]}")
                counter = 1
                while aside.exists():
                    aside = directory.with_name(f"{directory.name}.{old[:8]}.{counter}")
                    counter += 1
                directory.rename(aside)
        (directory / "work").mkdir(parents=True, exist_ok=True)
        uid_file.write_text(uid + "\n")
        return directory


def _seconds(value: Any, default: float) -> float:
    return float(value) if value is not None else default


class PodWorker(threading.Thread):
    """Runs one pod; the runner feeds it the pod's latest version and lifecycle news."""

    def __init__(self, pod: dict[str, Any], ctx: RunnerContext, on_done: Callable[[str], None]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.node: str = pod["spec"]["nodeName"]
        self._ctx = ctx
        self._on_done = on_done
        self._lock = threading.Lock()
        self._pod = pod
        self._wake = threading.Event()
        self._gone = False
        self._shutdown_cap: float | None = None
        self._runtime: PodRuntime | None = None
        self._pod_ip: str | None = None
        self._init: list[ContainerRunner] = []
        self._containers: list[ContainerRunner] = []
        self._init_done = False
        self._init_failed = False
        self._sandbox_error: str | None = None
        self._sandbox_retry_at = 0.0
        self._torn_down = False
        old_status = pod.get("status") or {}
        self._phase: str = old_status.get("phase") or "Pending"
        # A pod that finished before we (re)started is history: never run it again.
        self._adopted_finished = self._phase in status.TERMINAL_PHASES
        self._start_time: str = old_status.get("startTime") or status.rfc3339()
        self._clock = status.TransitionClock(pod)
        self._last_sent: dict[str, Any] | None = None
        self._pod_dir: Path | None = None

    # -- news from the runner ---------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def pod_gone(self) -> None:
        """The pod object is gone from the API server (force-deleted, or deleted while we were away)."""
        self._gone = True
        self._wake.set()

    def shutdown(self, grace_cap: float) -> None:
        """The runner is stopping: stop the containers gracefully, but within ``grace_cap`` seconds."""
        self._shutdown_cap = grace_cap
        self._wake.set()

    @property
    def pod(self) -> dict[str, Any]:
        with self._lock:
            return self._pod

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - whatever broke, leave nothing running
            log.exception("pod worker %s/%s failed", self.namespace, self.pod_name)
            self._stop_containers(time.monotonic() + GONE_GRACE, run_pre_stop=False)
            self._teardown()
        finally:
            self._on_done(self.uid)

    def _loop(self) -> None:
        while (reason := self._stop_reason()) is None:
            if not self._adopted_finished and self._phase not in status.TERMINAL_PHASES:
                if self._runtime is None and time.monotonic() >= self._sandbox_retry_at:
                    self._create_sandbox()
                if self._runtime is not None:
                    self._reconcile()
                self._report()
            if self._phase in status.TERMINAL_PHASES:
                # The kubelet removes a finished pod's sandbox; its status (and IP) stay.
                self._teardown()
            self._wake.wait(self._sleep_time())
            self._wake.clear()
        self._terminate(reason)

    def _stop_reason(self) -> str | None:
        if self._gone:
            return "gone"
        if self.pod["metadata"].get("deletionTimestamp"):
            return "deleted"
        if self._shutdown_cap is not None:
            return "shutdown"
        return None

    def _sleep_time(self) -> float:
        now = time.monotonic()
        wake_at = [now + MAX_SLEEP]
        if self._runtime is None and self._sandbox_retry_at > now:
            wake_at.append(self._sandbox_retry_at)
        # Only future starts: a start already due but not done waits for init containers (their exit wakes us).
        wake_at += [c.next_start for c in self._init + self._containers
                    if c.next_start is not None and c.next_start > now and not c.running]
        return max(0.02, min(wake_at) - now)

    # -- sandbox ----------------------------------------------------------------------

    def _create_sandbox(self) -> None:
        ctx, pod = self._ctx, self.pod
        spec = pod["spec"]
        netns, veth = ctx.instance.netns_name(self.uid), ctx.instance.veth_name(self.uid)
        hostname = (spec.get("hostname") or self.pod_name)[:63]
        pod_ip = ""
        try:
            self._pod_dir = self._pod_dir or ctx.pod_dir(self.namespace, self.pod_name, self.uid)
            pod_ip = ctx.pool.allocate(ctx.node_slots[self.node])
            network.create_sandbox(ctx.instance, netns, veth, pod_ip)
            ctx.dns.add_pod(PodEntry(netns, self.namespace, pod_ip, hostname, spec.get("subdomain")))
        except (network.NetworkError, OSError) as exc:
            if pod_ip:
                ctx.pool.release(pod_ip)
            network.delete_sandbox(netns, veth)
            ctx.dns.remove_pod(netns)
            self._sandbox_error = f"failed to create pod sandbox: {exc}"
            self._sandbox_retry_at = time.monotonic() + SANDBOX_RETRY
            self._event(self._sandbox_error)
            self._report()
            return
        self._sandbox_error = None
        self._pod_ip = pod_ip
        self._event(f"sandbox {netns} ready with IP {pod_ip} (veth {veth})")
        runtime = PodRuntime(
            pod=pod, instance=ctx.instance, netns=netns, pod_ip=pod_ip, host_ip=ctx.host_ip, hostname=hostname,
            pod_dir=self._pod_dir, work_dir=self._pod_dir / "work", reader=ctx.kube,
            wake=self._wake.set, event=self._event,
        )
        previous = {s["name"]: s for key in ("initContainerStatuses", "containerStatuses")
                    for s in (pod.get("status") or {}).get(key) or []}

        def runner(c: dict[str, Any], init: bool) -> ContainerRunner:
            # After a runner restart the containers start again: count it, as a kubelet would.
            old = previous.get(c["name"], {})
            count = old.get("restartCount", 0) + (1 if old.get("containerID") else 0)
            return ContainerRunner(c, runtime, init=init, restart_count=count)

        self._init = [runner(c, True) for c in spec.get("initContainers") or []]
        self._containers = [runner(c, False) for c in spec["containers"]]
        self._runtime = runtime

    def _teardown(self) -> None:
        """Remove the sandbox: whatever still runs in it, its hosts files, netns, veth and IP."""
        runtime = self._runtime
        if runtime is None or self._torn_down:
            return
        self._torn_down = True
        ctx = self._ctx
        leftovers = set(network.netns_pids(runtime.netns))
        leftovers |= set(procs.marked_pids(ctx.instance.pod_marker_prefix(self.uid)))
        if leftovers:
            procs.kill_and_wait(leftovers)
        ctx.dns.remove_pod(runtime.netns)
        network.delete_sandbox(runtime.netns, ctx.instance.veth_name(self.uid))
        ctx.pool.release(runtime.pod_ip)
        self._event(f"sandbox {runtime.netns} removed")

    # -- containers ---------------------------------------------------------------------

    @property
    def _restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy") or "Always"

    def _reconcile(self) -> None:
        if not self._init_done:
            for c in self._init:
                self._drive(c)
                if c.running or c.next_start is not None:
                    break
                if c.exit_code != 0:
                    self._init_failed = True
                    break
            else:
                self._init_done = True
        if self._init_done:
            for c in self._containers:
                self._drive(c)
        statuses = [c.status() for c in self._containers]
        will_restart = any(c.next_start is not None for c in self._containers)
        new_phase = status.phase(
            self._restart_policy, statuses,
            initialized=self._init_done, init_failed=self._init_failed, will_restart=will_restart,
        )
        if new_phase != self._phase:
            self._event(f"phase {self._phase} -> {new_phase}")
            self._phase = new_phase

    def _drive(self, c: ContainerRunner) -> None:
        if c.collect_exit():
            policy = self._restart_policy
            if c.init:
                restart = c.exit_code != 0 and policy != "Never"
            else:
                restart = policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)
            if restart:
                delay = c.schedule_restart()
                self._event(f"container {c.name}: restarting in {delay:g}s")
        if c.kill_reason and c.running:
            c.kill_async(self._kill_grace(c))
        if not c.running and c.next_start is not None and time.monotonic() >= c.next_start:
            c.start()

    def _kill_grace(self, c: ContainerRunner) -> float:
        probe = c.spec.get("startupProbe" if "startup" in (c.kill_reason or "") else "livenessProbe") or {}
        pod_grace = self.pod["spec"].get("terminationGracePeriodSeconds")
        return _seconds(probe.get("terminationGracePeriodSeconds", pod_grace), DEFAULT_GRACE)

    def _stop_containers(self, deadline: float, run_pre_stop: bool) -> None:
        running = [c for c in self._init + self._containers if c.running]
        threads = [threading.Thread(target=c.stop, args=(deadline, run_pre_stop), daemon=True) for c in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in self._init + self._containers:
            c.collect_exit()

    # -- termination ------------------------------------------------------------------------

    def _terminate(self, reason: str) -> None:
        pod = self.pod
        meta, spec = pod["metadata"], pod["spec"]
        grace = _seconds(
            meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds")), DEFAULT_GRACE
        )
        if reason == "gone":
            grace = min(grace, GONE_GRACE)
        elif reason == "shutdown":
            grace = min(grace, self._shutdown_cap or 0.0)
        self._event(f"terminating ({reason}), grace {grace:g}s")
        self._stop_containers(time.monotonic() + grace, run_pre_stop=reason != "gone")
        self._teardown()
        if reason == "deleted":
            for attempt in range(5):
                try:
                    self._ctx.kube.delete_pod_now(self.namespace, self.pod_name, self.uid)
                    break
                except Exception as exc:  # noqa: BLE001 - retried; the API server may be busy
                    log.warning("deleting pod %s/%s failed: %s", self.namespace, self.pod_name, exc)
                    time.sleep(0.5 * (attempt + 1))
            self._event("pod object deleted")
        elif reason == "shutdown" and not self._adopted_finished:
            # Nothing runs this pod any more: say so, or it would look Ready forever.
            self._report(timeout=3.0)

    # -- status ----------------------------------------------------------------------------

    def _container_statuses(
        self, runners: list[ContainerRunner], specs: list[dict[str, Any]], init: bool
    ) -> list[dict[str, Any]]:
        if runners:
            return [c.status() for c in runners]
        waiting: dict[str, Any] = {"reason": "ContainerCreating"}
        if self._sandbox_error:
            waiting["message"] = self._sandbox_error
        return [{
            "name": s["name"], "image": s.get("image", ""), "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"waiting": waiting}, "lastState": {},
        } for s in specs]

    def _status_body(self) -> dict[str, Any]:
        pod = self.pod
        spec = pod["spec"]
        inits = self._container_statuses(self._init, spec.get("initContainers") or [], True)
        apps = self._container_statuses(self._containers, spec["containers"], False)
        pending_init = [c.name for c in self._init if not c.ready] if not self._init_done else []
        if self._containers:
            unready = [c.name for c in self._containers if not c.ready]
        else:
            unready = [c["name"] for c in spec["containers"]]
        conds = status.conditions(
            pod,
            sandbox_ready=self._runtime is not None and not self._torn_down,
            initialized=self._init_done or not spec.get("initContainers"),
            pending_init=pending_init,
            unready=unready,
            pod_phase=self._phase,
        )
        return status.status_patch(
            pod_phase=self._phase,
            host_ip=self._ctx.host_ip,
            pod_ip=self._pod_ip,
            start_time=self._start_time,
            conditions=self._clock.render(conds),
            init_statuses=inits,
            container_statuses=apps,
        )

    def _report(self, timeout: float | None = None) -> None:
        body = self._status_body()
        if body == self._last_sent:
            return
        try:
            kwargs = {"timeout": timeout} if timeout else {}
            self._ctx.kube.patch_pod_status(self.namespace, self.pod_name, body, **kwargs)
            self._last_sent = body
        except ApiException as exc:
            if exc.status == 404:
                self._gone = True
            else:
                log.warning("status of %s/%s: HTTP %s: %s", self.namespace, self.pod_name, exc.status, exc.body)
        except Exception as exc:  # noqa: BLE001 - retried on the next pass
            log.warning("status of %s/%s: %s", self.namespace, self.pod_name, exc)

    def _event(self, message: str) -> None:
        log.info("%s/%s: %s", self.namespace, self.pod_name, message)
        if self._pod_dir is None:
            return
        stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        try:
            with open(self._pod_dir / "events.log", "a") as f:
                f.write(f"{stamp} {message}\n")
        except OSError:
            pass
