"""`python -m serveplane.runtime autoscaler`: Ray's own autoscaler (v2) for one ServeCluster, in a container beside
its head.

Ray decides: its scheduler turns the resources that tasks and actors (Serve's replicas among them) wait for into
nodes to launch, and drains idle nodes through the GCS before it asks for their removal. This module is only the
cloud-instance provider Ray's v2 autoscaler takes (as ray/autoscaler/v2/instance_manager/cloud_providers/kuberay/
is KubeRay's): the instances are the cluster's pods, and a launch or a termination becomes an ask in the
ServeCluster's status.autoscaler (scaling.py), never a change of its spec; the operator makes the pods.

Only the autoscaler of the cluster's active generation acts: during an upgrade, the new generation's waits.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from ray._private.ray_constants import KV_NAMESPACE_SESSION
from ray._raylet import GcsClient  # type: ignore[attr-defined]  # compiled: no stubs
from ray.autoscaler._private.kuberay.node_provider import load_k8s_secrets
from ray.autoscaler.v2.autoscaler import Autoscaler
from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig, IConfigReader
from ray.autoscaler.v2.instance_manager.node_provider import (
    CloudInstance,
    CloudInstanceProviderError,
    ICloudInstanceProvider,
    LaunchNodeError,
    TerminateNodeError,
)
from ray.core.generated.instance_manager_pb2 import NodeKind  # type: ignore[attr-defined]  # generated enum

from . import scaling

log = logging.getLogger("serveplane.autoscaler")
INTERVAL_S = 5.0
TIMEOUT_S = 10.0


class Kube:
    """The few API calls the autoscaler makes, with its pod's own ServiceAccount token (Ray's loader of in-cluster
    credentials)."""

    def __init__(self, cluster_path: str, pod_selector: str) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.cluster_path, self.pod_selector = cluster_path, pod_selector
        namespace = cluster_path.split("/namespaces/")[1].split("/")[0]
        self.pods_path = f"/api/v1/namespaces/{namespace}/pods?labelSelector={quote(pod_selector)}"

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers, verify, cert = load_k8s_secrets()
        if body is not None:
            headers = {**headers, "Content-Type": "application/merge-patch+json"}
        answer = requests.request(method, self.base + path, json=body, headers=headers, verify=verify, cert=cert,
                                  timeout=TIMEOUT_S)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def cluster(self) -> dict[str, Any]:
        return self._call("GET", self.cluster_path)

    def pods(self) -> list[dict[str, Any]]:
        return list(self._call("GET", self.pods_path).get("items") or [])

    def write(self, autoscaler: dict[str, Any]) -> None:
        self._call("PATCH", self.cluster_path + "/status", {"status": {"autoscaler": autoscaler}})


class ConfigReader(IConfigReader):
    """Ray's autoscaling config, read from the ServeCluster at each of the autoscaler's rounds."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.cluster: dict[str, Any] = {}
        self._config: AutoscalingConfig | None = None

    def refresh_cached_autoscaling_config(self) -> None:
        self.cluster = self.kube.cluster()
        self._config = AutoscalingConfig(scaling.autoscaling_config(self.cluster, self.namespace),
                                         skip_content_hash=True)

    def get_cached_autoscaling_config(self) -> AutoscalingConfig:
        if self._config is None:
            self.refresh_cached_autoscaling_config()
        assert self._config is not None
        return self._config


class Provider(ICloudInstanceProvider):
    """The cluster's pods as Ray's cloud instances; launches and terminations as asks in status.autoscaler."""

    def __init__(self, kube: Kube, reader: ConfigReader, generation: str) -> None:
        self.kube, self.reader, self.generation = kube, reader, generation
        self.nodes: list[scaling.Node] = []
        self._done: set[str] = set()
        self._errors: list[CloudInstanceProviderError] = []

    def get_non_terminated(self) -> dict[str, CloudInstance]:
        self.nodes = [n for n in map(scaling.node_of, self.kube.pods()) if n is not None]
        return {
            n.pod: CloudInstance(
                cloud_instance_id=n.pod,
                node_type=n.node_type,
                node_kind=NodeKind.HEAD if n.node_type == scaling.HEAD_NODE_TYPE else NodeKind.WORKER,
                is_running=n.running,
            )
            for n in self.nodes
        }

    def _change(self, request_id: str, why: str, apply: Any) -> Any:
        """Apply a change to the asks as they stand and write them; None when this request was carried out."""
        if request_id in self._done:
            return None
        before = scaling.current_asks(self.reader.cluster, self.nodes, self.generation)
        after = scaling.current_asks(self.reader.cluster, self.nodes, self.generation)
        result = apply(after)
        decision = scaling.describe(before, after, why)
        record = after.wire(self.generation)
        if decision:
            record.update({"lastDecision": decision, "lastDecisionTime": _now()})
            log.info("%s", decision)
        self.kube.write(record)
        self.reader.cluster.setdefault("status", {})["autoscaler"] = record
        self._done.add(request_id)
        return result

    def launch(self, shape: dict[str, int], request_id: str) -> None:
        wanted = ", ".join(f"{count} x {name}" for name, count in sorted(shape.items()))
        try:
            refused = self._change(
                request_id, f"Ray asked for {wanted} (resources no node has)",
                lambda asks: scaling.launch(self.reader.cluster, asks, shape, self.nodes),
            )
        except Exception as error:  # Ray retries what failed; it learns of it here
            refused, details = dict(shape), f"writing status.autoscaler failed: {error}"
        else:
            details = "capped by the group's maxReplicas"
        for name, count in (refused or {}).items():
            self._errors.append(LaunchNodeError(node_type=name, count=count, request_id=request_id,
                                                timestamp_ns=time.time_ns(), details=details))

    def terminate(self, ids: list[str], request_id: str) -> None:
        try:
            unknown = self._change(
                request_id, f"idle, drained by Ray: {', '.join(sorted(ids))}",
                lambda asks: scaling.terminate(asks, ids, self.nodes),
            )
        except Exception as error:
            unknown, details = list(ids), f"writing status.autoscaler failed: {error}"
        else:
            details = "not a worker of this generation"
        for pod in unknown or []:
            self._errors.append(TerminateNodeError(cloud_instance_id=pod, request_id=request_id,
                                                   timestamp_ns=time.time_ns(), details=details))

    def poll_errors(self) -> list[CloudInstanceProviderError]:
        errors, self._errors = self._errors, []
        return errors


class ServeplaneAutoscaler(Autoscaler):
    """Ray's v2 autoscaler with serveplane's provider in place of the one its config's provider type names."""

    def __init__(self, provider: Provider, **kwargs: Any) -> None:
        self._serveplane_provider = provider
        super().__init__(**kwargs)

    def _init_cloud_instance_provider(self, config: AutoscalingConfig, config_reader: IConfigReader) -> None:
        self._cloud_instance_provider = self._serveplane_provider  # type: ignore[assignment]  # Ray's own annotation


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _active(cluster: Mapping[str, Any], generation: str) -> bool:
    return (cluster.get("status") or {}).get("activeGeneration") == generation


def _session(gcs: GcsClient) -> str:
    """Ray's session name: the autoscaler's instance storage is keyed by it."""
    while True:
        try:
            name = gcs.internal_kv_get(b"session_name", KV_NAMESPACE_SESSION, timeout=TIMEOUT_S)
        except Exception as error:  # the head's Ray is still starting
            log.info("waiting for the GCS: %s", error)
            name = None
        if name:
            return str(name.decode())
        log.info("waiting for Ray's session to start")
        time.sleep(INTERVAL_S)


def run(environ: Mapping[str, str]) -> None:
    generation = environ["SERVEPLANE_GENERATION"]
    kube = Kube(environ["SERVEPLANE_CLUSTER_PATH"], environ["SERVEPLANE_POD_SELECTOR"])
    reader = ConfigReader(kube, environ["POD_NAMESPACE"])
    gcs = GcsClient(address=environ["SERVEPLANE_GCS_ADDRESS"])
    session = _session(gcs)
    autoscaler: ServeplaneAutoscaler | None = None
    while True:
        try:
            # A round reads the ServeCluster once (the reader's refresh, in Ray's round) and lists the pods once.
            if autoscaler is None or not _active(reader.cluster, generation):
                reader.refresh_cached_autoscaling_config()
            if not _active(reader.cluster, generation):
                log.debug("generation %s is not the active one: waiting", generation)
            else:
                if autoscaler is None:
                    autoscaler = ServeplaneAutoscaler(
                        Provider(kube, reader, generation), session_name=session, config_reader=reader, gcs_client=gcs
                    )
                state = autoscaler.update_autoscaling_state()
                if state is not None:
                    gcs.report_autoscaling_state(state.SerializeToString())
        except (requests.RequestException, scaling.NotReady) as error:
            log.warning("round skipped: %s", error)
        time.sleep(INTERVAL_S)


def main() -> int:
    logging.basicConfig(level=os.environ.get("SERVEPLANE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Ray's config check warns at every round that the legacy head_node/worker_nodes fields its own defaults add
    # are dropped: noise in the log, nothing to act on.
    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.ERROR)
    run(os.environ)
    return 0
