"""One asyncio task per cluster loop: observe -> plan -> act, woken by news from the store, polling Serve slowly.

A loop's key is (namespace, ServeCluster name), whether or not that ServeCluster exists: applications and
deployments that name a missing cluster are looked after by the same loop, so every object reaches its goal
from the store's current state, whatever order its events came in. A loop without a cluster ends after a
clean round; any later news starts it again.

Loops run only while this operator is active: its store holds the initial listing of every watched kind, and
it is the leader (or runs without election). Until then, wakes are ignored; activating wakes every key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from . import metrics
from .api.kinds import CLUSTERS
from .cache import Key, Store
from .clients.dashboards import DashboardPool
from .executor import ClusterMemory, Executor
from .observe import observe
from .planner import plan_round
from .settings import Settings
from .stages import nocluster
from .stages.context import Settings as RoundSettings

log = logging.getLogger(__name__)

# A short pause before each round lets a burst of watch events (a pod's status, then its labels) settle.
COALESCE_S = 0.02


class ClusterLoops:
    def __init__(self, store: Store, executor: Executor, dashboards: DashboardPool, settings: Settings) -> None:
        self.store = store
        self.executor = executor
        self.dashboards = dashboards
        self.settings = settings
        self.round_settings = RoundSettings(
            image=settings.default_image, access=settings.access, autoscaler_role=settings.autoscaler_cluster_role
        )
        self._synced = False
        self._leading = False
        self._wakers: dict[Key, asyncio.Event] = {}
        # Under leader election, whether the lease still covers this moment (LeaderElector.holding): a leader
        # whose renewal is overdue (the process was paused, say) must not write, whatever its loops still think.
        self.may_act: Callable[[], bool] = lambda: True
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    @property
    def active(self) -> bool:
        return self._synced and self._leading

    def synced(self) -> None:
        """The store holds the initial listing of every watched kind."""
        if not self._synced:
            self._synced = True
            self._activate()

    def leading(self) -> None:
        """This operator holds the lease (or runs alone)."""
        if not self._leading:
            self._leading = True
            metrics.LEADER.set(1)
            self._activate()

    def _activate(self) -> None:
        if self.active:
            keys = self.store.every_key()
            log.info("reconciling %d cluster loops", len(keys))
            self.wake(keys)

    def wake(self, keys: Iterable[Key]) -> None:
        if not self.active:
            return
        for key in keys:
            if key in self._wakers:
                self._wakers[key].set()
            else:
                self._wakers[key] = asyncio.Event()
                self._tasks[key] = asyncio.create_task(self._run(key), name=f"serveplane:{key[0]}/{key[1]}")

    async def _round(self, key: Key, memory: ClusterMemory) -> tuple[bool, bool, bool]:
        """One round; (busy, done, submitted)."""
        start = time.monotonic()
        result = "error"
        try:
            snap = await observe(
                self.store, self.dashboards, key, memory.rejection, memory.current_conflicts(time.monotonic())
            )
            plan = plan_round(snap, self.round_settings)
            if not self.may_act():
                log.warning("reconcile of %s/%s skipped: the lease is not known to be held now", *key)
                result = "skipped"
                return True, False, False
            if plan.config_hash is not None:
                memory.composed_since.setdefault(plan.config_hash, time.monotonic())
            submitted = await self.executor.run(key, plan.actions, memory)
            result = "gone" if plan.done else "busy" if plan.busy else "steady"
            return plan.busy, plan.done, submitted
        finally:
            metrics.RECONCILES.labels("ServeCluster", result).inc()
            metrics.RECONCILE_SECONDS.labels("ServeCluster").observe(time.monotonic() - start)

    async def _run(self, key: Key) -> None:
        namespace, name = key
        memory = ClusterMemory()
        waker = self._wakers[key]
        failures = 0
        try:
            while True:
                await asyncio.sleep(COALESCE_S)
                waker.clear()
                try:
                    busy, done, submitted = await self._round(key, memory)
                    failures = 0
                except Exception as error:  # one bad round must not end the loop; the next one starts afresh
                    failures += 1
                    log.exception("reconcile of ServeCluster %s/%s failed (%d in a row)", namespace, name, failures)
                    busy, done, submitted = True, False, False
                    await self._report_failure(key, error, memory)
                if submitted:
                    continue  # see at once what Serve made of the new config
                if done:
                    if waker.is_set():
                        continue  # news came during the round (an application deleted with its cluster)
                    return
                interval = self.settings.poll_fast_s if busy else self.settings.poll_slow_s
                interval = min(interval * 2 ** min(failures, 4), 60.0) if failures else interval
                try:
                    await asyncio.wait_for(waker.wait(), timeout=interval)
                except TimeoutError:
                    pass
        finally:
            if self._wakers.get(key) is waker:
                del self._wakers[key]
                del self._tasks[key]

    async def _report_failure(self, key: Key, error: Exception, memory: ClusterMemory) -> None:
        """Say on the ServeCluster that its round failed (a Degraded condition, ReconcileError), through the
        executor's client and only where that changes its status; a failure to say so is only logged."""
        cluster = self.store.get(CLUSTERS, *key)
        if cluster is None or not self.may_act():
            return
        try:
            await self.executor.run(key, nocluster.round_failed(cluster, error, datetime.now(UTC)), memory)
        except Exception:  # the API server may be what failed; the loop's next round tries again
            log.warning("could not write the failure of ServeCluster %s/%s to its status", *key, exc_info=True)

    async def stop(self) -> None:
        """Stop reconciling (at shutdown, or when the lease is lost); `leading()` starts every loop again."""
        self._leading = False
        metrics.LEADER.set(0)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
