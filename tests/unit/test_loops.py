"""A cluster loop's lifetime: news that arrives while a round runs is never lost, even by the round that ends it."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, cast

from serveplane.operator import conditions
from serveplane.operator.api.kinds import CLUSTERS
from serveplane.operator.cache import Key, Store
from serveplane.operator.clients.dashboards import DashboardPool
from serveplane.operator.clients.kube import Kube, KubeError
from serveplane.operator.election import LeaderElector, LeaseConfig
from serveplane.operator.executor import ClusterMemory, Executor
from serveplane.operator.loops import ClusterLoops
from serveplane.operator.settings import Settings

KEY: Key = ("ns", "demo")


class ScriptedLoops(ClusterLoops):
    """Rounds that return scripted (busy, done, submitted) results; `during` runs inside the round."""

    def __init__(self, results: list[tuple[bool, bool, bool]], during: dict[int, Any]) -> None:
        super().__init__(Store(), cast(Executor, None), cast(DashboardPool, None), Settings(poll_slow_s=60.0))
        self.results = results
        self.during = during
        self.rounds = 0

    async def _round(self, key: Key, memory: ClusterMemory) -> tuple[bool, bool, bool]:
        self.rounds += 1
        if self.rounds in self.during:
            self.during[self.rounds]()
        await asyncio.sleep(0)  # a round awaits its observe and its writes; events arrive meanwhile
        return self.results[min(self.rounds, len(self.results)) - 1]


async def run_until_idle(loops: ClusterLoops) -> None:
    loops.synced()
    loops.leading()
    loops.wake([KEY])
    for _ in range(200):
        if KEY not in loops._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the loop did not end")


async def test_a_loop_without_a_cluster_ends_after_a_clean_round() -> None:
    loops = ScriptedLoops([(False, True, False)], during={})
    await run_until_idle(loops)
    assert loops.rounds == 1


async def test_news_during_the_round_that_would_end_the_loop_gets_another_round() -> None:
    loops = ScriptedLoops([(False, True, False)], during={})
    loops.during[1] = lambda: loops.wake([KEY])  # an application's deletion event, mid-round
    await run_until_idle(loops)
    assert loops.rounds == 2


async def test_a_submit_is_followed_at_once_by_a_round_that_reads_what_serve_made_of_it() -> None:
    loops = ScriptedLoops([(False, False, True), (False, True, False)], during={})
    await run_until_idle(loops)
    assert loops.rounds == 2


class RecordingExecutor:
    """Stands where the executor's writes would go, to see whether a round acted."""

    def __init__(self) -> None:
        self.runs: list[Any] = []

    async def run(self, key: Key, actions: Any, memory: ClusterMemory) -> bool:
        self.runs.append(actions)
        return False


async def test_a_leader_whose_lease_is_not_known_to_be_held_plans_but_writes_nothing(k8s: Any) -> None:
    """A new cluster needs pods; while `may_act` says no (the lease's renewal is overdue), nothing is written."""
    store = Store()
    key = (k8s.namespace, "demo")
    store.put(CLUSTERS, k8s.cluster("demo"))
    executor = RecordingExecutor()
    loops = ClusterLoops(store, cast(Executor, executor), DashboardPool(1.0), Settings())
    loops.may_act = lambda: False
    assert await loops._round(key, ClusterMemory()) == (True, False, False)
    assert executor.runs == []
    loops.may_act = lambda: True
    await loops._round(key, ClusterMemory())
    assert executor.runs and executor.runs[0], "the same round acts once the lease is held"


def test_an_elector_holds_only_until_a_standby_could_take_the_lease() -> None:
    config = LeaseConfig(namespace="ns", name="lease", identity="a", lease_duration_s=10.0,
                         renew_period_s=2.0, retry_period_s=2.0)
    elector = LeaderElector(api=cast(Any, None), config=config)
    assert not elector.holding()
    elector.is_leader, elector.holds_until = True, time.monotonic() + 5
    assert elector.holding()
    elector.holds_until = time.monotonic() - 0.001  # the last renewal was sent more than 8 s ago
    assert not elector.holding()


# --- an exception in a round becomes a status, written once, and the loop keeps its backoff -----------------------


class RefusingKube:
    """An API server that refuses every write but a status patch, with the answer a namespace's Pod Security
    admission gives (what no planner check can foresee)."""

    ANSWER = ('{"kind":"Status","message":"pods \\"%s-head\\" is forbidden: violates PodSecurity '
              '\\"restricted:latest\\": runAsNonRoot != true","reason":"Forbidden","code":403}')

    def __init__(self, store: Store) -> None:
        self.store = store
        self.refused = 0
        self.status_patches: list[dict[str, Any]] = []

    async def patch_custom_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> Any:
        self.status_patches.append(status)
        obj = copy.deepcopy(self.store.get(plural, namespace, name))
        assert obj is not None
        obj["status"] = {**(obj.get("status") or {}), **status}
        return obj

    async def post_event(self, *args: Any) -> None:
        return None

    def __getattr__(self, method: str) -> Any:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            self.refused += 1
            name = next(iter(self.store.all(CLUSTERS)))["metadata"]["name"]
            raise KubeError("POST", f"/api/v1/namespaces/ns/{method}", 403, self.ANSWER % name)
        return refuse


async def test_a_round_that_raises_gives_the_cluster_a_reconcile_error_written_once(k8s: Any) -> None:
    store = Store()
    name = "demo"
    store.put(CLUSTERS, k8s.cluster(name, {}, generation=3))
    kube = RefusingKube(store)
    dashboards = DashboardPool(1.0)
    loops = ClusterLoops(store, Executor(cast(Kube, kube), store, dashboards), dashboards,
                         Settings(poll_fast_s=0.001, poll_slow_s=0.001))
    loops.synced()
    loops.leading()
    loops.wake([(k8s.namespace, name)])
    for _ in range(500):
        if kube.refused >= 3:
            break
        await asyncio.sleep(0.01)
    await loops.stop()
    assert kube.refused >= 3, "the loop goes on after a failed round"
    assert len(kube.status_patches) == 1, "the same failure is written once, not every retry"
    status = store.get(CLUSTERS, k8s.namespace, name)["status"]  # type: ignore[index]
    assert status["observedGeneration"] == 3
    degraded = conditions.find(status["conditions"], conditions.DEGRADED)
    assert degraded is not None and (degraded["status"], degraded["reason"]) == ("True", "ReconcileError")
    assert degraded["message"].startswith("KubeError: POST /api/v1/namespaces/ns/")
    assert "violates PodSecurity" in degraded["message"], "the API server's own answer"


async def test_a_failure_is_written_only_on_a_cluster_that_exists_while_the_lease_is_held(k8s: Any) -> None:
    store = Store()
    key = (k8s.namespace, "demo")
    executor = RecordingExecutor()
    loops = ClusterLoops(store, cast(Executor, executor), DashboardPool(1.0), Settings())
    await loops._report_failure(key, RuntimeError("boom"), ClusterMemory())
    assert executor.runs == [], "no ServeCluster: nothing to write on"
    store.put(CLUSTERS, k8s.cluster("demo"))
    loops.may_act = lambda: False
    await loops._report_failure(key, RuntimeError("boom"), ClusterMemory())
    assert executor.runs == [], "the lease is not known to be held"
    loops.may_act = lambda: True
    await loops._report_failure(key, RuntimeError("boom"), ClusterMemory())
    (actions,) = executor.runs
    assert [type(a).__name__ for a in actions] == ["WriteStatus"]
