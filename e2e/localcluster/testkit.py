"""Small helpers the integration and e2e tests share: bounded waiting, and reading objects and conditions."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .controlplane import ControlPlane


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll `probe` until it returns something truthy (returned), or fail naming `what` and the last answer.

    OSError, KeyError and ValueError from the probe count as "not yet": a server still starting, a field
    not written yet.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, KeyError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


def get_object(
    cp: ControlPlane, kind: str, name: str, namespace: str | None = None, *extra: str
) -> dict[str, Any] | None:
    """The object as `kubectl get -o json` shows it, or None when it does not exist."""
    args = ["get", kind, name, "-o", "json", *extra] + (["-n", namespace] if namespace else [])
    result = cp.kubectl(*args, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of type `kind` in the object's status, or {}."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    return {}
