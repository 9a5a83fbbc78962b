"""PURE: the environment every Ray container of a ServeCluster shares: token authentication and GCS fault
tolerance. Secrets are only ever referenced (secretKeyRef), never copied into a pod's spec."""
from __future__ import annotations

import hashlib
from typing import Any

from ..api.cluster import AuthMode, GcsFaultToleranceSpec, ServeClusterSpec
from . import auth, common


def auth_env(spec: ServeClusterSpec, cluster: str) -> list[dict[str, Any]]:
    """Ray's token authentication (RAY_AUTH_MODE, the token from the cluster's Secret); nothing when Disabled."""
    if spec.auth.mode is not AuthMode.TOKEN:
        return []
    ref = {"name": common.token_secret_name(cluster), "key": auth.TOKEN_KEY}
    return [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": ref}},
    ]


# Read by serveplane.runtime (runtime/args.py, REDIS_PASSWORD_ENV), which passes it to `ray start --redis-password`.
REDIS_PASSWORD_ENV = "SERVEPLANE_REDIS_PASSWORD"
# How long a worker's raylet waits for a lost GCS before it gives up (Ray's default is 60 s): long enough for a new
# head pod to be scheduled, pull its image and start, as KubeRay sets it for GCS fault tolerance.
WORKER_GCS_RECONNECT_S = 600
UID_DIGEST_LEN = 8


def uid_digest(uid: str) -> str:
    """A short hash of a ServeCluster's UID, which makes an explicit storage namespace the cluster's own."""
    return hashlib.sha256(uid.encode()).hexdigest()[:UID_DIGEST_LEN]


def storage_namespace(ft: GcsFaultToleranceSpec, uid: str, generation: str = "") -> str:
    """The prefix of this cluster's keys in Redis, always its own: the ServeCluster's UID (unique, and stable for
    the ServeCluster's life, so every new head finds its predecessor's state), or the spec's
    `externalStorageNamespace` followed by a hash of the UID (two clusters given the same one, e.g. namesakes in
    two namespaces converted from KubeRay, never share keys, and deleting one never wipes the other's); then the
    generation's name: two generations are two Ray clusters, and two GCSs must never share state.

    The cluster's own namespace (no generation) is in every head's pod spec, so in the generation's hash
    (pods.generation_name): a cluster's UID is in its generation name, and a change of this rule starts new
    generations (an upgrade, with a new GCS state), never a running generation's state under a new name."""
    explicit = ft.external_storage_namespace
    base = f"{explicit}-{uid_digest(uid)}" if explicit else uid
    return f"{base}-{generation}" if generation else base


def redis_env(ft: GcsFaultToleranceSpec, uid: str, generation: str = "") -> list[dict[str, Any]]:
    """Where the GCS's state lives: what a head and the Redis clean-up both need."""
    env: list[dict[str, Any]] = [
        {"name": "RAY_REDIS_ADDRESS", "value": ft.redis_address},
        {"name": "RAY_external_storage_namespace", "value": storage_namespace(ft, uid, generation)},
    ]
    if ft.redis_password is not None:
        ref = ft.redis_password.secret_key_ref
        env.append({"name": REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def gcs_env(spec: ServeClusterSpec, *, head: bool, uid: str, generation: str) -> list[dict[str, Any]]:
    """GCS fault tolerance: the head's Redis settings, and a worker's patience while its head is away."""
    ft = spec.gcs_fault_tolerance
    if ft is None:
        return []
    if head:
        return redis_env(ft, uid, generation)
    return [{"name": "RAY_gcs_rpc_server_reconnect_timeout_s", "value": str(WORKER_GCS_RECONNECT_S)}]


def ray_env(
    spec: ServeClusterSpec, *, head: bool, cluster: str, uid: str, generation: str
) -> list[dict[str, Any]]:
    return auth_env(spec, cluster) + gcs_env(spec, head=head, uid=uid, generation=generation)
