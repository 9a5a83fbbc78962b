"""Keep our Nodes alive: Ready condition heartbeats, addresses and the node Lease.

The control plane's node-lifecycle controller is disabled, so nothing would
mark a silent Node dead; the heartbeat is still what a kubelet does, and keeps
anyone who looks at lastHeartbeatTime or the Lease happy.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from .kube import MERGE, STRATEGIC, Kube
from .status import rfc3339

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 40
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_VERSION = "v1.37.2-serveplane"
DEFAULT_CAPACITY = {"cpu": "16", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
_CONDITIONS = (
    ("Ready", "True", "KubeletReady", "serveplane noderunner is posting ready status"),
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeHeartbeat(threading.Thread):
    """Registers (if needed) and heartbeats each of our Nodes every HEARTBEAT_SECONDS."""

    def __init__(self, kube: Kube, nodes: Sequence[str], internal_ip: str, stop: threading.Event) -> None:
        super().__init__(name="node-heartbeat", daemon=True)
        self._kube = kube
        self._nodes = list(nodes)
        self._internal_ip = internal_ip
        self._halt = stop

    def run(self) -> None:
        while not self._halt.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the next beat retries
                log.warning("node heartbeat failed: %s", exc)

    def beat(self) -> None:
        for name in self._nodes:
            self._beat_node(name)
            self._renew_lease(name)

    def _beat_node(self, name: str) -> None:
        core = self._kube.core
        node = self._kube.maybe(core.read_node, name)
        if node is None:
            node = self._kube.call(core.create_node, {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                }},
            })
        status = node.get("status") or {}
        previous = {c["type"]: c for c in status.get("conditions") or []}
        now = rfc3339()
        conditions = []
        for kind, value, reason, message in _CONDITIONS:
            cond: dict[str, Any] = {
                "type": kind, "status": value, "reason": reason, "message": message, "lastHeartbeatTime": now,
            }
            if previous.get(kind, {}).get("status") != value:
                cond["lastTransitionTime"] = now
            conditions.append(cond)
        patch: dict[str, Any] = {
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self._internal_ip}, {"type": "Hostname", "address": name}],
        }
        if not status.get("capacity"):
            patch["capacity"] = DEFAULT_CAPACITY
            patch["allocatable"] = DEFAULT_CAPACITY
        if not (status.get("nodeInfo") or {}).get("kubeletVersion"):
            patch["nodeInfo"] = {
                "architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": KUBELET_VERSION,
                "containerRuntimeVersion": "serveplane-noderunner://0.1", "kubeProxyVersion": "",
                "osImage": "serveplane noderunner", "kernelVersion": "", "machineID": "", "systemUUID": "",
                "bootID": "",
            }
        # A merge patch replaces the whole addresses list (the control plane
        # registers 127.0.0.1, which pods cannot reach); conditions merge by type
        # only in a strategic patch, so they go in a second one.
        addresses = {"status": {"addresses": patch.pop("addresses")}}
        self._kube.call(core.patch_node_status, name, addresses, _content_type=MERGE)
        self._kube.call(core.patch_node_status, name, {"status": patch}, _content_type=STRATEGIC)

    def _renew_lease(self, name: str) -> None:
        coordination = self._kube.coordination
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _micro_time()}
        try:
            self._kube.call(
                coordination.patch_namespaced_lease, name, LEASE_NAMESPACE, {"spec": spec}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": LEASE_NAMESPACE}, "spec": spec}
            self._kube.call(coordination.create_namespaced_lease, LEASE_NAMESPACE, body)
