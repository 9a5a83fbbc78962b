"""Leader election on a `coordination.k8s.io/v1` Lease, with the semantics of client-go's leaderelection package.

Several replicas of the operator run; the one whose identity is the Lease's `holderIdentity` reconciles, the
others wait. The Lease's spec is the election record:

- `holderIdentity`: who leads ("" after a clean release: nobody);
- `leaseDurationSeconds`: how long the others wait, after they last saw the record change, before taking over;
- `acquireTime`: when the current holder took it; `renewTime`: when it last renewed;
- `leaseTransitions`: how many times it changed hands.

As in client-go:

- **Expiry is judged on this process's own monotonic clock**, never by comparing `renewTime` with the wall
  clock: a standby notes when it first saw the current record (a change of any of those fields), and takes
  over only once `leaseDurationSeconds` have passed on its clock since then. Clock skew between nodes cannot
  make a standby take a lease that is still being renewed.
- **Optimistic concurrency**: every write is a `PUT` carrying the resourceVersion the writer last saw (or a
  `POST` when there is no Lease), so of two standbys racing for an expired lease exactly one wins (409 for the
  other).
- **The leader renews without reading first** (client-go's "fast path"): it replaces the Lease with the object
  its own previous write returned. Only when that write is refused (409: the Lease changed meanwhile; 404: it
  was deleted) does it read the Lease once and decide again from what it finds.
- A holder that finds the Lease taken by someone else has lost it; one that cannot renew gives up **before**
  any standby could take over: its deadline is the *send* time of its last successful write (which precedes
  the moment any standby saw that write) plus the lease duration, minus one retry period left for stopping
  its work. Standbys measure from when they *received* the record, so the two intervals cannot overlap.
- `release()` writes `holderIdentity: ""` and `leaseDurationSeconds: 1`: a standby takes over at its next
  poll instead of waiting for expiry.

The module talks to the API server through a small async protocol (`LeaseApi`) with two implementations: one
over the official client's `CoordinationV1Api` (synchronous, each call in a thread via `asyncio.to_thread`),
and one over the operator's own aiohttp client (`operator/clients/kube.py`, which dropped the official client
to save ~30 MB of resident memory). `LeaderElector(api=...)` accepts either object directly. The official
client is imported only when its adapter is used. Nothing here imports kopf.

The decisions (`observe`, `expired`, `held_by_other`, `next_record`, `released_record`, `lease_body`,
`renew_deadline`) are pure functions, tested without a server (tests/unit/test_leader.py); the elector only
sequences them with I/O. The election itself is tested against a real API server, with replicas in separate
processes killed by SIGKILL (tests/integration/test_leader.py).

Settings (`config_from_env`), set by the Helm chart:

| variable | meaning | default |
|---|---|---|
| `SERVEPLANE_LEADER_ELECTION` | `true`/`false` | `false` (the chart sets `true`) |
| `SERVEPLANE_LEADER_ELECTION_NAMESPACE` | the Lease's namespace | `POD_NAMESPACE`; required when enabled |
| `SERVEPLANE_LEASE_NAME` | the Lease's name | `serveplane-operator` |
| `SERVEPLANE_LEASE_DURATION_S` | whole seconds, at least 1 | `10` |
| `SERVEPLANE_LEASE_RENEW_PERIOD_S` | seconds between renewals | `2` |
| `SERVEPLANE_LEASE_RETRY_PERIOD_S` | seconds between attempts (standby polls, failed renewals) | `2` |
| `POD_NAME` | this replica's identity | `<hostname>_<pid>` |
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, runtime_checkable

from .settings import SettingsError

if TYPE_CHECKING:
    import kubernetes.client

log = logging.getLogger(__name__)

Obj = dict[str, Any]

API_VERSION = "coordination.k8s.io/v1"
DEFAULT_LEASE_NAME = "serveplane-operator"
RELEASED_LEASE_DURATION_S = 1
"""What release() writes as leaseDurationSeconds, as client-go does (together with an empty holder)."""

ENABLED = "SERVEPLANE_LEADER_ELECTION"
NAMESPACE = "SERVEPLANE_LEADER_ELECTION_NAMESPACE"
LEASE_NAME = "SERVEPLANE_LEASE_NAME"
LEASE_DURATION = "SERVEPLANE_LEASE_DURATION_S"
RENEW_PERIOD = "SERVEPLANE_LEASE_RENEW_PERIOD_S"
RETRY_PERIOD = "SERVEPLANE_LEASE_RETRY_PERIOD_S"


# --- configuration ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LeaseConfig:
    """Which Lease to compete for, as whom, and the timing. Invalid combinations raise ValueError."""

    namespace: str
    """The Lease's namespace (the chart: the release's namespace)."""
    name: str = DEFAULT_LEASE_NAME
    """The Lease's name; every replica of one operator uses the same one."""
    identity: str
    """This replica's holderIdentity; unique among the replicas (the chart: the pod's name)."""
    lease_duration_s: float = 10.0
    """How long standbys wait after they last saw the record change. Whole seconds (the Lease stores an int)."""
    renew_period_s: float = 2.0
    """The leader renews this often."""
    retry_period_s: float = 2.0
    """Standbys poll this often; a leader whose renewal failed retries this often."""

    def __post_init__(self) -> None:
        for field in ("namespace", "name", "identity"):
            if not getattr(self, field):
                raise ValueError(f"LeaseConfig.{field} must not be empty")
        if self.lease_duration_s < 1 or self.lease_duration_s != int(self.lease_duration_s):
            raise ValueError(
                f"LeaseConfig.lease_duration_s={self.lease_duration_s!r}: must be a whole number of seconds, at "
                "least 1 (the Lease's leaseDurationSeconds is an integer)")
        for field in ("renew_period_s", "retry_period_s"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"LeaseConfig.{field}={value!r}: must be a positive number of seconds")
        if self.renew_period_s + self.retry_period_s >= self.lease_duration_s:
            raise ValueError(
                f"LeaseConfig: renew_period_s ({self.renew_period_s}) + retry_period_s ({self.retry_period_s}) "
                f"must be less than lease_duration_s ({self.lease_duration_s}): a leader gives up one retry "
                "period before its lease could expire, and must get at least one renewal in before that")

    @property
    def lease_seconds(self) -> int:
        """leaseDurationSeconds as written into the Lease."""
        return int(self.lease_duration_s)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def default_identity() -> str:
    """Outside a pod (no POD_NAME): hostname and pid, unique among processes on one machine and across machines."""
    return f"{socket.gethostname()}_{os.getpid()}"


def config_from_env(env: Mapping[str, str]) -> LeaseConfig | None:
    """The election settings from the environment (see the module's table); None when election is disabled.

    Raises SettingsError (a ValueError) naming the variable whose value cannot be used.
    """
    raw = env.get(ENABLED)
    if raw is None:
        return None
    if raw.strip().lower() in _FALSE:
        return None
    if raw.strip().lower() not in _TRUE:
        raise SettingsError(f"{ENABLED}={raw!r} is not valid: use true or false (default: false)")

    namespace = env.get(NAMESPACE) or env.get("POD_NAMESPACE") or ""
    if not namespace:
        raise SettingsError(f"{ENABLED}=true needs the Lease's namespace: set {NAMESPACE} (or POD_NAMESPACE)")
    if not _DNS_LABEL.match(namespace):
        source = NAMESPACE if env.get(NAMESPACE) else "POD_NAMESPACE"
        raise SettingsError(f"{source}={namespace!r} is not a namespace name (a DNS label)")
    name = env.get(LEASE_NAME) or DEFAULT_LEASE_NAME
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise SettingsError(f"{LEASE_NAME}={name!r} is not a valid Lease name (a DNS subdomain)")

    defaults = LeaseConfig(namespace=namespace, identity="-")

    def seconds(variable: str, default: float) -> float:
        value = env.get(variable)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise SettingsError(
                f"{variable}={value!r} is not valid: a positive number of seconds (default: {default:g})")
        return number

    lease = seconds(LEASE_DURATION, defaults.lease_duration_s)
    if lease < 1 or lease != int(lease):
        raise SettingsError(f"{LEASE_DURATION}={env[LEASE_DURATION]!r} is not valid: whole seconds, at least 1")
    renew = seconds(RENEW_PERIOD, defaults.renew_period_s)
    retry = seconds(RETRY_PERIOD, defaults.retry_period_s)
    if renew + retry >= lease:
        raise SettingsError(
            f"{RENEW_PERIOD}={renew:g} + {RETRY_PERIOD}={retry:g} must be less than {LEASE_DURATION}={lease:g}: "
            "the leader gives up one retry period before its lease could expire")
    return LeaseConfig(
        namespace=namespace, name=name, identity=env.get("POD_NAME") or default_identity(),
        lease_duration_s=lease, renew_period_s=renew, retry_period_s=retry,
    )


# --- the record and the decisions (pure) --------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRecord:
    """The election record: the fields of the Lease's spec that client-go's leaderelection reads and writes."""

    holder: str = ""
    lease_duration_s: int = 0
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    """What this process last knew of the Lease."""

    record: LeaseRecord
    lease: Obj
    """The whole Lease as last read or written: its metadata (resourceVersion, labels) go back with the next PUT."""
    seen_at: float
    """time.monotonic() when this process first saw `record` (for its own writes: when it sent the write)."""

    @property
    def resource_version(self) -> str:
        return str(self.lease.get("metadata", {}).get("resourceVersion", ""))


def parse_time(value: Any) -> datetime | None:
    """A Lease's MicroTime ("2026-01-02T03:04:05.123456Z", or isoformat with an offset) as an aware datetime."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """MicroTime as the API server parses it (RFC 3339 with exactly six fractional digits, UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_record(lease: Obj) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        lease_duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=parse_time(spec.get("acquireTime")),
        renew_time=parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def observe(previous: Observation | None, lease: Obj, now: float) -> Observation:
    """The observation after reading `lease` at monotonic time `now`: the clock restarts only if the record changed.

    A change of resourceVersion alone (someone edited a label) is not a renewal and does not restart it.
    """
    record = parse_record(lease)
    if previous is not None and previous.record == record:
        return Observation(record, lease, previous.seen_at)
    return Observation(record, lease, now)


def expired(observation: Observation, now: float) -> bool:
    """Whether the holder's lease has run out, on this process's clock: its own duration since the record changed."""
    return now >= observation.seen_at + observation.record.lease_duration_s


def held_by_other(observation: Observation, identity: str, now: float) -> bool:
    """Whether someone else holds a lease that has not expired (then `identity` must wait)."""
    holder = observation.record.holder
    return bool(holder) and holder != identity and not expired(observation, now)


def next_record(current: LeaseRecord | None, *, identity: str, lease_duration_s: int, now: datetime) -> LeaseRecord:
    """The record `identity` writes to renew (it holds `current`) or to take the lease over (anyone else, or nobody).

    A renewal keeps acquireTime and the transition count; a takeover sets acquireTime and counts one more
    transition, as client-go does; a new Lease starts at 0 transitions.
    """
    if current is not None and current.holder == identity:
        return LeaseRecord(identity, lease_duration_s, current.acquire_time or now, now, current.transitions)
    transitions = 0 if current is None else current.transitions + 1
    return LeaseRecord(identity, lease_duration_s, now, now, transitions)


def released_record(current: LeaseRecord, now: datetime) -> LeaseRecord:
    """What release() writes: nobody holds it, for 1 s, so a standby takes it at its next attempt."""
    return LeaseRecord("", RELEASED_LEASE_DURATION_S, now, now, current.transitions)


def lease_body(previous: Obj | None, *, namespace: str, name: str, record: LeaseRecord) -> Obj:
    """The Lease to write: `previous` (metadata with its resourceVersion, other spec fields) with the record in it,
    or a new Lease when there is none."""
    spec: Obj = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.lease_duration_s,
        "leaseTransitions": record.transitions,
    }
    for key, value in (("acquireTime", record.acquire_time), ("renewTime", record.renew_time)):
        if value is not None:
            spec[key] = format_time(value)
    if previous is None:
        return {
            "apiVersion": API_VERSION, "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "serveplane"}},
            "spec": spec,
        }
    return {
        **previous, "apiVersion": API_VERSION, "kind": "Lease",
        "spec": {**(previous.get("spec") or {}), **spec},
    }


def renew_deadline(renewed_at: float, config: LeaseConfig) -> float:
    """The monotonic time by which a leader that could not renew must consider the lease lost.

    `renewed_at` is when it *sent* its last successful write: standbys saw that write later, so they cannot
    take over before renewed_at + lease duration; one retry period is left for the operator to stop its work.
    """
    return renewed_at + config.lease_seconds - config.retry_period_s


# --- the API ------------------------------------------------------------------------------------------------------


class LeaseConflict(Exception):
    """409: the Lease changed since the resourceVersion we sent, or (on create) it exists already."""


class LeaseNotFound(Exception):
    """404 on a replace: the Lease was deleted."""


@runtime_checkable
class LeaseApi(Protocol):
    """The three calls the elector makes; Leases as dicts shaped as the API server returns them."""

    async def read(self, namespace: str, name: str, timeout: float) -> Obj | None:
        """GET; None when there is no such Lease."""

    async def create(self, namespace: str, body: Obj, timeout: float) -> Obj:
        """POST; LeaseConflict when it exists already."""

    async def replace(self, namespace: str, name: str, body: Obj, timeout: float) -> Obj:
        """PUT with body's resourceVersion; LeaseConflict on 409, LeaseNotFound on 404."""


class SupportsLeaseRequests(Protocol):
    """The operator's aiohttp client (operator/clients/kube.py's Kube): raw requests and the Lease's path."""

    async def request(self, method: str, path: str, body: Obj | None = None, **kwargs: Any) -> Obj | None: ...

    def lease_path(self, namespace: str, name: str = "") -> str: ...


def _raise_mapped(error: Exception) -> NoReturn:
    status = getattr(error, "status", None)
    if status == 409:
        raise LeaseConflict(str(error)) from error
    if status == 404:
        raise LeaseNotFound(str(error)) from error
    raise error


class KubeLeases:
    """LeaseApi over the operator's own aiohttp client (its errors carry the HTTP code in `.status`)."""

    def __init__(self, kube: SupportsLeaseRequests) -> None:
        self._kube = kube

    async def read(self, namespace: str, name: str, timeout: float) -> Obj | None:
        return await self._kube.request("GET", self._kube.lease_path(namespace, name), tolerate=(404,))

    async def create(self, namespace: str, body: Obj, timeout: float) -> Obj:
        try:
            result = await self._kube.request("POST", self._kube.lease_path(namespace), body)
        except Exception as error:
            _raise_mapped(error)
        if result is None:  # the client swallows a 403 in a terminating namespace
            raise RuntimeError(f"creating Lease {namespace}/{body['metadata']['name']} was refused")
        return result

    async def replace(self, namespace: str, name: str, body: Obj, timeout: float) -> Obj:
        try:
            result = await self._kube.request("PUT", self._kube.lease_path(namespace, name), body)
        except Exception as error:
            _raise_mapped(error)
        if result is None:
            raise RuntimeError(f"replacing Lease {namespace}/{name} was refused")
        return result


class CoordinationLeases:
    """LeaseApi over the official client's CoordinationV1Api; each (blocking) call runs in a thread."""

    def __init__(self, api: kubernetes.client.CoordinationV1Api) -> None:
        self._api = api

    def _to_dict(self, lease: Any) -> Obj:
        return self._api.api_client.sanitize_for_serialization(lease)

    @staticmethod
    def _to_model(body: Obj) -> Any:
        from kubernetes.client import V1Lease

        lease = V1Lease.from_dict(body)
        assert lease is not None and lease.spec is not None
        # The client serialises datetimes with isoformat(), which drops the fraction when microseconds are 0, and
        # the API server's MicroTime then refuses the value (it wants six digits): keep the fraction non-zero.
        for field in ("acquire_time", "renew_time"):
            value = getattr(lease.spec, field, None)
            if isinstance(value, datetime) and value.microsecond == 0:
                setattr(lease.spec, field, value.replace(microsecond=1))
        return lease

    async def _call(self, method: Any, *args: Any, timeout: float) -> Obj:
        from kubernetes.client.exceptions import ApiException

        try:
            result = await asyncio.to_thread(method, *args, _request_timeout=max(timeout, 0.1))
        except ApiException as error:
            _raise_mapped(error)
        return self._to_dict(result)

    async def read(self, namespace: str, name: str, timeout: float) -> Obj | None:
        try:
            return await self._call(self._api.read_namespaced_lease, name, namespace, timeout=timeout)
        except LeaseNotFound:
            return None

    async def create(self, namespace: str, body: Obj, timeout: float) -> Obj:
        return await self._call(self._api.create_namespaced_lease, namespace, self._to_model(body), timeout=timeout)

    async def replace(self, namespace: str, name: str, body: Obj, timeout: float) -> Obj:
        return await self._call(
            self._api.replace_namespaced_lease, name, namespace, self._to_model(body), timeout=timeout)


def as_lease_api(api: Any) -> LeaseApi:
    """The LeaseApi for `api`: a CoordinationV1Api, the operator's Kube client, or a LeaseApi already."""
    if hasattr(api, "read_namespaced_lease"):
        return CoordinationLeases(api)
    if hasattr(api, "lease_path") and hasattr(api, "request"):
        return KubeLeases(api)
    if isinstance(api, LeaseApi):
        return api
    raise TypeError(f"not a Lease API: {type(api).__name__} (want CoordinationV1Api, Kube, or a LeaseApi)")


# --- the elector --------------------------------------------------------------------------------------------------


class LeaderElector:
    """Competes for one Lease: acquire() waits until this process holds it, hold() renews it until it is lost,
    release() gives it up. One elector per process; the methods are not meant to run concurrently."""

    def __init__(
        self, *, api: kubernetes.client.CoordinationV1Api | SupportsLeaseRequests | LeaseApi, config: LeaseConfig
    ) -> None:
        self.config = config
        self._api = as_lease_api(api)
        self._observation: Observation | None = None
        self._leading = False
        self._renewed_at = 0.0
        self._logged_holder: str | None = None

    @property
    def is_leader(self) -> bool:
        """True from a successful acquire() until hold() returns or release() is called."""
        return self._leading

    @property
    def holder(self) -> str | None:
        """The holderIdentity this process last saw ("" released, None never read)."""
        return None if self._observation is None else self._observation.record.holder

    async def acquire(self) -> None:
        """Return once this process holds the lease: creates the Lease if missing, takes it when nobody holds it
        or once the holder's lease has expired on this process's clock; polls every retry_period_s meanwhile."""
        config = self.config
        while True:
            if await self._attempt(timeout=config.lease_duration_s):
                self._leading = True
                record = self._observation.record if self._observation else None
                log.info("leader election: %s acquired Lease %s/%s (transitions: %s)", config.identity,
                         config.namespace, config.name, record.transitions if record else "?")
                return
            holder = self.holder
            if holder != self._logged_holder:
                self._logged_holder = holder
                log.info("leader election: Lease %s/%s is held by %r; %s waits as a standby", config.namespace,
                         config.name, holder, config.identity)
            await asyncio.sleep(config.retry_period_s)

    async def hold(self) -> None:
        """Renew every renew_period_s while this process holds the lease; return once it is lost: someone else
        holds it, or no renewal succeeded before renew_deadline(). Never returns while the lease is held."""
        if not self._leading:
            raise RuntimeError("hold() before acquire()")
        config = self.config
        while True:
            await asyncio.sleep(config.renew_period_s)
            while True:
                deadline = renew_deadline(self._renewed_at, config)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._leading = False
                    log.error("leader election: %s could not renew Lease %s/%s for %.1f s; giving it up",
                              config.identity, config.namespace, config.name, time.monotonic() - self._renewed_at)
                    return
                if await self._attempt(timeout=remaining):
                    break
                holder = self.holder
                if holder != config.identity:
                    self._leading = False
                    log.error("leader election: Lease %s/%s is now held by %r; %s lost it", config.namespace,
                              config.name, holder, config.identity)
                    return
                await asyncio.sleep(max(0.0, min(config.retry_period_s, deadline - time.monotonic())))

    async def release(self, timeout: float = 5.0) -> None:
        """Give the lease up (holderIdentity "", leaseDurationSeconds 1) so a standby takes over at once.

        Call it only after the work that needed the lease has stopped. Does nothing unless this process leads;
        errors are logged, not raised (the lease then simply expires).
        """
        if not self._leading or self._observation is None:
            return
        self._leading = False
        config = self.config
        try:
            await asyncio.wait_for(self._release(), timeout)
        except Exception as error:  # noqa: BLE001 - shutting down: the lease expires on its own
            log.warning("leader election: could not release Lease %s/%s (%s); it expires in %s s", config.namespace,
                        config.name, error or type(error).__name__, config.lease_seconds)

    async def _release(self) -> None:
        config = self.config
        assert self._observation is not None
        lease = self._observation.lease
        for attempt in (1, 2):
            body = lease_body(lease, namespace=config.namespace, name=config.name,
                              record=released_record(parse_record(lease), datetime.now(UTC)))
            try:
                written = await self._api.replace(config.namespace, config.name, body, config.lease_duration_s)
            except (LeaseConflict, LeaseNotFound):
                if attempt == 2:
                    raise
                found = await self._api.read(config.namespace, config.name, config.lease_duration_s)
                if found is None or parse_record(found).holder != config.identity:
                    return  # not ours any more: nothing to give up
                lease = found
                continue
            self._observation = observe(self._observation, written, time.monotonic())
            log.info("leader election: %s released Lease %s/%s", config.identity, config.namespace, config.name)
            return

    async def _attempt(self, timeout: float) -> bool:
        """One try_acquire_or_renew, bounded by `timeout`; False on any failure (logged)."""
        try:
            return await asyncio.wait_for(self._try_acquire_or_renew(timeout), timeout)
        except TimeoutError:
            log.warning("leader election: no answer from the API server within %.1f s", timeout)
        except Exception as error:  # noqa: BLE001 - any failure is retried until the deadline
            log.warning("leader election: Lease %s/%s: %s", self.config.namespace, self.config.name,
                        error or type(error).__name__)
        return False

    def _wrote(self, lease: Obj, sent: float) -> None:
        self._observation = Observation(parse_record(lease), lease, sent)
        self._renewed_at = sent

    async def _try_acquire_or_renew(self, timeout: float) -> bool:
        config = self.config
        identity, seconds = config.identity, config.lease_seconds
        observation = self._observation

        # 1. The leader renews from its last write, without reading (client-go's fast path).
        if self._leading and observation is not None and not expired(observation, time.monotonic()):
            record = next_record(observation.record, identity=identity, lease_duration_s=seconds,
                                 now=datetime.now(UTC))
            body = lease_body(observation.lease, namespace=config.namespace, name=config.name, record=record)
            sent = time.monotonic()
            try:
                self._wrote(await self._api.replace(config.namespace, config.name, body, timeout), sent)
                return True
            except (LeaseConflict, LeaseNotFound) as error:
                log.info("leader election: Lease %s/%s changed since our last write (%s); reading it",
                         config.namespace, config.name, type(error).__name__)

        # 2. Read it (once); create it when there is none.
        lease = await self._api.read(config.namespace, config.name, timeout)
        now = time.monotonic()  # after the answer: the record was written before this moment
        if lease is None:
            record = next_record(None, identity=identity, lease_duration_s=seconds, now=datetime.now(UTC))
            body = lease_body(None, namespace=config.namespace, name=config.name, record=record)
            sent = time.monotonic()
            try:
                self._wrote(await self._api.create(config.namespace, body, timeout), sent)
            except LeaseConflict:
                return False  # another replica created it first
            return True

        # 3. Someone else holds a lease that has not expired on our clock: wait.
        observation = self._observation = observe(observation, lease, now)
        if held_by_other(observation, identity, now):
            return False

        # 4. Ours (renew), free (released), or expired (take over); a 409 means someone else was faster.
        record = next_record(observation.record, identity=identity, lease_duration_s=seconds,
                             now=datetime.now(UTC))
        body = lease_body(lease, namespace=config.namespace, name=config.name, record=record)
        sent = time.monotonic()
        try:
            self._wrote(await self._api.replace(config.namespace, config.name, body, timeout), sent)
        except (LeaseConflict, LeaseNotFound):
            return False
        return True
