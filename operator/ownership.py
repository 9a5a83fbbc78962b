"""PURE: whether a live owned object already holds what the operator wants of it."""

from __future__ import annotations

from typing import Any


def covers(live: Any, wanted: Any) -> bool:
    """Whether the live object already holds every field of `wanted` with its value.

    Fields the server defaults or others set (a Service's clusterIP, a port's protocol, foreign labels) are
    not the operator's to compare; a list must match item by item, as server-side apply would make it.
    """
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(covers, live, wanted))
    return bool(live == wanted)
