"""A cluster loop's lifetime: news that arrives while a round runs is never lost, even by the round that ends it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from serveplane.operator.api.kinds import CLUSTERS
from serveplane.operator.cache import Key, Store
from serveplane.operator.clients.dashboards import DashboardPool
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
