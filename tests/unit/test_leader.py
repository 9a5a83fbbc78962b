"""operator/leader.py without a server: the pure decisions, the settings, and the elector over an in-memory Lease API
that keeps resourceVersions the way the API server does (a stale one gets 409)."""
from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from serveplane.operator import leader
from serveplane.operator.leader import (
    LeaderElector,
    LeaseConfig,
    LeaseConflict,
    LeaseNotFound,
    LeaseRecord,
    Observation,
    config_from_env,
)
from serveplane.operator.settings import SettingsError

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def lease(holder: str = "a", duration: int = 10, renew: datetime = T0, transitions: int = 0, rv: str = "1") -> dict:
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l", "namespace": "ns", "resourceVersion": rv, "labels": {"x": "y"}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": leader.format_time(T0),
                 "renewTime": leader.format_time(renew), "leaseTransitions": transitions,
                 "strategy": "OldestEmulationVersion"},
    }


# --- configuration ------------------------------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    config = LeaseConfig(namespace="ns", identity="pod-a")
    assert (config.name, config.lease_duration_s, config.renew_period_s, config.retry_period_s) == (
        "serveplane-operator", 10.0, 2.0, 2.0)
    assert config.lease_seconds == 10
    with pytest.raises(TypeError):
        LeaseConfig("ns", "name", "id")  # type: ignore[misc]  # keyword-only
    for bad, word in (
        (dict(identity=""), "identity"), (dict(namespace=""), "namespace"),
        (dict(lease_duration_s=2.5), "whole number"), (dict(lease_duration_s=0), "lease_duration_s"),
        (dict(renew_period_s=0), "renew_period_s"), (dict(retry_period_s=-1), "retry_period_s"),
        (dict(renew_period_s=5, retry_period_s=5), "must be less than lease_duration_s"),
    ):
        with pytest.raises(ValueError, match=word):
            LeaseConfig(**{"namespace": "ns", "identity": "pod-a", **bad})  # type: ignore[arg-type]


def test_config_from_env_disabled() -> None:
    assert config_from_env({}) is None
    assert config_from_env({"SERVEPLANE_LEADER_ELECTION": "false"}) is None
    assert config_from_env({"SERVEPLANE_LEADER_ELECTION": "False", "POD_NAME": "x"}) is None


def test_config_from_env_as_the_chart_sets_it() -> None:
    env = {
        "SERVEPLANE_LEADER_ELECTION": "true", "SERVEPLANE_LEADER_ELECTION_NAMESPACE": "serveplane-system",
        "POD_NAME": "serveplane-5d8f-abcde", "POD_NAMESPACE": "serveplane-system",
        "SERVEPLANE_LEASE_NAME": "serveplane-operator",
        "SERVEPLANE_LEASE_DURATION_S": "15", "SERVEPLANE_LEASE_RENEW_PERIOD_S": "3",
        "SERVEPLANE_LEASE_RETRY_PERIOD_S": "1.5",
    }
    assert config_from_env(env) == LeaseConfig(
        namespace="serveplane-system", name="serveplane-operator", identity="serveplane-5d8f-abcde",
        lease_duration_s=15, renew_period_s=3, retry_period_s=1.5)


def test_config_from_env_fallbacks() -> None:
    config = config_from_env({"SERVEPLANE_LEADER_ELECTION": "1", "POD_NAMESPACE": "ops", "POD_NAME": ""})
    assert config is not None and config.namespace == "ops" and config.name == "serveplane-operator"
    assert config.identity == leader.default_identity() and config.identity.endswith(f"_{__import__('os').getpid()}")
    assert (config.lease_duration_s, config.renew_period_s, config.retry_period_s) == (10, 2, 2)


@pytest.mark.parametrize("env, variable", [
    ({"SERVEPLANE_LEADER_ELECTION": "maybe"}, "SERVEPLANE_LEADER_ELECTION="),
    ({"POD_NAMESPACE": None}, "set SERVEPLANE_LEADER_ELECTION_NAMESPACE"),
    ({"SERVEPLANE_LEADER_ELECTION_NAMESPACE": "Team_A"}, "SERVEPLANE_LEADER_ELECTION_NAMESPACE='Team_A'"),
    ({"POD_NAMESPACE": "Bad!"}, "POD_NAMESPACE='Bad!'"),
    ({"SERVEPLANE_LEASE_NAME": "No Spaces"}, "SERVEPLANE_LEASE_NAME="),
    ({"SERVEPLANE_LEASE_DURATION_S": "ten"}, "SERVEPLANE_LEASE_DURATION_S='ten'"),
    ({"SERVEPLANE_LEASE_DURATION_S": "7.5"}, "SERVEPLANE_LEASE_DURATION_S='7.5'"),
    ({"SERVEPLANE_LEASE_RENEW_PERIOD_S": "-2"}, "SERVEPLANE_LEASE_RENEW_PERIOD_S='-2'"),
    ({"SERVEPLANE_LEASE_RETRY_PERIOD_S": "nan"}, "SERVEPLANE_LEASE_RETRY_PERIOD_S='nan'"),
    ({"SERVEPLANE_LEASE_RENEW_PERIOD_S": "8"}, "SERVEPLANE_LEASE_RENEW_PERIOD_S=8 + "),
])
def test_config_from_env_names_the_bad_variable(env: dict[str, str | None], variable: str) -> None:
    merged = {"SERVEPLANE_LEADER_ELECTION": "true", "POD_NAMESPACE": "ops", **env}
    full = {key: value for key, value in merged.items() if value is not None}
    with pytest.raises(SettingsError) as error:
        config_from_env(full)
    assert variable in str(error.value)
    assert isinstance(error.value, ValueError)


# --- the decisions ------------------------------------------------------------------------------------------------


def test_times_round_trip_with_six_digits() -> None:
    assert leader.format_time(T0) == "2026-03-01T12:00:00.000000Z"
    assert leader.parse_time("2026-03-01T12:00:00.000000Z") == T0
    assert leader.parse_time("2026-03-01T12:00:00.000001+00:00") == T0 + timedelta(microseconds=1)
    assert leader.parse_time(None) is None and leader.parse_time("") is None


def test_parse_record() -> None:
    assert leader.parse_record(lease("b", 15, T0, 3)) == LeaseRecord("b", 15, T0, T0, 3)
    assert leader.parse_record({"spec": {}}) == LeaseRecord()


def test_observe_restarts_the_clock_only_when_the_record_changes() -> None:
    first = leader.observe(None, lease(rv="1"), now=100.0)
    assert first.seen_at == 100.0 and first.resource_version == "1"
    # Someone edited a label: a new resourceVersion, the same record: not a renewal.
    relabelled = leader.observe(first, lease(rv="2"), now=105.0)
    assert relabelled.seen_at == 100.0 and relabelled.resource_version == "2"
    renewed = leader.observe(relabelled, lease(renew=T0 + timedelta(seconds=2), rv="3"), now=106.0)
    assert renewed.seen_at == 106.0


def test_expiry_is_measured_on_the_local_clock_not_by_renew_time() -> None:
    # renewTime an hour in the past (a skewed clock on the holder's node) does not matter: only how long this
    # process has seen the same record.
    seen = leader.observe(None, lease(renew=T0 - timedelta(hours=1), duration=10), now=50.0)
    assert not leader.expired(seen, 59.9) and leader.expired(seen, 60.0)
    assert leader.held_by_other(seen, "b", 59.9) and not leader.held_by_other(seen, "b", 60.0)
    assert not leader.held_by_other(seen, "a", 51.0)  # our own record
    free = leader.observe(None, lease(holder=""), now=50.0)
    assert not leader.held_by_other(free, "b", 50.0)  # released: nobody holds it


def test_next_record() -> None:
    now = T0 + timedelta(seconds=30)
    held = LeaseRecord("a", 10, T0, T0 + timedelta(seconds=28), 4)
    assert leader.next_record(held, identity="a", lease_duration_s=10, now=now) == LeaseRecord("a", 10, T0, now, 4)
    assert leader.next_record(held, identity="b", lease_duration_s=15, now=now) == LeaseRecord("b", 15, now, now, 5)
    assert leader.next_record(None, identity="b", lease_duration_s=10, now=now) == LeaseRecord("b", 10, now, now, 0)
    released = leader.released_record(held, now)
    assert released == LeaseRecord("", 1, now, now, 4)
    assert leader.next_record(released, identity="b", lease_duration_s=10, now=now).transitions == 5


def test_lease_body_keeps_metadata_and_other_spec_fields() -> None:
    previous = lease("a", rv="7")
    record = LeaseRecord("b", 10, T0, T0 + timedelta(seconds=1), 1)
    body = leader.lease_body(previous, namespace="ns", name="l", record=record)
    assert body["metadata"] == previous["metadata"]  # resourceVersion "7" goes back: optimistic concurrency
    assert body["spec"] == {
        "holderIdentity": "b", "leaseDurationSeconds": 10, "leaseTransitions": 1, "strategy": "OldestEmulationVersion",
        "acquireTime": "2026-03-01T12:00:00.000000Z", "renewTime": "2026-03-01T12:00:01.000000Z"}
    new = leader.lease_body(None, namespace="ns", name="l", record=record)
    assert new["metadata"]["name"] == "l" and new["metadata"]["namespace"] == "ns"
    assert "resourceVersion" not in new["metadata"]


def test_renew_deadline_leaves_a_retry_period() -> None:
    config = LeaseConfig(namespace="ns", identity="a", lease_duration_s=10, renew_period_s=2, retry_period_s=2)
    assert leader.renew_deadline(100.0, config) == 108.0


# --- the elector over an in-memory API ----------------------------------------------------------------------------


class FakeLeases:
    """One Lease store with resourceVersions; counts the calls; `down` makes every call fail."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.rv = 0
        self.calls: list[str] = []
        self.down = False

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise ConnectionError("the API server is down")

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.obj)

    async def read(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        self._check("read")
        return copy.deepcopy(self.obj)

    async def create(self, namespace: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._check("create")
        if self.obj is not None:
            raise LeaseConflict("exists")
        return self._store(body)

    async def replace(self, namespace: str, name: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._check("replace")
        if self.obj is None:
            raise LeaseNotFound(name)
        if body["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
            raise LeaseConflict("stale resourceVersion")
        return self._store(body)

    def steal(self, holder: str) -> None:
        assert self.obj is not None
        spec = self.obj["spec"]
        spec["holderIdentity"], spec["renewTime"] = holder, leader.format_time(datetime.now(UTC))
        self._store(self.obj)

    @property
    def holder(self) -> str:
        return (self.obj or {}).get("spec", {}).get("holderIdentity", "")


def fast(identity: str) -> LeaseConfig:
    return LeaseConfig(namespace="ns", name="l", identity=identity, lease_duration_s=1, renew_period_s=0.1,
                       retry_period_s=0.1)


async def wait_until(what: str, probe: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_as_lease_api_picks_the_adapter() -> None:
    class Coordination:
        def read_namespaced_lease(self) -> None: ...

    class Kube:
        async def request(self, *a: Any, **k: Any) -> None: ...

        def lease_path(self, namespace: str, name: str = "") -> str:
            return ""

    assert isinstance(leader.as_lease_api(Coordination()), leader.CoordinationLeases)
    assert isinstance(leader.as_lease_api(Kube()), leader.KubeLeases)
    fake = FakeLeases()
    assert leader.as_lease_api(fake) is fake
    with pytest.raises(TypeError, match="not a Lease API"):
        leader.as_lease_api(object())


def test_kube_adapter_maps_status_codes() -> None:
    class Refused(Exception):
        def __init__(self, status: int) -> None:
            super().__init__(f"HTTP {status}")
            self.status = status

    class Kube:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, Any]] = []
            self.status = 0

        async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
            self.seen.append((method, path, kwargs.get("tolerate")))
            if self.status:
                raise Refused(self.status)
            return {"metadata": {}}

        def lease_path(self, namespace: str, name: str = "") -> str:
            return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases" + (f"/{name}" if name else "")

    kube = Kube()
    api = leader.KubeLeases(kube)

    async def run() -> None:
        await api.read("ns", "l", 1)
        await api.create("ns", {"metadata": {"name": "l"}}, 1)
        await api.replace("ns", "l", {}, 1)
        kube.status = 409
        with pytest.raises(LeaseConflict):
            await api.replace("ns", "l", {}, 1)
        kube.status = 404
        with pytest.raises(LeaseNotFound):
            await api.replace("ns", "l", {}, 1)
        kube.status = 500
        with pytest.raises(Refused):
            await api.create("ns", {"metadata": {"name": "l"}}, 1)

    asyncio.run(run())
    root = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
    assert kube.seen[:3] == [("GET", f"{root}/l", (404,)), ("POST", root, None), ("PUT", f"{root}/l", None)]


def test_acquire_creates_and_renewals_never_read() -> None:
    api = FakeLeases()
    elector = LeaderElector(api=api, config=fast("a"))

    async def run() -> None:
        await elector.acquire()
        assert elector.is_leader and api.holder == "a" and api.calls == ["read", "create"]
        api.calls.clear()
        task = asyncio.create_task(elector.hold())
        await wait_until("five renewals", lambda: api.calls.count("replace") >= 5)
        assert set(api.calls) == {"replace"}, api.calls  # the fast path: no GET before a renewal
        assert not task.done() and elector.is_leader
        task.cancel()

    asyncio.run(run())
    assert api.obj is not None and api.obj["spec"]["leaseTransitions"] == 0


def test_a_409_on_renewal_reads_once_and_renews() -> None:
    api = FakeLeases()
    elector = LeaderElector(api=api, config=fast("a"))

    async def run() -> None:
        await elector.acquire()
        # Someone edits the Lease's labels: the leader's resourceVersion is stale, the record is still its own.
        assert api.obj is not None
        api.obj["metadata"]["labels"] = {"edited": "yes"}
        api._store(api.obj)
        api.calls.clear()
        task = asyncio.create_task(elector.hold())
        await wait_until("a renewal after the conflict", lambda: api.calls.count("replace") >= 3)
        assert api.calls[:3] == ["replace", "read", "replace"], api.calls
        assert api.calls.count("read") == 1 and elector.is_leader and not task.done()
        task.cancel()

    asyncio.run(run())
    assert api.obj is not None and api.obj["metadata"]["labels"] == {"edited": "yes"}


def test_a_stolen_lease_ends_hold() -> None:
    api = FakeLeases()
    elector = LeaderElector(api=api, config=fast("a"))

    async def run() -> None:
        await elector.acquire()
        task = asyncio.create_task(elector.hold())
        await asyncio.sleep(0.15)
        api.steal("thief")
        await asyncio.wait_for(task, 2)

    asyncio.run(run())
    assert not elector.is_leader and elector.holder == "thief" and api.holder == "thief"


def test_hold_gives_up_before_the_lease_could_expire_when_the_server_is_unreachable() -> None:
    api = FakeLeases()
    config = LeaseConfig(namespace="ns", name="l", identity="a", lease_duration_s=2, renew_period_s=0.2,
                         retry_period_s=0.5)
    elector = LeaderElector(api=api, config=config)

    async def run() -> float:
        await elector.acquire()
        renewed = time.monotonic()
        task = asyncio.create_task(elector.hold())
        await wait_until("a renewal", lambda: api.calls.count("replace") >= 1)
        renewed = time.monotonic()
        api.down = True
        await asyncio.wait_for(task, 5)
        return time.monotonic() - renewed

    held_on = asyncio.run(run())
    # The last successful renewal was sent just before `renewed`; hold() returns at most
    # lease_duration - retry_period (1.5 s) after it, i.e. before any standby could take over (2 s).
    assert held_on <= 2 - 0.5 + 0.1, held_on
    assert held_on >= 1.0, held_on
    assert not elector.is_leader


def test_a_standby_waits_while_renewed_and_takes_over_after_expiry() -> None:
    api = FakeLeases()
    a, b = LeaderElector(api=api, config=fast("a")), LeaderElector(api=api, config=fast("b"))

    async def run() -> float:
        await a.acquire()
        holding = asyncio.create_task(a.hold())
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(1.5)  # longer than the lease: b still waits, since a renews
        assert not standby.done() and api.holder == "a"
        holding.cancel()  # a stops renewing (as if killed)
        stopped = time.monotonic()
        await asyncio.wait_for(standby, 3)
        return time.monotonic() - stopped

    took = asyncio.run(run())
    assert b.is_leader and api.holder == "b"
    assert 0.8 <= took <= 1.5, took  # about lease_duration (1 s) after the record last changed, plus a retry
    assert api.obj is not None and api.obj["spec"]["leaseTransitions"] == 1


def test_release_hands_over_at_the_next_attempt() -> None:
    api = FakeLeases()
    a, b = LeaderElector(api=api, config=fast("a")), LeaderElector(api=api, config=fast("b"))

    async def run() -> float:
        await a.acquire()
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(0.25)
        released = time.monotonic()
        await a.release()
        assert not a.is_leader and api.holder == ""
        assert api.obj is not None and api.obj["spec"]["leaseDurationSeconds"] == 1
        await asyncio.wait_for(standby, 2)
        return time.monotonic() - released

    took = asyncio.run(run())
    assert b.is_leader and took < 0.3, took  # one retry period (0.1 s), not the lease duration (1 s)


def test_release_when_not_leading_writes_nothing() -> None:
    api = FakeLeases()
    elector = LeaderElector(api=api, config=fast("a"))
    asyncio.run(elector.release())
    assert api.calls == []


def test_a_restarted_replica_with_the_same_identity_takes_its_lease_back_at_once() -> None:
    # The chart's identity is the pod name, which survives a container restart: as in client-go, the record
    # naming this identity is this replica's own, so it renews instead of waiting for expiry.
    api = FakeLeases()
    before = LeaderElector(api=api, config=fast("pod-a"))
    asyncio.run(before.acquire())
    after = LeaderElector(api=api, config=fast("pod-a"))
    started = time.monotonic()
    asyncio.run(after.acquire())
    assert time.monotonic() - started < 0.2 and after.is_leader
    assert api.obj is not None and api.obj["spec"]["leaseTransitions"] == 0


def test_observation_carries_the_resource_version() -> None:
    observation = Observation(LeaseRecord(), {"metadata": {"resourceVersion": "42"}}, 0.0)
    assert observation.resource_version == "42"
