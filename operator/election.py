"""Leader election on a coordination.k8s.io/v1 Lease, with the semantics of client-go's leaderelection.

Replicas all watch and keep their stores warm; only the holder of the Lease reconciles. A holder renews every
`renew_period_s` with the resourceVersion of its last write (no GET first); a standby reads the Lease every
`retry_period_s` and takes it once its record has not changed for `lease_duration_s`, measured on the standby's
own monotonic clock since it last saw the record change (clocks of different machines are never compared).

Why a Lease and not kopf's peering: peering needs a CRD of its own and keeps-alive every 60 s; an operator of lower
priority pauses, and replicas of equal priority all pause (kopf warns "Possibly conflicting operators"), so two
equal replicas would leave nobody reconciling: it is a guard against conflicting operators, not an election.

The decisions (`expired`, `claim`) are pure and table-tested; `LeaderElector` does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .clients.kube import Kube, KubeError

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    identity: str
    name: str = "serveplane-operator"
    """The Lease's name (SERVEPLANE_LEASE_NAME)."""
    lease_duration_s: float = 10.0
    """How long a silent holder keeps the lease: the takeover time after a leader dies."""
    renew_period_s: float = 2.0
    retry_period_s: float = 2.0


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "false").strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{name}={env[name]!r} is not valid: true or false")
    return raw in ("true", "1", "yes")


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= minimum:
        raise ValueError(f"{name}={raw!r} is not valid: a number of seconds >= {minimum:g}")
    return value


def config_from_env(env: Mapping[str, str]) -> LeaseConfig | None:
    """The election's settings, or None when SERVEPLANE_LEADER_ELECTION is off (the default outside the chart)."""
    if not _flag(env, "SERVEPLANE_LEADER_ELECTION"):
        return None
    namespace = env.get("SERVEPLANE_LEADER_ELECTION_NAMESPACE") or env.get("POD_NAMESPACE")
    if not namespace:
        raise ValueError("SERVEPLANE_LEADER_ELECTION_NAMESPACE is required with SERVEPLANE_LEADER_ELECTION=true")
    duration = float(int(_seconds(env, "SERVEPLANE_LEASE_DURATION_S", 10.0, 3.0)))
    renew = _seconds(env, "SERVEPLANE_LEASE_RENEW_PERIOD_S", duration / 5, 0.1)
    retry = _seconds(env, "SERVEPLANE_LEASE_RETRY_PERIOD_S", duration / 5, 0.1)
    if renew + retry >= duration:
        raise ValueError(
            f"SERVEPLANE_LEASE_RENEW_PERIOD_S + SERVEPLANE_LEASE_RETRY_PERIOD_S ({renew:g} + {retry:g}) must be less "
            f"than SERVEPLANE_LEASE_DURATION_S ({duration:g})"
        )
    return LeaseConfig(
        namespace=namespace,
        identity=env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        name=env.get("SERVEPLANE_LEASE_NAME") or LeaseConfig.name,
        lease_duration_s=duration,
        renew_period_s=renew,
        retry_period_s=retry,
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expired(spec: Obj, *, identity: str, unchanged_for_s: float) -> bool:
    """Whether `identity` may take a lease whose record (`spec`) it has seen unchanged for `unchanged_for_s`."""
    holder = spec.get("holderIdentity") or ""
    if not holder or holder == identity:
        return True
    return unchanged_for_s >= float(spec.get("leaseDurationSeconds") or 0)


def claim(spec: Obj, *, identity: str, duration_s: float, now: str) -> Obj:
    """The record that makes (or keeps) `identity` the holder: acquireTime and transitions move on a new holder."""
    new_holder = spec.get("holderIdentity") != identity
    return {
        **spec,
        "holderIdentity": identity,
        "leaseDurationSeconds": int(duration_s),
        "renewTime": now,
        "acquireTime": now if new_holder else spec.get("acquireTime", now),
        "leaseTransitions": int(spec.get("leaseTransitions") or 0)
        + (1 if new_holder and spec.get("holderIdentity") else 0),
    }


class LeaderElector:
    def __init__(self, *, api: Kube, config: LeaseConfig) -> None:
        self.api = api
        self.config = config
        self.is_leader = False
        # Until when (monotonic) no standby can have taken the lease, counted from when the last successful
        # acquire or renewal was sent: after it, this process must not act, even before `hold` has noticed
        # (a process paused by the kernel, a stop-the-world stall).
        self.holds_until = 0.0
        self._lease: Obj | None = None
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0

    @property
    def _path(self) -> str:
        return self.api.lease_path(self.config.namespace, self.config.name)

    def _observe(self, lease: Obj) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._seen:
            self._seen, self._seen_at = record, time.monotonic()
        self._lease = lease

    async def _read(self) -> Obj | None:
        lease = await self.api.request("GET", self._path, tolerate=(404,))
        if lease is not None:
            self._observe(lease)
        return lease

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when this process holds the lease afterwards."""
        cfg = self.config
        lease = self._lease if self.is_leader else await self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": claim({}, identity=cfg.identity, duration_s=cfg.lease_duration_s, now=_now()),
            }
            created = await self.api.request("POST", self.api.lease_path(cfg.namespace), body, tolerate=(409,))
            if created is not None:
                self._observe(created)
            return created is not None
        spec = lease.get("spec") or {}
        if not expired(spec, identity=cfg.identity, unchanged_for_s=time.monotonic() - self._seen_at):
            return False
        body = {**lease, "spec": claim(spec, identity=cfg.identity, duration_s=cfg.lease_duration_s, now=_now())}
        try:
            updated = await self.api.request("PUT", self._path, body)
        except KubeError as error:
            if error.status != 409:
                raise
            # Changed meanwhile: read it once; the next attempt decides on the fresh record.
            self.is_leader = False
            await self._read()
            return False
        assert updated is not None
        self._observe(updated)
        return True

    async def acquire(self) -> None:
        """Return once this process holds the lease."""
        while True:
            sent_at = time.monotonic()
            try:
                if await asyncio.wait_for(self._try(), timeout=self.config.lease_duration_s):
                    self.holds_until = self._safe_until(sent_at)
                    self.is_leader = True
                    log.info(
                        "leader election: %s holds lease %s/%s",
                        self.config.identity,
                        self.config.namespace,
                        self.config.name,
                    )
                    return
            except Exception as error:  # any failure is retried; the lease decides who leads
                log.warning("leader election: acquiring the lease failed: %r", error)
            await asyncio.sleep(self.config.retry_period_s)

    def _safe_until(self, sent_at: float) -> float:
        return sent_at + self.config.lease_duration_s - self.config.retry_period_s

    def holding(self) -> bool:
        """Whether this process may act as the leader right now."""
        return self.is_leader and time.monotonic() < self.holds_until

    async def hold(self) -> None:
        """Renew while holding; return when the lease is lost: taken by another, or not renewed in time.

        A renewal counts from when it was sent, and no renewal may outlast the moment a standby could take the
        lease (minus one retry period): never two leaders at once, however slowly the API server answers.
        """
        cfg = self.config
        renewed_sent_at = time.monotonic()
        while True:
            await asyncio.sleep(cfg.renew_period_s)
            sent_at = time.monotonic()
            deadline = renewed_sent_at + cfg.lease_duration_s - cfg.retry_period_s
            try:
                if await asyncio.wait_for(self._try(), timeout=max(deadline - sent_at, 0.01)):
                    renewed_sent_at = sent_at
                    self.holds_until = self._safe_until(sent_at)
                    continue
                holder = ((self._lease or {}).get("spec") or {}).get("holderIdentity")
                if holder not in (None, "", cfg.identity):
                    log.error("leader election: %s took the lease", holder)
                    break
            except Exception as error:  # a failed renewal is retried until the deadline
                log.warning("leader election: renewing the lease failed: %r", error)
            if time.monotonic() >= deadline:
                break
        self.is_leader = False

    async def release(self) -> None:
        """On a clean stop: clear the holder so a standby takes over at once (best effort: a 409 means it
        is already someone else's)."""
        if not self.is_leader or self._lease is None:
            return
        spec = {**(self._lease.get("spec") or {}), "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _now()}
        try:
            await asyncio.wait_for(
                self.api.request("PUT", self._path, {**self._lease, "spec": spec}), timeout=self.config.renew_period_s
            )
        except Exception as error:  # the lease then simply expires
            log.warning("leader election: releasing the lease failed: %r", error)
        self.is_leader = False
