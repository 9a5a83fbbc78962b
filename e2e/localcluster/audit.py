"""Read the local API server's audit log: who made which requests.

The launcher runs kube-apiserver with an audit policy at level ``Metadata``
for every request, JSON lines, written synchronously (see components.py), so
a request is in the log by the time its response has been sent. Use it to ask
what a client (the operator, under its ServiceAccount) really did::

    from serveplane.localcluster import audit

    t0 = time.time()
    ...  # let the operator work
    calls = audit.count(audit.read(cp.audit_log), user="system:serviceaccount:ns:sa", since=t0)
    assert calls[("patch", "serveclusters/status")] <= 3

Only the ``ResponseComplete`` stage is read (one event per request). A watch
gets that event when it ends (the server's timeout, or the client going
away), so a watch still open is not in the log yet.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    """One answered request, from its audit event."""

    user: str
    """The authenticated user, e.g. ``admin`` or ``system:serviceaccount:<namespace>:<name>``."""
    verb: str
    """The Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection; for a request
    that names no resource (``/readyz``, ``/api``), the lower-cased HTTP method."""
    resource: str
    """The resource's plural (``configmaps``); empty for a request that names no resource."""
    subresource: str
    """``status``, ``scale``, ``token``, ...; empty if none."""
    namespace: str
    """Empty for cluster-scoped resources and requests across all namespaces."""
    name: str
    """The object's name; empty for list, watch and (usually) create."""
    code: int
    """The HTTP status code of the response; 0 if the event has none."""
    time: datetime
    """When the API server received the request (timezone-aware, UTC)."""
    group: str = ""
    """The API group; empty for the core group."""
    uri: str = ""
    """The request URI, query string included."""

    @property
    def target(self) -> str:
        """What was asked for: ``resource`` or ``resource/subresource``; the path for a non-resource request."""
        if not self.resource:
            return self.uri.split("?", 1)[0]
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def parse(event: dict[str, Any]) -> Request:
    """The :class:`Request` of one audit event (a decoded ``audit.k8s.io/v1`` ``Event``)."""
    ref = event.get("objectRef") or {}
    return Request(
        user=(event.get("user") or {}).get("username", ""),
        verb=event.get("verb", ""),
        resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""),
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        time=datetime.fromisoformat(event["requestReceivedTimestamp"]),
        group=ref.get("apiGroup", ""),
        uri=event.get("requestURI", ""),
    )


def read(path: Path | str) -> list[Request]:
    """Every answered request in the audit log at ``path``, in the order they were logged.

    A missing file reads as no requests. A last line still being written is
    skipped. Only the current file is read, not the one rotated away at
    100 MB (``--audit-log-maxsize``).
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    # Everything before the last newline is whole; what follows it may be half a line.
    requests = []
    for line in lines[:-1]:
        if not line:
            continue
        event = json.loads(line)
        if event.get("stage") == "ResponseComplete":
            requests.append(parse(event))
    return requests


def _as_datetime(moment: datetime | float) -> datetime:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"{moment!r} has no timezone; the audit log's times are UTC")
        return moment
    return datetime.fromtimestamp(moment, tz=UTC)


def select(
    requests: Iterable[Request],
    *,
    user: str | None = None,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
    exclude_verbs: Iterable[str] = (),
) -> list[Request]:
    """The requests by ``user`` (any user if None) received in [``since``, ``until``), without ``exclude_verbs``.

    ``since`` and ``until`` are timezone-aware datetimes or ``time.time()`` values.
    """
    start = None if since is None else _as_datetime(since)
    end = None if until is None else _as_datetime(until)
    excluded = frozenset(exclude_verbs)
    return [
        r
        for r in requests
        if (user is None or r.user == user)
        and (start is None or r.time >= start)
        and (end is None or r.time < end)
        and r.verb not in excluded
    ]


def count(
    requests: Iterable[Request],
    *,
    user: str,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
    exclude_verbs: Iterable[str] = ("watch",),
) -> collections.Counter[tuple[str, str]]:
    """How many requests ``user`` made, by ``(verb, target)``, e.g. ``("patch", "serveclusters/status")``.

    ``target`` is :attr:`Request.target`: ``resource[/subresource]``, or the path of a non-resource request
    (``("get", "/api")``). Watches are left out by default: they are long-lived, and whether one has ended
    (and so is logged) depends on timing. ``since``/``until`` as in :func:`select`.
    """
    chosen = select(requests, user=user, since=since, until=until, exclude_verbs=exclude_verbs)
    return collections.Counter((r.verb, r.target) for r in chosen)
