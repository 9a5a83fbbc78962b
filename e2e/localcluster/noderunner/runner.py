"""NodeRunner: plays the kubelet for one or more Nodes of a control plane, in this process.

Start-up order matters: take the instance lock, clean up after a crashed
predecessor, build the bridge, heartbeat the Nodes, learn Services and
EndpointSlices (so the first pod's hosts file is already complete), and only
then watch pods.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import network
from .cleanup import cleanup_instance
from .dns import ClusterDns
from .instance import Instance, InstanceLock
from .kube import Informer, Kube
from .node import NodeHeartbeat
from .pod import PodWorker, RunnerContext

log = logging.getLogger(__name__)

READY_FILE = "noderunner.json"

SYNC_TIMEOUT = 60.0
# How long a finished pod's uid is remembered, so late watch events for it are ignored.
TOMBSTONE_SECONDS = 600.0


class NodeRunner:
    """Runs the pods bound to ``nodes`` as local processes, each in its own network namespace.

    ``start()`` returns once every informer has synced; ``stop()`` stops all pods
    gracefully (each within ``min(its grace period, shutdown_grace)``) and removes
    every host resource the runner made.
    """

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        nodes: Sequence[str] = ("node-1",),
        state_dir: str | os.PathLike[str] | None = None,
        *,
        instance: int | None = None,
        shutdown_grace: float = 10.0,
    ) -> None:
        if not nodes:
            raise ValueError("need at least one node")
        self.kubeconfig = str(kubeconfig)
        self.nodes = list(dict.fromkeys(nodes))
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="serveplane-noderunner-")).resolve()
        self.shutdown_grace = shutdown_grace
        self._wanted_instance = instance
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopping = False
        self._workers: dict[str, PodWorker] = {}
        self._tombstones: dict[str, float] = {}
        self._informers: list[Informer] = []
        self._instance_lock: InstanceLock | None = None
        self._kube: Kube | None = None
        self._ctx: RunnerContext | None = None

    # -- what callers use -----------------------------------------------------------

    @property
    def instance(self) -> Instance:
        if self._instance_lock is None:
            raise RuntimeError("not started")
        return self._instance_lock.instance

    def __enter__(self) -> NodeRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> NodeRunner:
        started = time.monotonic()
        if os.geteuid() != 0:
            raise PermissionError("the node runner needs root: it makes network namespaces, veths and /etc/netns files")
        self._instance_lock = InstanceLock.acquire(self._wanted_instance)
        try:
            self._start(self._instance_lock.instance)
        except BaseException:
            self.stop()
            raise
        log.info("node runner instance %d up for %s in %.1fs (bridge %s, gateway %s)", self.instance.index,
                 ", ".join(self.nodes), time.monotonic() - started, self.instance.bridge, self.instance.gateway)
        return self

    def _start(self, instance: Instance) -> None:
        removed = cleanup_instance(instance)
        if removed:
            log.warning("removed leftovers of a previous run: %s", "; ".join(removed))
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        network.ensure_bridge(instance)
        self._kube = kube = Kube(self.kubeconfig)
        dns = ClusterDns()
        self._ctx = RunnerContext(
            kube=kube,
            instance=instance,
            pool=network.IpPool(instance, range(1, len(self.nodes) + 1)),
            dns=dns,
            node_slots={name: slot for slot, name in enumerate(self.nodes, start=1)},
            host_ip=instance.gateway,
            state_dir=self.state_dir,
        )
        heartbeat = NodeHeartbeat(kube, self.nodes, instance.gateway, self._stop)
        heartbeat.beat()
        heartbeat.start()
        self._run_informers([
            Informer("services", kube.core.list_service_for_all_namespaces,
                     dns.sync_services, dns.service_event, self._stop),
            Informer("endpointslices", kube.discovery.list_endpoint_slice_for_all_namespaces,
                     dns.sync_slices, dns.slice_event, self._stop),
        ])
        self._run_informers([
            Informer(f"pods-{node}", kube.core.list_pod_for_all_namespaces,
                     lambda items, node=node: self._sync_pods(node, items), self._pod_event, self._stop,
                     field_selector=f"spec.nodeName={node}")
            for node in self.nodes
        ])
        self._write_ready_file()

    def _run_informers(self, informers: list[Informer]) -> None:
        for informer in informers:
            self._informers.append(informer)
            informer.start()
        deadline = time.monotonic() + SYNC_TIMEOUT
        for informer in informers:
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{informer.name} did not sync within {SYNC_TIMEOUT:.0f}s")

    def _write_ready_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "instance": self.instance.index,
            "bridge": self.instance.bridge,
            "gateway": self.instance.gateway,
            "subnet": self.instance.subnet,
            "nodes": self.nodes,
            "state_dir": str(self.state_dir),
        }
        tmp = self.state_dir / f".{READY_FILE}.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, self.state_dir / READY_FILE)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() is called (or ``timeout``); True if stopped."""
        return self._stop.wait(timeout)

    def request_stop(self) -> None:
        """Ask wait() to return; signal-handler safe (the caller then calls stop())."""
        self._stop.set()

    def stop(self) -> None:
        """Stop every pod gracefully, then remove the bridge, netns, veths and /etc/netns dirs."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            workers = list(self._workers.values())
        self._stop.set()
        for informer in self._informers:
            informer.shutdown()
        for worker in workers:
            worker.shutdown(self.shutdown_grace)
        for worker in workers:
            worker.join(timeout=self.shutdown_grace + 30.0)
            if worker.is_alive():
                log.warning("pod worker %s did not finish in time", worker.name)
        (self.state_dir / READY_FILE).unlink(missing_ok=True)
        if self._instance_lock is not None:
            removed = cleanup_instance(self._instance_lock.instance)
            log.info("node runner stopped; removed %s", "; ".join(removed) or "nothing")
            self._instance_lock.release()
        if self._kube is not None:
            self._kube.close()

    # -- pods --------------------------------------------------------------------------

    def _sync_pods(self, node: str, items: list[dict[str, Any]]) -> None:
        with self._lock:
            seen = set()
            for pod in items:
                seen.add(pod["metadata"]["uid"])
                self._handle(pod)
            for uid, worker in self._workers.items():
                if worker.node == node and uid not in seen:
                    worker.pod_gone()

    def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        with self._lock:
            if kind == "DELETED":
                worker = self._workers.get(pod["metadata"]["uid"])
                if worker is not None:
                    worker.pod_gone()
                return
            self._handle(pod)

    def _handle(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._tombstones or pod.get("spec", {}).get("nodeName") not in self.nodes:
            return
        worker = self._workers.get(uid)
        if worker is not None:
            worker.update(pod)
        elif not self._stopping:
            assert self._ctx is not None
            worker = PodWorker(pod, self._ctx, self._worker_done)
            self._workers[uid] = worker
            worker.start()

    def _worker_done(self, uid: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._workers.pop(uid, None)
            if not self._stopping:
                self._tombstones[uid] = now
            for old in [u for u, t in self._tombstones.items() if now - t > TOMBSTONE_SECONDS]:
                del self._tombstones[old]
