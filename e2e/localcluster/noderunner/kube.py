"""The API server, through the official client but with plain dicts, plus a list+watch loop.

The generated models are skipped on purpose (``_preload_content=False``): the
runner passes objects around as the JSON the API server sent, and builds
patches as plain JSON too.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
REQUEST_TIMEOUT = 15.0


def _json(resp: Any) -> dict[str, Any]:
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


class Kube:
    """The few API calls a kubelet makes, returning dicts (and None for 404 where that is normal)."""

    def __init__(self, kubeconfig: str) -> None:
        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        # Watches hold connections for long; pod workers patch in parallel.
        self.api_client.configuration.connection_pool_maxsize = 64
        self.core = client.CoreV1Api(self.api_client)
        self.discovery = client.DiscoveryV1Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    @staticmethod
    def call(method: Callable[..., Any], *args: Any, timeout: float = REQUEST_TIMEOUT, **kwargs: Any) -> dict[str, Any]:
        return _json(method(*args, _preload_content=False, _request_timeout=timeout, **kwargs))

    def maybe(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return self.call(method, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- envvars.ObjectReader -----------------------------------------------------

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.maybe(self.core.read_namespaced_config_map, name, namespace)

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.maybe(self.core.read_namespaced_secret, name, namespace)

    # -- pods -----------------------------------------------------------------------

    def patch_pod_status(
        self, namespace: str, name: str, body: dict[str, Any], timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self.call(
            self.core.patch_namespaced_pod_status, name, namespace, body, _content_type=STRATEGIC, timeout=timeout
        )

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Delete with grace 0, as the kubelet does once the containers are gone; only this very pod (uid)."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.call(self.core.delete_namespaced_pod, name, namespace, body=body)
        except ApiException as exc:
            # 404: gone already; 409: the name now belongs to a new pod.
            if exc.status not in (404, 409):
                raise


class _Expired(Exception):
    pass


class Informer(threading.Thread):
    """List, then watch from that list's resourceVersion; re-list when the watch expires or breaks.

    ``on_sync(items)`` gets every full list (the truth at that moment);
    ``on_event(type, obj)`` gets ADDED/MODIFIED/DELETED in between.
    """

    def __init__(
        self,
        name: str,
        list_method: Callable[..., Any],
        on_sync: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        stop: threading.Event,
        **list_kwargs: Any,
    ) -> None:
        super().__init__(name=f"informer-{name}", daemon=True)
        self._list = list_method
        self._on_sync = on_sync
        self._on_event = on_event
        self._halt = stop
        self._list_kwargs = list_kwargs
        self._resp: Any = None
        self.synced = threading.Event()

    def run(self) -> None:
        backoff = 0.2
        while not self._halt.is_set():
            try:
                body = Kube.call(self._list, timeout=30, **self._list_kwargs)
                self._safe(self._on_sync, body.get("items") or [])
                self.synced.set()
                backoff = 0.2
                self._watch(body["metadata"]["resourceVersion"])
            except _Expired:
                continue
            except Exception as exc:  # noqa: BLE001 - any failure means: wait, then re-list
                if self._halt.is_set():
                    return
                log.warning("%s: %s: %s; re-listing in %.1fs", self.name, type(exc).__name__, exc, backoff)
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch(self, resource_version: str) -> None:
        while not self._halt.is_set():
            resp = self._list(
                watch=True, resource_version=resource_version, allow_watch_bookmarks=True, timeout_seconds=60,
                _preload_content=False, _request_timeout=(10, 90), **self._list_kwargs,
            )
            self._resp = resp
            try:
                for line in iter_resp_lines(resp):
                    if not line:
                        continue
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise _Expired
                        raise RuntimeError(f"watch error: {obj.get('message')}")
                    resource_version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        self._safe(self._on_event, kind, obj)
                    if self._halt.is_set():
                        return
            finally:
                self._resp = None
                resp.close()
                resp.release_conn()

    def _safe(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the informer
            log.exception("%s: handler failed", self.name)

    def shutdown(self) -> None:
        """Unblock a watch in progress (the stop event must be set already)."""
        resp = self._resp
        sock = getattr(getattr(resp, "connection", None), "sock", None) if resp is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
