"""One asyncio task per ServeCluster that reconciles it, fast while anything moves and slowly when steady.

Any change to a cluster, its pods, applications or deployments wakes its loop; bursts of events collapse
into one round. The loop ends by itself when its cluster is gone.
"""
from __future__ import annotations

import asyncio
import logging

from .reconcile import ClusterMemory, Outcome, Reconciler
from .settings import Settings

log = logging.getLogger(__name__)

# A short pause before each round lets a burst of watch events (a pod's status, then its labels) settle.
COALESCE_S = 0.2


class ClusterLoops:
    def __init__(self, reconciler: Reconciler, settings: Settings) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self._wakers: dict[tuple[str, str], asyncio.Event] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def wake(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self._wakers:
            self._wakers[key].set()
            return
        self._wakers[key] = asyncio.Event()
        self._tasks[key] = asyncio.create_task(self._run(key), name=f"serveplane:{namespace}/{name}")

    def wake_namespace(self, namespace: str) -> None:
        for space, name in list(self._wakers):
            if space == namespace:
                self.wake(space, name)

    def known(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._wakers

    async def _run(self, key: tuple[str, str]) -> None:
        namespace, name = key
        memory = ClusterMemory()
        waker = self._wakers[key]
        failures = 0
        try:
            while True:
                await asyncio.sleep(COALESCE_S)
                waker.clear()
                try:
                    outcome = await self.reconciler.cluster(namespace, name, memory)
                    failures = 0
                except Exception:  # one bad round must not end the loop; the next one starts afresh
                    failures += 1
                    log.exception("reconcile of ServeCluster %s/%s failed (%d in a row)", namespace, name, failures)
                    outcome = Outcome(busy=True)
                if outcome.gone:
                    return
                interval = self.settings.poll_fast_s if outcome.busy else self.settings.poll_slow_s
                interval = min(interval * 2 ** min(failures, 4), 60.0) if failures else interval
                try:
                    await asyncio.wait_for(waker.wait(), timeout=interval)
                except TimeoutError:
                    pass
        finally:
            if self._wakers.get(key) is waker:
                del self._wakers[key]
                del self._tasks[key]

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
