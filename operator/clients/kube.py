"""The Kubernetes API calls the operator makes, as a small async facade over the official client.

The official client is synchronous; each call runs in a worker thread so kopf's event loop never blocks.
Owned Services and the Ingress are written with server-side apply (field manager `serveplane`): re-applying
unchanged content is a no-op on the server, and drift made by others is corrected.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api.base import GROUP, VERSION

FIELD_MANAGER = "serveplane"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"

Obj = dict[str, Any]


def load_config() -> None:
    """In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class Kube:
    """Typed async wrappers; every method returns plain dicts as the API server sent them."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._api = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self._api)
        self.networking = client.NetworkingV1Api(self._api)
        self.custom = client.CustomObjectsApi(self._api)

    async def _call(self, fn: Callable[..., Any], *args: Any, tolerate: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """Run one API call; a status in `tolerate` (e.g. 404 on a delete) yields None instead of raising."""
        try:
            # Raw JSON, not the client's model classes: the operator works on plain dicts throughout.
            result = await asyncio.to_thread(fn, *args, _preload_content=False, **kwargs)
        except ApiException as error:
            # Writing into a namespace being deleted is refused with 403; nothing there needs us any more.
            if error.status in tolerate or (error.status == 403 and "NamespaceTerminating" in (error.body or "")):
                return None
            raise
        return json.loads(result.data) if result.data else None

    # Every write returns the object as the server now has it, for the operator's store.

    # Custom resources
    async def patch_custom_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> Obj | None:
        """A merge patch of the status subresource; lists (conditions) are replaced whole."""
        return await self._call(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name,
            {"status": status}, _content_type=MERGE, tolerate=(404,),
        )

    async def set_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> Obj | None:
        """Replace metadata.finalizers, guarded by resourceVersion so a concurrent change is not lost.

        A 409 (changed meanwhile) or 404 (gone) is left for the next round, which the watch event wakes.
        """
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        return await self._call(
            self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, plural, name,
            body, _content_type=MERGE, tolerate=(404, 409),
        )

    # Pods
    async def create_pod(self, pod: Obj) -> Obj | None:
        # 409: a terminating namesake still exists; its deletion event wakes the round that creates it.
        return await self._call(self.core.create_namespaced_pod, pod["metadata"]["namespace"], pod, tolerate=(409,))

    async def delete_pod(self, namespace: str, name: str) -> Obj | None:
        return await self._call(self.core.delete_namespaced_pod, name, namespace, tolerate=(404,))

    async def label_pod(self, namespace: str, name: str, labels: dict[str, str | None]) -> Obj | None:
        """Merge-patch labels; a None value removes the label."""
        return await self._call(
            self.core.patch_namespaced_pod, name, namespace, {"metadata": {"labels": labels}},
            _content_type=MERGE, tolerate=(404,),
        )

    # Owned Services and Ingress
    async def apply(self, kind: str, obj: Obj) -> Obj | None:
        """Server-side apply of a Service or an Ingress."""
        meta = obj["metadata"]
        patch = self.core.patch_namespaced_service if kind == "services" else self.networking.patch_namespaced_ingress
        return await self._call(
            patch, meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY,
        )

    async def delete_ingress(self, namespace: str, name: str) -> None:
        await self._call(self.networking.delete_namespaced_ingress, name, namespace, tolerate=(404,))
