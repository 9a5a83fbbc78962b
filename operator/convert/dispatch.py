"""PURE: a KubeRay object walked key by key: each key to its handler, else noted with why it has no equivalent.

Every KubeRay part (groups, containers, pod templates, Services, metadata) is walked by this one function, so that
no key of the input is passed over unnoticed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .outputs import Output, child


def dispatch(
    data: Any,
    path: str,
    out: Output,
    handlers: Mapping[str, Callable[[Any, str], None]],
    reasons: Mapping[str, str],
    what: str,
    otherwise: Callable[[str, Any, str], None] | None = None,
) -> None:
    """Each key of the KubeRay object `data` to its handler, else noted with its reason, else to `otherwise`
    (key, value, path) when given, else noted as unknown."""
    if not isinstance(data, dict):
        out.note(path, f"{what} must be a map")
        return
    if not data:
        out.map(path)  # nothing in it, nothing lost
    for key, value in data.items():
        where = child(path, str(key))
        if key in handlers:
            handlers[key](value, where)
        elif key in reasons or otherwise is None:
            out.note(where, reasons.get(key, f"not a field of KubeRay v1.5.0's {what} that serveplane knows"))
        else:
            otherwise(str(key), value, where)


def off_or_note(value: Any, path: str, out: Output, reason: str, off: Any = False) -> None:
    """A KubeRay switch: its off value means what serveplane does anyway; any other is noted."""
    if value == off or value is None:
        out.map(path)
    else:
        out.note(path, reason)
