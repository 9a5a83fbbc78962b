"""The Kubernetes API writes the operator makes (it reads nothing: the store has it all), over aiohttp.

Credentials come from kopf's own minimal login functions (the pod's ServiceAccount, else $KUBECONFIG), the very
ones kopf's watches use, so the operator needs no `kubernetes` client library: importing it costs ~30 MB of
resident memory, a third of the operator's. A 401 (a rotated ServiceAccount token) re-reads the credentials once.

Owned Services, the Ingress and the NetworkPolicy are written with server-side apply (field manager `serveplane`);
the planner only asks for that when the live object differs from the wanted one, and drift made by others is
corrected. The token Secret is created (POST) once, never changed: a new token is a new Secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from ..api.base import GROUP, VERSION
from ..api.kinds import INGRESSES, NETWORKPOLICIES, PODS, ROLEBINDINGS, SECRETS, SERVICEACCOUNTS, SERVICES

FIELD_MANAGER = "serveplane"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON = "application/json"

Obj = dict[str, Any]

# The API group of each kind (plural) a ServeCluster owns: what the operator writes and watches (handlers.py).
OWNED_GROUPS = {
    PODS: "", SERVICES: "", SECRETS: "", INGRESSES: "networking.k8s.io", NETWORKPOLICIES: "networking.k8s.io",
    SERVICEACCOUNTS: "", ROLEBINDINGS: "rbac.authorization.k8s.io",
}


class KubeError(Exception):
    """The API server refused a request; `status` is its HTTP code, `body` its answer."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:500]}")
        self.status = status
        self.body = body


def credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In a pod: its ServiceAccount; elsewhere: $KUBECONFIG or ~/.kube/config."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no ServiceAccount token and no kubeconfig: cannot reach the Kubernetes API")
    return info


def _path(group: str, version: str, namespace: str, plural: str, name: str = "", sub: str = "") -> str:
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    path = f"{root}/namespaces/{quote(namespace)}/{plural}"
    return path + (f"/{quote(name)}" if name else "") + (f"/{sub}" if sub else "")


class Kube:
    """Typed async wrappers; every write returns the object as the server now has it (for the store)."""

    def __init__(self, login: Callable[[], kopf.ConnectionInfo], timeout_s: float = 30.0) -> None:
        self._login = login
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    def _connect(self) -> aiohttp.ClientSession:
        if self._session is None:
            info = self._login()
            self._server = info.server.rstrip("/")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                headers={**info.as_http_headers(), "User-Agent": "serveplane-operator"},
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        content_type: str = JSON,
        params: dict[str, str] | None = None,
        tolerate: tuple[int, ...] = (),
    ) -> Obj | None:
        """One API call; a status in `tolerate` (e.g. 404 on a delete) yields None instead of raising."""
        for attempt in (1, 2):
            session = self._connect()
            async with session.request(
                method,
                self._server + path,
                params=params,
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": content_type},
            ) as response:
                text = await response.text()
                status = response.status
            if status == 401 and attempt == 1:
                await self.close()  # a rotated token: read the credentials again, once
                continue
            break
        if status < 400:
            return json.loads(text) if text else None
        # Writing into a namespace being deleted is refused with 403; nothing there needs us any more.
        if status in tolerate or (status == 403 and "NamespaceTerminating" in text):
            return None
        raise KubeError(method, path, status, text)

    # Custom resources
    async def patch_custom_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> Obj | None:
        """A merge patch of the status subresource; lists (conditions) are replaced whole."""
        path = _path(GROUP, VERSION, namespace, plural, name, "status")
        return await self.request("PATCH", path, {"status": status}, content_type=MERGE, tolerate=(404,))

    async def set_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Obj | None:
        """Replace metadata.finalizers, guarded by resourceVersion so a concurrent change is not lost.

        A 409 (changed meanwhile) or 404 (gone) is left for the next round, which the watch event wakes.
        """
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        path = _path(GROUP, VERSION, namespace, plural, name)
        return await self.request("PATCH", path, body, content_type=MERGE, tolerate=(404, 409))

    # Pods
    async def create_pod(self, pod: Obj) -> Obj | None:
        # 409: a terminating namesake still exists; its deletion event wakes the round that creates it.
        return await self.request("POST", _path("", "v1", pod["metadata"]["namespace"], "pods"), pod, tolerate=(409,))

    async def delete_pod(self, namespace: str, name: str) -> Obj | None:
        return await self.request("DELETE", _path("", "v1", namespace, "pods", name), tolerate=(404,))

    async def label_pod(self, namespace: str, name: str, labels: dict[str, str | None]) -> Obj | None:
        """Merge-patch labels; a None value removes the label."""
        path = _path("", "v1", namespace, "pods", name)
        return await self.request("PATCH", path, {"metadata": {"labels": labels}}, content_type=MERGE, tolerate=(404,))

    # Owned Services, Ingress, NetworkPolicy and Secret
    async def apply(self, kind: str, obj: Obj) -> Obj | None:
        """Server-side apply of a Service, an Ingress or a NetworkPolicy (by plural)."""
        meta = obj["metadata"]
        path = _path(OWNED_GROUPS[kind], "v1", meta["namespace"], kind, meta["name"])
        # JSON is YAML: the apply content type takes it as it is.
        return await self.request(
            "PATCH", path, obj, content_type=APPLY, params={"fieldManager": FIELD_MANAGER, "force": "true"}
        )

    async def create(self, kind: str, obj: Obj) -> Obj | None:
        """POST a new object; None when one by that name exists already (409): its watch event tells the rest."""
        path = _path(OWNED_GROUPS[kind], "v1", obj["metadata"]["namespace"], kind)
        return await self.request("POST", path, obj, tolerate=(409,))

    async def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """DELETE an owned object; with `uid`, only if the object by that name is still that one (a precondition:
        409 when someone else's replaced it, which is then left alone)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}} if uid else None
        path = _path(OWNED_GROUPS[kind], "v1", namespace, kind, name)
        await self.request("DELETE", path, body, tolerate=(404, 409))

    # Events
    async def post_event(self, obj: Obj, type: str, reason: str, message: str) -> None:
        """A core/v1 Event about `obj` (Normal or Warning), as `kubectl describe` shows them."""
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.request("POST", _path("", "v1", meta["namespace"], "events"), event)

    # Leases (leader election)
    def lease_path(self, namespace: str, name: str = "") -> str:
        return _path("coordination.k8s.io", "v1", namespace, "leases", name)
