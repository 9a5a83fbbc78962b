"""PURE: the Ray cluster's cluster-wide settings: the autoscaler and GCS fault tolerance.

Apart from the groups (pods.py) because GCS fault tolerance is read first: its older form lives in the head's env and
rayStartParams, which the head's conversion must then leave alone.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from ..api.cluster import GcsFaultToleranceSpec
from .dispatch import dispatch, off_or_note
from .mapping import dig, errors
from .outputs import Output, child

# KubeRay's annotations of GCS fault tolerance before gcsFaultToleranceOptions: on, and the Redis key prefix.
GCS_ANNOTATIONS = ("ray.io/ft-enabled", "ray.io/external-storage-namespace")


def autoscaling(rc: Mapping[str, Any], path: str, out: Output) -> dict[str, Any]:
    """enableInTreeAutoscaling and autoscalerOptions -> spec.autoscaling (serveplane always runs Ray's v2)."""
    result: dict[str, Any] = {}
    if "enableInTreeAutoscaling" in rc:
        result["enabled"] = bool(rc["enableInTreeAutoscaling"])
        out.map(child(path, "enableInTreeAutoscaling"))
    options = rc.get("autoscalerOptions")
    if options is None:
        return result
    # Ray's KubeRay config reader: Conservative is upscaling_speed 1, Default and Aggressive 1000.
    speeds = {"Conservative": 1.0, "Default": 1000.0, "Aggressive": 1000.0}

    def idle(value: Any, where: str) -> None:
        result["idle_timeout_seconds"] = value
        out.map(where)

    def mode(value: Any, where: str) -> None:
        if isinstance(value, str) and value in speeds:
            result["upscaling_speed"] = speeds[value]
            out.map(where)
        else:
            out.note(where, f"unknown upscalingMode {value}")

    def version(value: Any, where: str) -> None:
        off_or_note(value, where, out, "serveplane runs Ray's v2 autoscaler only", off="v2")

    container = "serveplane builds the autoscaler's container beside the head itself"
    reasons = {k: container for k in ("resources", "image", "imagePullPolicy", "securityContext", "env", "envFrom",
                                       "volumeMounts")}
    handlers = {"idleTimeoutSeconds": idle, "upscalingMode": mode, "version": version}
    dispatch(options, child(path, "autoscalerOptions"), out, handlers, reasons, "autoscalerOptions")
    return result


def _secret_ref(credential: Any, path: str, out: Output) -> dict[str, Any] | None:
    """KubeRay's RedisCredential -> serveplane's RedisPassword (a Secret key only)."""
    ref = dig(credential, "valueFrom", "secretKeyRef")
    if isinstance(ref, dict) and set(ref) <= {"name", "key"}:
        out.map(path)
        return {"secret_key_ref": ref}
    out.note(path, "serveplane reads Redis's password from a Secret key only (gcsFaultTolerance.redisPassword."
             "secretKeyRef): put it in a Secret")
    return None


def _gcs_options(options: Any, path: str, out: Output) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def keep(name: str) -> Callable[[Any, str], None]:
        def handler(value: Any, where: str) -> None:
            result[name] = value
            out.map(where)
        return handler

    def password(value: Any, where: str) -> None:
        ref = _secret_ref(value, where, out)
        if ref:
            result["redis_password"] = ref

    handlers = {"redisAddress": keep("redis_address"), "externalStorageNamespace": keep("external_storage_namespace"),
                "redisPassword": password}
    reasons = {"redisUsername": "serveplane's GCS fault tolerance has no Redis user name (Redis's default user)"}
    dispatch(options, path, out, handlers, reasons, "gcsFaultToleranceOptions")
    return result


def _head_env(head_group: Mapping[str, Any], head_path: str) -> tuple[dict[str, tuple[str, dict[str, Any]]], str]:
    """The env of the head's Ray container (KubeRay's first) by name -> (its path, the entry)."""
    container_path = child(child(child(child(head_path, "template"), "spec"), "containers"), 0)
    env = dig(head_group, "template", "spec", "containers", 0, "env")
    env = env if isinstance(env, list) else []
    env_path = child(container_path, "env")
    named = {str(item.get("name")): (child(env_path, index), item) for index, item in enumerate(env)
             if isinstance(item, dict)}
    return named, env_path


def _legacy_gcs(head_group: Mapping[str, Any], head_path: str, out: Output) -> tuple[dict[str, Any], set[str]]:
    """The GCS fault tolerance of KubeRay before gcsFaultToleranceOptions: RAY_REDIS_ADDRESS in the head's env and
    a redis-password flag, often `$REDIS_PASSWORD` from a Secret through the env. Returns it and the input paths it
    used (mapped or noted here), which the head's conversion then leaves alone."""
    env, _ = _head_env(head_group, head_path)
    if "RAY_REDIS_ADDRESS" not in env or "value" not in env["RAY_REDIS_ADDRESS"][1]:
        return {}, set()
    address_path, address = env["RAY_REDIS_ADDRESS"]
    result: dict[str, Any] = {"redis_address": address["value"]}
    out.map(address_path)
    used = {address_path}
    params = head_group.get("rayStartParams") if isinstance(head_group.get("rayStartParams"), dict) else {}
    flag = (params or {}).get("redis-password")
    if flag is None:
        return result, used
    flag_path = child(child(head_path, "rayStartParams"), "redis-password")
    used.add(flag_path)
    variable = flag.strip("${}") if isinstance(flag, str) and flag.startswith("$") else None
    if variable in env:
        env_path, item = env[variable]
        used.add(env_path)
        ref = _secret_ref(item, env_path, out)
        if ref:
            result["redis_password"] = ref
            out.map(flag_path)
            return result, used
    out.note(flag_path, "serveplane reads Redis's password from a Secret key only (gcsFaultTolerance.redisPassword."
             "secretKeyRef): put it in a Secret")
    return result, used


def gcs_fault_tolerance(
    rc: Mapping[str, Any], path: str, annotations: Mapping[str, Any], annotations_path: str, out: Output
) -> tuple[dict[str, Any] | None, set[str]]:
    """spec.gcsFaultTolerance from gcsFaultToleranceOptions or the older annotations and head env; also the input
    paths it used, which the head's conversion must then leave alone."""
    enabled_key, namespace_key = GCS_ANNOTATIONS
    head_group = rc.get("headGroupSpec") if isinstance(rc.get("headGroupSpec"), dict) else {}
    options_path = child(path, "gcsFaultToleranceOptions")
    used: set[str] = set()
    if "gcsFaultToleranceOptions" in rc:
        result = _gcs_options(rc["gcsFaultToleranceOptions"], options_path, out)
    else:
        result, used = _legacy_gcs(head_group or {}, child(path, "headGroupSpec"), out)
    if enabled_key in annotations:
        out.map(child(annotations_path, enabled_key))
    if namespace_key in annotations:
        result.setdefault("external_storage_namespace", annotations[namespace_key])
        out.map(child(annotations_path, namespace_key))
    enabled = str(annotations.get(enabled_key, "")).lower() == "true" or "gcsFaultToleranceOptions" in rc
    if not result.get("redis_address"):
        if enabled:
            out.note(options_path if "gcsFaultToleranceOptions" in rc else child(annotations_path, enabled_key),
                     "GCS fault tolerance without a Redis address (RAY_REDIS_ADDRESS) is not converted")
        return None, used
    try:
        GcsFaultToleranceSpec.model_validate(result)
    except ValidationError as error:
        out.forget(options_path)
        out.note(options_path, f"GCS fault tolerance not converted: {errors(error)}")
        return None, used
    return result, used
