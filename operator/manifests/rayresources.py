"""PURE: what a Ray container's Kubernetes resources imply for `ray start` and for its /dev/shm, as KubeRay does.

Called by pods.py with the Ray container's resources after the podTemplate merge. Without these flags Ray would
size itself from the whole machine's CPUs and GPUs (cgroup limits aside), so a pod given 2 of 64 cores would
offer 64 CPUs to Ray's scheduler. A flag set in rayStartParams always wins.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from ..api import quantity

# Ray's default share of a node's memory for its object store (DEFAULT_OBJECT_STORE_MEMORY_PROPORTION in
# ray/_private/ray_constants.py; the operator does not import Ray). Ray uses /dev/shm only if it holds that much.
OBJECT_STORE_SHARE = Decimal("0.3")


def _key(param: str) -> str:
    # The runtime accepts num_cpus and --num-cpus too (runtime/args.py parse_ray_params normalises them).
    return param.strip().lstrip("-").replace("_", "-")


def _nonzero(resources: dict[str, Any], section: str, name: str) -> int | None:
    value = (resources.get(section) or {}).get(name)
    return quantity.ceil_int(value) if value is not None and quantity.parse(value) != 0 else None


def _gpus(resources: dict[str, Any]) -> int | None:
    """The first (by name) limit of a GPU resource, nvidia.com/gpu or another vendor's */gpu, that is not zero."""
    limits = resources.get("limits") or {}
    counts = (_nonzero(resources, "limits", name) for name in sorted(limits) if name.endswith("gpu"))
    return next((count for count in counts if count is not None), None)


def ray_start_params(params: dict[str, str], resources: dict[str, Any]) -> dict[str, str]:
    """`params` plus num-cpus, num-gpus and memory from the resources where `params` does not set them.

    num-cpus: the cpu limit, else the cpu request, rounded up to whole cores (KubeRay's `Quantity.Value()`);
    num-gpus: the GPU limit; memory: the memory limit in bytes. A zero or absent quantity implies nothing.
    """
    implied = {
        "num-cpus": _nonzero(resources, "limits", "cpu") or _nonzero(resources, "requests", "cpu"),
        "num-gpus": _gpus(resources),
        "memory": _nonzero(resources, "limits", "memory"),
    }
    given = {_key(param) for param in params}
    return {**{k: str(v) for k, v in implied.items() if v is not None and k not in given}, **params}


def shm_size_limit(params: dict[str, str], resources: dict[str, Any]) -> int | None:
    """Bytes of the memory-backed /dev/shm: object-store-memory when set, else Ray's share of the memory limit.

    None (no limit, the pod's memory limit still applies) when neither is known.
    """
    given = {_key(param): value for param, value in params.items()}
    if "object-store-memory" in given:
        try:
            return int(given["object-store-memory"])
        except ValueError:
            return None  # not a whole number of bytes: `ray start` refuses it and says why
    memory = _nonzero(resources, "limits", "memory")
    return None if memory is None else math.ceil(memory * OBJECT_STORE_SHARE)


_RAY_NAMES = {"num-cpus": "CPU", "num-gpus": "GPU", "memory": "memory"}


def ray_resources(params: dict[str, str]) -> dict[str, float]:
    """The resources a node started with these `ray start` flags offers Ray's scheduler, as far as the flags say
    (Ray's autoscaler sizes a group's new nodes by them): CPU, GPU, memory and the custom `resources`. A value
    that is no number is left out; `ray start` refuses it and says why."""
    out: dict[str, float] = {}
    for param, value in params.items():
        key = _key(param)
        try:
            if key in _RAY_NAMES:
                out[_RAY_NAMES[key]] = float(value)
            elif key == "resources":
                custom = json.loads(value)
                out.update({str(k): float(v) for k, v in custom.items()} if isinstance(custom, dict) else {})
        except (TypeError, ValueError):
            continue
    return out
