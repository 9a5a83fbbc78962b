"""Cluster DNS emulation through per-pod /etc/hosts files.

There is no DNS server. ``ip netns exec`` bind-mounts every file in
/etc/netns/<netns>/ over the same name in /etc for the processes it starts,
so each pod gets its own /etc/hosts (and resolv.conf):

* its own hostname (and ``<hostname>.<subdomain>.<ns>.svc.cluster.local``),
* for every *headless* Service (clusterIP None) one line per endpoint IP:
  ``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc``, ``<svc>.<ns>`` and, in
  the pod's own namespace, plain ``<svc>`` (the search-path forms, since
  /etc/hosts knows no search path); endpoints with a hostname also get
  ``<hostname>.<svc>.<ns>.svc.cluster.local``.

Endpoints come from EndpointSlices: those whose ``ready`` is not false, or all
of them when the Service publishes not-ready addresses. Services with a
cluster IP are not resolved: nothing would route that IP (there is no
kube-proxy). The resolv.conf points at 127.0.0.1 inside the pod, where nobody
listens, so any other name fails at once instead of after DNS timeouts.

The files are rewritten in place, never replaced: a bind mount pins the inode,
so a renamed-over file would never be seen by running pods.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .instance import ETC_NETNS

log = logging.getLogger(__name__)

CLUSTER_DOMAIN = "cluster.local"
RESOLV_CONF = (
    "# serveplane noderunner: no cluster DNS server; cluster names are in /etc/hosts.\n"
    "nameserver 127.0.0.1\n"
    "options timeout:1 attempts:1\n"
)
_HOSTS_HEADER = """\
# Kubernetes-managed hosts file (serveplane noderunner emulates cluster DNS here).
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


@dataclass(frozen=True)
class PodEntry:
    """A pod whose hosts file we keep."""

    netns: str
    namespace: str
    pod_ip: str
    hostname: str
    subdomain: str | None = None


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    hostname: str | None
    ready: bool


def write_in_place(path: Path, content: str) -> None:
    """Overwrite ``path`` keeping its inode, with one write and never a moment of emptiness.

    A shorter text is padded with a comment line up to the old size instead of
    truncating, so a concurrent reader sees the old or the new text, not a
    half-empty file.
    """
    data = content.encode()
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        path.write_bytes(data)
        return
    try:
        shortfall = os.fstat(fd).st_size - len(data)
        if shortfall == 1:
            data += b"\n"
        elif shortfall > 1:
            data += b"#" * (shortfall - 1) + b"\n"
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


class ClusterDns:
    """Tracks headless Services and their EndpointSlices; keeps every registered pod's hosts file current."""

    def __init__(self, etc_netns: Path = ETC_NETNS) -> None:
        self._etc = etc_netns
        self._lock = threading.Lock()
        # (namespace, name) -> (headless, publishNotReadyAddresses)
        self._services: dict[tuple[str, str], tuple[bool, bool]] = {}
        # (namespace, slice name) -> (service name, endpoints)
        self._slices: dict[tuple[str, str], tuple[str, list[_Endpoint]]] = {}
        self._pods: dict[str, PodEntry] = {}
        self._written: dict[str, str] = {}

    # -- informer callbacks ---------------------------------------------------

    def sync_services(self, items: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._services = dict(self._service_item(s) for s in items)
        self.refresh()

    def service_event(self, kind: str, obj: dict[str, Any]) -> None:
        key, value = self._service_item(obj)
        with self._lock:
            if kind == "DELETED":
                self._services.pop(key, None)
            else:
                self._services[key] = value
        self.refresh()

    def sync_slices(self, items: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._slices = dict(item for s in items if (item := self._slice_item(s)) is not None)
        self.refresh()

    def slice_event(self, kind: str, obj: dict[str, Any]) -> None:
        item = self._slice_item(obj)
        meta = obj["metadata"]
        with self._lock:
            if kind == "DELETED" or item is None:
                self._slices.pop((meta["namespace"], meta["name"]), None)
            else:
                self._slices[item[0]] = item[1]
        self.refresh()

    @staticmethod
    def _service_item(svc: dict[str, Any]) -> tuple[tuple[str, str], tuple[bool, bool]]:
        spec = svc.get("spec") or {}
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        return key, (spec.get("clusterIP") == "None", bool(spec.get("publishNotReadyAddresses")))

    @staticmethod
    def _slice_item(eps: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, list[_Endpoint]]] | None:
        meta = eps["metadata"]
        service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not service or eps.get("addressType") != "IPv4":
            return None
        endpoints = []
        for ep in eps.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready")
            for address in ep.get("addresses") or []:
                endpoints.append(_Endpoint(address, ep.get("hostname"), ready is not False))
        return (meta["namespace"], meta["name"]), (service, endpoints)

    # -- pods -------------------------------------------------------------------

    def add_pod(self, entry: PodEntry) -> None:
        """Write the pod's /etc/netns files; must happen before any of its processes start."""
        directory = self._etc / entry.netns
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text(RESOLV_CONF)
        with self._lock:
            self._pods[entry.netns] = entry
            content = self._render(entry)
            self._written[entry.netns] = content
            write_in_place(directory / "hosts", content)

    def remove_pod(self, netns: str) -> None:
        with self._lock:
            self._pods.pop(netns, None)
            self._written.pop(netns, None)
        shutil.rmtree(self._etc / netns, ignore_errors=True)

    def refresh(self) -> None:
        """Rewrite every hosts file whose content changed."""
        with self._lock:
            for netns, entry in self._pods.items():
                content = self._render(entry)
                if self._written.get(netns) == content:
                    continue
                try:
                    write_in_place(self._etc / netns / "hosts", content)
                    self._written[netns] = content
                except OSError as exc:
                    log.warning("cannot update hosts file of %s: %s", netns, exc)

    def records(self) -> dict[tuple[str, str], list[_Endpoint]]:
        """(namespace, service) -> resolvable endpoints of each headless Service (call with the lock held)."""
        out: dict[tuple[str, str], list[_Endpoint]] = {}
        for (namespace, _), (service, endpoints) in sorted(self._slices.items()):
            headless, not_ready_too = self._services.get((namespace, service), (False, False))
            if not headless:
                continue
            chosen = [e for e in endpoints if e.ready or not_ready_too]
            out.setdefault((namespace, service), []).extend(chosen)
        return out

    def _render(self, entry: PodEntry) -> str:
        lines = [_HOSTS_HEADER.rstrip("\n")]
        own = [entry.hostname]
        if entry.subdomain:
            own.insert(0, f"{entry.hostname}.{entry.subdomain}.{entry.namespace}.svc.{CLUSTER_DOMAIN}")
        lines.append(f"{entry.pod_ip}\t{' '.join(own)}")
        lines.append("# headless Services")
        for (namespace, service), endpoints in sorted(self.records().items()):
            names = [
                f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}", f"{service}.{namespace}.svc", f"{service}.{namespace}",
            ]
            if namespace == entry.namespace:
                names.append(service)
            seen: set[str] = set()
            for ep in sorted(endpoints, key=lambda e: tuple(int(o) for o in e.ip.split("."))):
                if ep.ip not in seen:
                    seen.add(ep.ip)
                    lines.append(f"{ep.ip}\t{' '.join(names)}")
                if ep.hostname:
                    lines.append(f"{ep.ip}\t{ep.hostname}.{service}.{namespace}.svc.{CLUSTER_DOMAIN}")
        return "\n".join(lines) + "\n"
