"""How the pure composition scales with the number of applications on one cluster (run by hand).

Prints the median time to compose a cluster's Serve config for 10, 50 and 200 applications (each with three
inline deployments and one ServeDeployment), and the ratio per application against the smallest case.
"""
from __future__ import annotations

import statistics
import time

from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.compose import ServeView, compose


def resources(count: int) -> tuple[list[dict], list[dict], ServeView]:
    apps, sdeps = [], []
    for i in range(count):
        meta = {
            "name": f"app{i}", "namespace": "b", "uid": str(i), "generation": 1,
            "creationTimestamp": f"2026-01-01T00:00:{i % 60:02d}Z",
        }
        spec = {
            "cluster": "c", "importPath": "pkg.mod:app", "args": {"i": i},
            "deployments": [{"name": f"D{j}", "numReplicas": 2, "rayActorOptions": {"numCpus": 0.5}} for j in range(3)],
        }
        apps.append({"metadata": meta, "spec": spec})
        sdeps.append({
            "metadata": {**meta, "name": f"sdep{i}"},
            "spec": {"application": f"app{i}", "deploymentName": "D0", "numReplicas": 3},
        })
    view = ServeView(deployments={f"app{i}": frozenset({"D0", "D1", "D2"}) for i in range(count)})
    return apps, sdeps, view


def median_seconds(count: int, repeats: int = 15) -> float:
    apps, sdeps, view = resources(count)
    spec = ServeClusterSpec()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        compose(spec, apps, sdeps, view)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    base = None
    for count in (10, 50, 200):
        seconds = median_seconds(count)
        per_app = seconds / count
        base = base or per_app
        print(f"compose {count:4d} apps: median {seconds * 1000:8.2f} ms, per app {per_app * 1e6:7.1f} us, "
              f"ratio {per_app / base:4.2f}x")


if __name__ == "__main__":
    main()
