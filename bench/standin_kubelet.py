"""A stand-in kubelet for the scale benchmark: makes serveplane's pods Running and Ready without running them.

It lists and watches the pods labelled `app.kubernetes.io/managed-by=serveplane` (as admin) and:
- gives each scheduled pod its own loopback IP (127.0.0.0/8 is all routed to `lo` on Linux, and the API server
  accepts such pod IPs), registers it with the Serve dashboard simulator (a head's dashboard listens on its IP
  before the pod is reported Ready), then patches the pods/status subresource: phase Running, podIP/podIPs,
  Initialized/ContainersReady/Ready True and a ready container status;
- finishes deletions: a pod on a node without a kubelet stays Terminating, so once its deletionTimestamp is set
  it is deleted with grace period 0 (only that pod: a uid precondition).
Counts what it saw (`events`), so the bench can tell how many pods the operator created or deleted in a window.

One side effect, harmless here: the EndpointSlice controller refuses loopback addresses and keeps retrying the
operator's Services with backoff (its own requests, not the operator's).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from servesim import PodInfo, PodRegistry

log = logging.getLogger("standin-kubelet")

MANAGED_BY = "app.kubernetes.io/managed-by=serveplane"
CLUSTER_LABEL = "serveplane.dev/cluster"
NODE_TYPE_LABEL = "serveplane.dev/node-type"
GENERATION_LABEL = "serveplane.dev/generation"
STRATEGIC = "application/strategic-merge-patch+json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ready_status(pod: dict[str, Any], ip: str) -> dict[str, Any]:
    """The pods/status patch a kubelet sends once every container runs and is ready."""
    now = _now()
    containers = pod["spec"].get("containers") or []
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": f"standin://{pod['metadata']['uid']}/{c['name']}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for c in containers
            ],
        }
    }


class IpPool:
    """Hands out loopback addresses from `base` upwards, never the same one twice in a run."""

    def __init__(self, base: str = "127.200.0.1") -> None:
        self._next = ipaddress.IPv4Address(base)
        if not self._next.is_loopback:
            raise ValueError(f"{base} is not a loopback address (127.0.0.0/8)")

    def take(self) -> str:
        while True:
            ip = self._next
            if not ip.is_loopback:
                raise RuntimeError("the loopback pool is used up")
            self._next += 1
            # Skip .0 and .255 of every /24: harmless on lo, but they look like network and broadcast addresses.
            if int(ip) % 256 not in (0, 255):
                return str(ip)


@dataclass(frozen=True)
class PodEvent:
    at: float
    """time.monotonic()"""
    kind: str
    """`created` (a pod new to the watch), `ready` (marked Ready), `terminated` (deleted with grace 0), `gone`."""
    namespace: str
    name: str


class StandinKubelet:
    def __init__(
        self,
        server: str,
        ca_file: str,
        cert_file: str,
        key_file: str,
        registry: PodRegistry,
        *,
        on_head: Callable[[str], Awaitable[None]],
        on_head_gone: Callable[[str], Awaitable[None]],
        pool: IpPool | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self._ssl.load_cert_chain(cert_file, key_file)
        self.registry = registry
        self._on_head = on_head
        self._on_head_gone = on_head_gone
        self.pool = pool or IpPool()
        self._ips: dict[str, str] = {}
        """pod uid -> IP"""
        self._lock = threading.Lock()
        self._events: list[PodEvent] = []
        self._session: aiohttp.ClientSession | None = None
        self.synced = threading.Event()
        """Set once the first listing has been handled."""
        self.errors = 0

    # -- what the bench reads (any thread) -----------------------------------------------------------------

    def events(self, since: float = 0.0) -> list[PodEvent]:
        with self._lock:
            return [e for e in self._events if e.at >= since]

    def _record(self, kind: str, pod: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(PodEvent(time.monotonic(), kind, pod["metadata"]["namespace"], pod["metadata"]["name"]))

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """List, then watch from the list's resourceVersion; list again when the watch expires or breaks."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16), timeout=timeout)
        try:
            known: set[str] = set()
            while True:
                try:
                    version, pods = await self._list()
                    listed = {p["metadata"]["uid"] for p in pods}
                    for pod in pods:
                        if pod["metadata"]["uid"] not in known:
                            self._record("created", pod)
                        await self._handle(pod)
                    for uid in known - listed:
                        await self._gone(uid)
                    known = listed
                    self.synced.set()
                    await self._watch(version, known)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - a kubelet keeps going; the bench reads `errors`
                    self.errors += 1
                    log.warning("pod watch failed (%s: %s); listing again", type(error).__name__, error)
                    await asyncio.sleep(0.5)
        finally:
            await self._session.close()

    async def _list(self) -> tuple[str, list[dict[str, Any]]]:
        assert self._session is not None
        url = f"{self.server}/api/v1/pods?labelSelector={quote(MANAGED_BY)}"
        async with self._session.get(url) as answer:
            answer.raise_for_status()
            body = await answer.json()
        return body["metadata"]["resourceVersion"], body.get("items") or []

    async def _watch(self, version: str, known: set[str]) -> None:
        assert self._session is not None
        url = (f"{self.server}/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=290"
               f"&labelSelector={quote(MANAGED_BY)}&resourceVersion={version}")
        async with self._session.get(url) as answer:
            answer.raise_for_status()
            while True:
                line = await answer.content.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, pod = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise RuntimeError(f"watch error: {pod.get('message')}")
                if kind == "BOOKMARK":
                    continue
                uid = pod["metadata"]["uid"]
                if kind == "DELETED":
                    known.discard(uid)
                    self._record("gone", pod)
                    await self._gone(uid)
                    continue
                if kind == "ADDED" and uid not in known:
                    known.add(uid)
                    self._record("created", pod)
                await self._handle(pod)

    async def _handle(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            await self._terminate(pod)
            return
        if not pod["spec"].get("nodeName"):
            return  # not scheduled yet; the scheduler's binding comes as a MODIFIED event
        uid = meta["uid"]
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if uid in self._ips and ready and status.get("podIP") == self._ips[uid]:
            return
        ip = self._ips.get(uid) or self.pool.take()
        self._ips[uid] = ip
        labels = meta.get("labels") or {}
        info = PodInfo(meta["namespace"], meta["name"], uid, labels.get(CLUSTER_LABEL, ""),
                       labels.get(NODE_TYPE_LABEL, "worker"), ip, labels.get(GENERATION_LABEL, ""))
        self.registry.add(info)
        if info.role == "head":
            await self._on_head(ip)
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        code = await self._request("PATCH", path, ready_status(pod, ip), STRATEGIC)
        if code == 200:
            self._record("ready", pod)

    async def _terminate(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        await self._gone(meta["uid"])
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        code = await self._request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        if code in (200, 202):
            self._record("terminated", pod)

    async def _gone(self, uid: str) -> None:
        ip = self._ips.pop(uid, None)
        if ip is None:
            return
        info = self.registry.remove(ip)
        if info is not None and info.role == "head":
            await self._on_head_gone(ip)

    async def _request(
        self, method: str, path: str, body: dict[str, Any], content_type: str = "application/json"
    ) -> int:
        assert self._session is not None
        async with self._session.request(
            method, self.server + path, data=json.dumps(body), headers={"Content-Type": content_type}
        ) as answer:
            text = await answer.text()
            # 404: gone already; 409: the name now belongs to a new pod (uid precondition).
            if answer.status >= 400 and answer.status not in (404, 409):
                self.errors += 1
                log.warning("%s %s: HTTP %d %s", method, path, answer.status, text[:300])
            return answer.status
