"""Scale benchmark (run by hand): 50 ServeClusters x 10 ServeApplications plus 50 ServeDeployments.

The real local control plane and the real operator (`serveplane operator`, as its own ServiceAccount under the
chart's RBAC and poll settings); nothing runs Ray. A stand-in kubelet (standin_kubelet.py) makes the pods Running
and Ready with one loopback IP each, and a Serve dashboard simulator (servesim.py) answers on port 8265 of every
head IP. Both run in this process, on an event loop of their own thread.

Phases:
  1. one cluster with one application (and its ServeDeployment): operator RSS, and its idle API requests;
     then deleted again, the normal way (application first, then cluster);
  2. the whole set applied with `kubectl apply --server-side`, waited for until every object is Ready;
  3. a steady window (--idle-seconds): operator RSS and CPU, its API requests by verb from the API server's
     audit log, and the dashboard requests from the simulator's counters;
  4. spec change -> PUT: the ServeDeployments patched one by one (numReplicas 1 -> 2), each timed from the
     patch's answer to the simulator receiving a PUT whose body carries the new value;
  5. operator restart: time to steady (every head asked by the new process, every object Ready), with the PUTs
     and pod creations/deletions it made (should be none).

Figures are printed as one table at the end (and written to --json); a missed target prints MISS, it never
fails the run. Figures are noisy on a shared 2-core machine.

    .venv/bin/python bench/scale_bench.py [--quick] [--json out.json] [--operator-ref REF]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from serveplane.localcluster import operatorproc, pki
from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import ACCOUNT, NAMESPACE, OperatorProcess, install

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servesim import PodRegistry, ServeSim  # noqa: E402
from standin_kubelet import IpPool, StandinKubelet  # noqa: E402

try:
    from serveplane.localcluster import audit
except ImportError:  # an older tree without the audit log: the API figures print n/a
    audit = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
API = "/apis/serveplane.dev/v1alpha1"
KINDS = ("serveclusters", "serveapplications", "servedeployments")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})
MERGE = "application/merge-patch+json"
MIB, MB = 1024 * 1024, 1000 * 1000
T = TypeVar("T")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the objects -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    clusters: int
    apps: int
    namespaces: int
    workers: str
    """`0`, `1` or `alt` (every other cluster has one worker)."""

    def namespace(self, i: int) -> str:
        return f"bench-{i % self.namespaces}"

    def workers_of(self, i: int) -> int:
        return {"0": 0, "1": 1}.get(self.workers, 1 if i % 2 == 0 else 0)

    @property
    def pods(self) -> int:
        return sum(1 + self.workers_of(i) for i in range(self.clusters))


def cluster_objects(namespace: str, name: str, apps: int, workers: int) -> list[dict[str, Any]]:
    """A small ServeCluster, its applications (one inline deployment each) and one ServeDeployment."""
    def meta(obj_name: str) -> dict[str, Any]:
        return {"name": obj_name, "namespace": namespace}

    spec: dict[str, Any] = {"head": {"rayStartParams": {"num-cpus": "1"}}}
    if workers:
        spec["workerGroups"] = [{"name": "cpu", "replicas": workers, "rayStartParams": {"num-cpus": "1"}}]
    objs: list[dict[str, Any]] = [
        {"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "metadata": meta(name), "spec": spec}
    ]
    for j in range(apps):
        objs.append({
            "apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeApplication", "metadata": meta(f"{name}-a{j}"),
            "spec": {
                "cluster": name, "importPath": "bench.model:app", "routePrefix": f"/a{j}", "args": {"n": j},
                "deployments": [{"name": "Model", "numReplicas": 1, "rayActorOptions": {"numCpus": 0.1}}],
            },
        })
    objs.append({
        "apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeDeployment", "metadata": meta(f"{name}-a0-model"),
        "spec": {"application": f"{name}-a0", "deploymentName": "Model", "numReplicas": 1},
    })
    return objs


def all_objects(shape: Shape) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": shape.namespace(i)}}
        for i in range(shape.namespaces)
    ]
    for i in range(shape.clusters):
        docs += cluster_objects(shape.namespace(i), f"c{i:02d}", shape.apps, shape.workers_of(i))
    return docs


# -- the simulator and the kubelet, on their own loop --------------------------------------------------------

class Sidecar:
    """ServeSim and StandinKubelet on an event loop in a daemon thread; `call` runs a coroutine there."""

    def __init__(self, cp: ControlPlane, deploy_delay_s: float, ip_base: str) -> None:
        self.cp = cp
        self.deploy_delay_s = deploy_delay_s
        self.ip_base = ip_base
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sidecar", daemon=True)
        self.registry = PodRegistry()
        self.sim: ServeSim
        self.kubelet: StandinKubelet
        self._task: asyncio.Task[None] | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Sidecar:
        self.thread.start()
        self.call(self._start())
        if not self.kubelet.synced.wait(30):
            raise TimeoutError("the stand-in kubelet did not list the pods")
        return self

    async def _start(self) -> None:
        self.sim = ServeSim(self.registry, deploy_delay_s=self.deploy_delay_s)
        await self.sim.start()
        keys = pki.load(self.cp.layout.pki_dir)
        self.kubelet = StandinKubelet(
            self.cp.server_url, str(self.cp.layout.pki_dir / "ca.crt"), str(keys.admin.cert), str(keys.admin.key),
            self.registry, on_head=self.sim.add_head, on_head_gone=self.sim.remove_head, pool=IpPool(self.ip_base),
        )
        self._task = asyncio.get_running_loop().create_task(self.kubelet.run())

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        try:
            self.call(self._stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        await self.sim.stop()

    def head_ip(self, namespace: str, cluster: str) -> str | None:
        pods = self.registry.cluster_pods(namespace, cluster)
        return pods[0].ip if pods and pods[0].role == "head" else None

    def gets_by_head(self) -> dict[str, int]:
        return {ip: c.get("GET /api/serve/applications/", 0) for ip, c in self.sim.stats()["by_head"].items()}


# -- the operator process ------------------------------------------------------------------------------------

def ref_tree(ref: str, work: Path) -> Path:
    """A PYTHONPATH entry whose `serveplane` package is the tree of commit `ref` (for `--operator-ref`)."""
    src, shim = work / "src", work / "py" / "serveplane"
    src.mkdir(parents=True)
    shim.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    (shim / "__init__.py").write_text("")
    for name, path in (("operator", "operator"), ("localcluster", "e2e/localcluster"), ("runtime", "runtime"),
                       ("examples", "examples/apps")):
        if (src / path).exists():
            (shim / name).symlink_to(src / path)
    return work / "py"


def operator_env(args: argparse.Namespace, pythonpath: Path | None, name: str) -> dict[str, str]:
    env = {"SERVEPLANE_POLL_FAST_S": str(args.poll_fast), "SERVEPLANE_POLL_SLOW_S": str(args.poll_slow)}
    election = getattr(operatorproc, "election_env", None)
    if args.leader_election and election is not None:
        env.update(election(f"scale-bench-{name}"))  # as the chart runs it; an operator without it ignores this
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- reading the cluster -------------------------------------------------------------------------------------

def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            seen = cond.get("observedGeneration", status.get("observedGeneration"))
            return cond.get("status") == "True" and seen == obj["metadata"].get("generation")
    return False


def not_ready(cp: ControlPlane, namespaces: set[str]) -> dict[str, list[str]]:
    """Per kind, the objects in `namespaces` that are not Ready (for their current generation)."""
    out: dict[str, list[str]] = {}
    for plural in KINDS:
        code, body = cp.api.get(f"{API}/{plural}")
        if code != 200:
            raise RuntimeError(f"listing {plural}: HTTP {code}: {str(body)[:300]}")
        out[plural] = [
            f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in body.get("items") or []
            if o["metadata"]["namespace"] in namespaces and not _ready(o)
        ]
    return out


def count_objects(cp: ControlPlane, namespaces: set[str]) -> dict[str, int]:
    counts = {}
    for plural in (*KINDS, "pods"):
        path = "/api/v1/pods" if plural == "pods" else f"{API}/{plural}"
        code, body = cp.api.get(path)
        counts[plural] = sum(1 for o in body.get("items") or [] if o["metadata"]["namespace"] in namespaces)
    return counts


def reasons(cp: ControlPlane, names: list[str], plural: str, limit: int = 3) -> str:
    out = []
    for full in names[:limit]:
        namespace, name = full.split("/")
        code, obj = cp.api.get(f"{API}/namespaces/{namespace}/{plural}/{name}")
        cond = next((c for c in ((obj.get("status") or {}).get("conditions") or []) if c.get("type") == "Ready"), {})
        out.append(f"{full}: {cond.get('reason', '?')} {cond.get('message', '')[:120]}")
    return "; ".join(out)


def wait_steady(cp: ControlPlane, namespaces: set[str], timeout: float, what: str,
                operator: OperatorProcess | None = None) -> float:
    """Wait until every ServeCluster, ServeApplication and ServeDeployment in `namespaces` is Ready."""
    start = time.monotonic()
    last_report = start
    while True:
        pending = not_ready(cp, namespaces)
        if not any(pending.values()):
            seconds = time.monotonic() - start
            say(f"{what}: every object Ready after {seconds:.1f} s")
            return seconds
        now = time.monotonic()
        if now - start > timeout:
            details = "; ".join(reasons(cp, names, plural) for plural, names in pending.items() if names)
            raise TimeoutError(f"{what}: not Ready after {timeout:.0f} s: "
                               + ", ".join(f"{len(v)} {k}" for k, v in pending.items()) + f" ({details})"
                               + (f"\noperator log:\n{operator.log_tail(40)}" if operator else ""))
        if now - last_report > 20:
            last_report = now
            say(f"{what}: waiting, not Ready yet: " + ", ".join(f"{len(v)} {k}" for k, v in pending.items()))
        time.sleep(1.0)


def wait_gone(cp: ControlPlane, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = cp.api.get(path)
        if code == 404 or (code == 200 and "items" in body and not body["items"]):
            return True
        time.sleep(0.5)
    return False


# -- the audit log -------------------------------------------------------------------------------------------

@dataclass
class AuditWindow:
    """The operator's requests received in [since, until), read from where the log was at the window's start.

    Reads only what was appended meanwhile (the whole log can be large), and follows one rotation.
    """

    path: Path | None
    since: float = field(default_factory=time.time)
    _inode: int = 0
    _offset: int = 0

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            st = self.path.stat()
            self._inode, self._offset = st.st_ino, st.st_size

    @property
    def available(self) -> bool:
        return audit is not None and self.path is not None and self.path.exists()

    def requests(self, until: float) -> list[Any] | None:
        """The operator's requests (watches left out), or None without an audit log."""
        if not self.available:
            return None
        assert self.path is not None
        time.sleep(1.0)  # an event is logged when its request completes
        chunks = []
        current = self.path.stat()
        if current.st_ino != self._inode:
            for old in self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"):
                if old.stat().st_ino == self._inode:
                    chunks.append(_read_from(old, self._offset))
            chunks.append(_read_from(self.path, 0))
        else:
            chunks.append(_read_from(self.path, self._offset))
        events = []
        for line in "".join(chunks).split("\n"):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a last line still being written
            if event.get("stage") == "ResponseComplete":
                events.append(audit.parse(event))
        return audit.select(events, user=OPERATOR_USER, since=self.since, until=until, exclude_verbs=("watch",))


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def api_figures(requests: list[Any] | None, seconds: float) -> dict[str, Any]:
    if requests is None:
        return {"available": False}
    per_min = 60.0 / seconds
    leases = [r for r in requests if r.resource == "leases"]
    other = [r for r in requests if r.resource != "leases"]
    by = collections.Counter(f"{r.verb} {r.target}" for r in other)
    return {
        "available": True,
        "seconds": round(seconds, 1),
        "requests_per_min": round(len(other) * per_min, 1),
        "reads_per_min": round(sum(r.verb in READ_VERBS for r in other) * per_min, 1),
        "writes_per_min": round(sum(r.verb in WRITE_VERBS for r in other) * per_min, 1),
        "lease_requests_per_min": round(len(leases) * per_min, 1),
        "by_verb_per_min": {k: round(v * per_min, 1) for k, v in by.most_common()},
    }


# -- phases --------------------------------------------------------------------------------------------------

def apply(cp: ControlPlane, docs: list[dict[str, Any]]) -> None:
    cp.kubectl("apply", "--server-side", "--field-manager=scale-bench", "-f", "-", input=yaml.safe_dump_all(docs))


def sample_rss(pid: int, seconds: float, every: float = 2.0) -> list[int]:
    """RSS samples every `every` seconds for `seconds` (the whole window: returns at its end)."""
    samples, start = [], time.monotonic()
    while True:
        samples.append(rss_bytes(pid))
        left = seconds - (time.monotonic() - start)
        if left <= 0:
            return samples
        time.sleep(min(every, left))


def wait_served(cp: ControlPlane, timeout: float = 60.0) -> None:
    """Until the new CRDs are listed without 429 ("storage is (re)initializing"), so the operator starts clean."""
    deadline = time.monotonic() + timeout
    for plural in KINDS:
        while cp.api.get(f"{API}/{plural}")[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plural} are not served after {timeout:.0f} s")
            time.sleep(0.2)


def phase_one(cp: ControlPlane, side: Sidecar, operator: OperatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    say("phase 1: one cluster with one application")
    ns = "bench-one"
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}] + cluster_objects(ns, "one", 1, 0)
    apply(cp, docs)
    ready_s = wait_steady(cp, {ns}, args.timeout, "one cluster", operator)
    time.sleep(args.settle)
    window = AuditWindow(getattr(cp, "audit_log", None))
    start = time.monotonic()
    rss = sample_rss(operator.pid or 0, args.one_idle_seconds)
    seconds = time.monotonic() - start
    figures = {
        "apply_to_ready_s": round(ready_s, 1),
        "rss_bytes": statistics.median(rss),
        "api_idle": api_figures(window.requests(time.time()), seconds),
    }
    say("phase 1: deleting it (application first, then cluster)")
    cp.kubectl("delete", "-n", ns, "sdep/one-a0-model", "sapp/one-a0", "--wait=false")
    if not wait_gone(cp, f"{API}/namespaces/{ns}/serveapplications", 60):
        figures["problem"] = "the application's finalizer was not released within 60 s; removed by hand"
        say(f"phase 1: {figures['problem']}")
        cp.kubectl("patch", "-n", ns, "sapp/one-a0", "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                   check=False)
    cp.kubectl("delete", "-n", ns, "scl/one", "--wait=false")
    if not wait_gone(cp, f"/api/v1/namespaces/{ns}/pods", 60):
        say("phase 1: the pods of the deleted cluster are still there after 60 s")
    return figures


def idle_window(cp: ControlPlane, side: Sidecar, operator: OperatorProcess, seconds: float) -> dict[str, Any]:
    say(f"steady window: {seconds:.0f} s")
    pid = operator.pid or 0
    window = AuditWindow(getattr(cp, "audit_log", None))
    sim_before = side.sim.stats()["requests"]
    cpu_before, start = cpu_seconds(pid), time.monotonic()
    rss = sample_rss(pid, seconds, every=5.0)
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(pid) - cpu_before
    sim_after = side.sim.stats()["requests"]
    dashboard = {k: sim_after.get(k, 0) - sim_before.get(k, 0) for k in sim_after}
    per_min = 60.0 / elapsed
    return {
        "seconds": round(elapsed, 1),
        "rss_bytes": statistics.median(rss),
        "cpu_s_per_min": round(cpu * per_min, 2),
        "api": api_figures(window.requests(time.time()), elapsed),
        "dashboard_per_min": round(sum(dashboard.values()) * per_min, 1),
        "dashboard_by_path_per_min": {k: round(v * per_min, 1) for k, v in dashboard.items() if v},
    }


def changes(cp: ControlPlane, side: Sidecar, shape: Shape, count: int, timeout: float) -> dict[str, Any]:
    say(f"spec change -> PUT: {count} ServeDeployments, one by one")
    samples: list[float] = []
    missed = 0
    for i in range(count):
        ns, cluster = shape.namespace(i), f"c{i:02d}"
        app, new = f"{cluster}-a0", 2
        ip = side.head_ip(ns, cluster)
        sent = time.monotonic()
        code, body = cp.api.request("PATCH", f"{API}/namespaces/{ns}/servedeployments/{cluster}-a0-model",
                                    {"spec": {"numReplicas": new}}, MERGE)
        answered = time.monotonic()
        if code != 200:
            raise RuntimeError(f"patching {ns}/{cluster}-a0-model: HTTP {code}: {body}")
        deadline = answered + timeout
        seen = None
        while seen is None and time.monotonic() < deadline:
            seen = next((p for p in side.sim.puts_since(sent)
                         if p.ip == ip and p.replicas.get((app, "Model")) == new), None)
            if seen is None:
                time.sleep(0.002)
        if seen is None:
            missed += 1
            say(f"  {ns}/{cluster}: no PUT with numReplicas {new} within {timeout:.0f} s")
            continue
        samples.append(max(0.0, seen.at - answered))
    return {"samples_s": [round(s, 4) for s in samples], "missed": missed,
            "p50_s": percentile(samples, 50), "p99_s": percentile(samples, 99)}


def percentile(samples: list[float], pct: float) -> float | None:
    """Nearest rank."""
    if not samples:
        return None
    ranked = sorted(samples)
    return round(ranked[max(0, math.ceil(pct / 100 * len(ranked)) - 1)], 4)


def restart(cp: ControlPlane, side: Sidecar, operator: OperatorProcess, make: Callable[[str], OperatorProcess],
            namespaces: set[str], args: argparse.Namespace) -> tuple[OperatorProcess, dict[str, Any]]:
    say("operator restart")
    heads = set(side.sim.stats()["heads"])
    mark = time.monotonic()
    window = AuditWindow(getattr(cp, "audit_log", None))
    stop_start = time.monotonic()
    operator.stop()
    stop_s = time.monotonic() - stop_start
    started = time.monotonic()
    gets_before = side.gets_by_head()
    fresh = make("operator-2")
    fresh.start(timeout=args.timeout)
    healthy_s = time.monotonic() - started
    steady_s = None
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        gets = side.gets_by_head()
        asked = all(gets.get(ip, 0) > gets_before.get(ip, 0) for ip in heads)
        if asked and not any(not_ready(cp, namespaces).values()):
            steady_s = time.monotonic() - started
            break
        time.sleep(0.2)
    say(f"restart: steady after {steady_s} s; watching {args.restart_watch:.0f} s more for PUTs and pod changes")
    time.sleep(args.restart_watch)
    puts = side.sim.puts_since(mark)
    pods = collections.Counter(e.kind for e in side.kubelet.events(mark))
    requests = window.requests(time.time())
    op_pods = None if requests is None else collections.Counter(
        r.verb for r in requests if r.resource == "pods" and not r.subresource and r.verb in ("create", "delete"))
    return fresh, {
        "stop_s": round(stop_s, 1),
        "healthy_s": round(healthy_s, 1),
        "steady_s": None if steady_s is None else round(steady_s, 1),
        "puts": len(puts),
        "pod_creations_seen": pods.get("created", 0),
        "pod_deletions_seen": pods.get("terminated", 0),
        "operator_pod_creates": None if op_pods is None else op_pods.get("create", 0),
        "operator_pod_deletes": None if op_pods is None else op_pods.get("delete", 0),
        "operator_writes": None if requests is None else sum(
            r.verb in WRITE_VERBS and r.resource != "leases" for r in requests),
        "operator_lease_writes": None if requests is None else sum(
            r.verb in WRITE_VERBS and r.resource == "leases" for r in requests),
        "api": api_figures(requests, time.monotonic() - mark),
    }


def log_problems(paths: list[Path]) -> dict[str, Any]:
    """ERROR/WARNING/Forbidden lines of the operator's logs, grouped by their text with the numbers left out."""
    lines = []
    for path in paths:
        if path.exists():
            lines += path.read_text(errors="replace").splitlines()
    markers = ("Traceback", "ERROR", "Forbidden", " 403", "WARNING")
    flagged = [line for line in lines if any(m in line for m in markers)]
    groups: collections.Counter[str] = collections.Counter()
    for line in flagged:
        text = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line
        groups[re.sub(r"\d+", "N", text)[:200]] += 1
    return {"flagged_lines": len(flagged), "tracebacks": sum("Traceback" in line for line in lines),
            "first": [f"{n}x {text}" for text, n in groups.most_common(8)]}


# -- the report ----------------------------------------------------------------------------------------------

def verdict(value: float | None, limit: float, *, strict: bool = True) -> str:
    if value is None:
        return "n/a"
    return "PASS" if (value < limit if strict else value <= limit) else "MISS"


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    one, idle, change, rs = result["one"], result["idle"], result["changes"], result["restart"]
    n = result["shape"]["applications"]
    out: list[tuple[str, str, str, str]] = []

    def api(fig: dict[str, Any], key: str) -> float | None:
        return fig.get(key) if fig.get("available") else None

    def num(value: float | None, unit: str, fmt: str = "{:.1f}") -> str:
        return "n/a" if value is None else fmt.format(value) + unit

    rss1 = one["rss_bytes"] / MIB
    out.append(("operator RSS, 1 cluster + 1 app", f"{rss1:.1f} MiB", "<= 90 MiB", verdict(rss1, 90, strict=False)))
    idle1 = one["api_idle"]
    out.append(("  idle API requests/min, 1 cluster", num(api(idle1, "requests_per_min"), ""), "-", "-"))
    rss = idle["rss_bytes"]
    out.append((f"operator RSS, {n} apps", f"{rss / MIB:.1f} MiB ({rss / MB:.0f} MB)", "< 250 MB",
                verdict(rss / MB, 250)))
    out.append((f"apply -> all Ready, {n} apps", f"{result['apply_to_ready_s']:.1f} s", "-", "-"))
    fig = idle["api"]
    out.append(("idle API requests/min (no watches, no leases)", num(api(fig, "requests_per_min"), ""), "-", "-"))
    for label, key in (("idle reads/min (get/list)", "reads_per_min"), ("idle writes/min", "writes_per_min")):
        out.append((label, num(api(fig, key), ""), "0", verdict(api(fig, key), 0, strict=False)))
    out.append(("idle lease requests/min", num(api(fig, "lease_requests_per_min"), ""), "-", "-"))
    out.append(("idle dashboard requests/min", f"{idle['dashboard_per_min']:.1f}", "-", "-"))
    out.append(("operator CPU s per idle minute", f"{idle['cpu_s_per_min']:.2f} s", "-", "-"))
    p50, p99 = change["p50_s"], change["p99_s"]
    label = f"change -> PUT (n={len(change['samples_s'])}, missed {change['missed']})"
    out.append((f"{label} p50", num(None if p50 is None else p50 * 1000, " ms", "{:.0f}"), "< 100 ms",
                verdict(None if p50 is None else p50 * 1000, 100)))
    out.append((f"{label} p99", num(None if p99 is None else p99 * 1000, " ms", "{:.0f}"), "< 500 ms",
                verdict(None if p99 is None else p99 * 1000, 500)))
    out.append(("operator restart -> steady", num(rs["steady_s"], " s"), "< 30 s", verdict(rs["steady_s"], 30)))
    out.append(("  PUTs during restart", str(rs["puts"]), "0", verdict(rs["puts"], 0, strict=False)))
    changes_seen = rs["pod_creations_seen"] + rs["pod_deletions_seen"]
    out.append(("  pod creations + deletions during restart",
                f"{rs['pod_creations_seen']} + {rs['pod_deletions_seen']}", "0",
                verdict(changes_seen, 0, strict=False)))
    out.append(("  operator writes during restart (no leases)", num(rs["operator_writes"], "", "{:d}"), "-", "-"))
    out.append(("  operator lease writes during restart", num(rs.get("operator_lease_writes"), "", "{:d}"), "-", "-"))
    return out


def print_table(result: dict[str, Any]) -> None:
    table = rows(result)
    width = max(len(r[0]) for r in table)
    shape = result["shape"]
    print()
    print(f"scale benchmark: {shape['clusters']} clusters x {shape['apps_per_cluster']} apps = {shape['applications']} "
          f"applications, {shape['servedeployments']} ServeDeployments, {shape['pods']} pods in "
          f"{shape['namespaces']} namespaces; operator {result['operator']}; polls "
          f"{result['poll']['fast_s']}/{result['poll']['slow_s']} s; 2 shared cores, figures are noisy")
    print(f"{'figure':<{width}}  {'value':>22}  {'target':>10}  verdict")
    for name, value, target, mark in table:
        print(f"{name:<{width}}  {value:>22}  {target:>10}  {mark}")
    top = (result["idle"]["api"].get("by_verb_per_min") or {})
    if top:
        print("idle API requests/min by verb and resource: "
              + ", ".join(f"{k} {v}" for k, v in list(top.items())[:12]))
    if result["idle"]["dashboard_by_path_per_min"]:
        print("idle dashboard requests/min: "
              + ", ".join(f"{k} {v}" for k, v in result["idle"]["dashboard_by_path_per_min"].items()))
    logs = result["operator_log"]
    print(f"operator log: {logs['flagged_lines']} ERROR/WARNING/Forbidden lines, {logs['tracebacks']} tracebacks"
          + (":\n  " + "\n  ".join(logs["first"]) if logs["first"] else ""))


# -- main ----------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="5 clusters x 10 apps, 20 s idle: to iterate")
    p.add_argument("--clusters", type=int)
    p.add_argument("--apps", type=int, default=10, help="ServeApplications per cluster")
    p.add_argument("--namespaces", type=int, help="clusters are spread over this many namespaces (default: 1 per 5)")
    p.add_argument("--workers", choices=("0", "1", "alt"), default="alt",
                   help="workers per cluster (alt: 1, 0, 1, ...)")
    p.add_argument("--idle-seconds", type=float)
    p.add_argument("--one-idle-seconds", type=float, help="steady window with one cluster (RSS, idle requests)")
    p.add_argument("--changes", type=int, help="ServeDeployments changed one by one (default: all)")
    p.add_argument("--settle", type=float, default=10.0, help="quiet seconds after Ready before a window")
    p.add_argument("--restart-watch", type=float, default=15.0, help="seconds watched for PUTs after the restart")
    p.add_argument("--deploy-delay", type=float, default=3.0, help="simulated DEPLOYING -> RUNNING time, seconds")
    p.add_argument("--poll-fast", type=float, default=2.0, help="SERVEPLANE_POLL_FAST_S (the chart's default)")
    p.add_argument("--poll-slow", type=float, default=15.0, help="SERVEPLANE_POLL_SLOW_S (the chart's default)")
    p.add_argument("--timeout", type=float, default=900.0, help="for each wait until Ready")
    p.add_argument("--change-timeout", type=float, default=30.0)
    p.add_argument("--ip-base", default="127.200.0.1", help="first loopback pod IP")
    p.add_argument("--no-leader-election", dest="leader_election", action="store_false",
                   help="run without leader election (default: with it, as the chart does, where the tree has it)")
    p.add_argument("--operator-ref", help="run the operator of this git commit (default: the work tree)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the control plane's state dir")
    args = p.parse_args(argv)
    quick = args.quick
    args.clusters = args.clusters or (5 if quick else 50)
    args.idle_seconds = args.idle_seconds or (20.0 if quick else 60.0)
    # At least two slow polls, so that an operator polling at idle shows it.
    args.one_idle_seconds = args.one_idle_seconds or max(2 * args.poll_slow, 20.0 if quick else 30.0)
    args.namespaces = args.namespaces or max(1, math.ceil(args.clusters / 5))
    args.changes = min(args.changes or args.clusters, args.clusters)
    if quick:
        args.settle = min(args.settle, 5.0)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    shape = Shape(args.clusters, args.apps, args.namespaces, args.workers)
    work = Path(tempfile.mkdtemp(prefix="serveplane-scale-"))
    say(f"work dir (operator logs): {work}")
    pythonpath = ref_tree(args.operator_ref, work / "ref") if args.operator_ref else None
    described = f"at {args.operator_ref}" if args.operator_ref else "of the work tree"
    operators: list[OperatorProcess] = []
    state_dir = work / "controlplane" if args.keep else None
    with ControlPlane(state_dir) as cp:
        install(cp)
        wait_served(cp)
        side = Sidecar(cp, args.deploy_delay, args.ip_base).start()
        try:
            def make(name: str) -> OperatorProcess:
                op = OperatorProcess(cp, work / name, env=operator_env(args, pythonpath, name))
                operators.append(op)
                return op

            operator = make("operator-1").start()
            say(f"operator {described} running, pid {operator.pid}")
            one = phase_one(cp, side, operator, args)

            namespaces = {shape.namespace(i) for i in range(shape.clusters)}
            say(f"phase 2: applying {shape.clusters} clusters x {shape.apps} apps + {shape.clusters} ServeDeployments")
            start = time.monotonic()
            apply(cp, all_objects(shape))
            apply_s = time.monotonic() - start
            say(f"applied in {apply_s:.1f} s")
            ready_s = wait_steady(cp, namespaces, args.timeout, f"{shape.clusters * shape.apps} apps", operator)
            time.sleep(args.settle)
            idle = idle_window(cp, side, operator, args.idle_seconds)
            change = changes(cp, side, shape, args.changes, args.change_timeout)
            wait_steady(cp, namespaces, args.timeout, "after the changes", operator)
            time.sleep(args.settle)
            operator, rs = restart(cp, side, operator, make, namespaces, args)
            counts = count_objects(cp, namespaces)
            result = {
                "operator": described,
                "shape": {"clusters": shape.clusters, "apps_per_cluster": shape.apps,
                          "applications": shape.clusters * shape.apps, "servedeployments": shape.clusters,
                          "namespaces": shape.namespaces, "pods": shape.pods, "counted": counts},
                "poll": {"fast_s": args.poll_fast, "slow_s": args.poll_slow},
                "deploy_delay_s": args.deploy_delay,
                "apply_s": round(apply_s, 1),
                "apply_to_ready_s": round(ready_s + apply_s, 1),
                "one": one,
                "idle": idle,
                "changes": change,
                "restart": rs,
                "kubelet_errors": side.kubelet.errors,
                "sim_requests": side.sim.stats()["requests"],
                "work_dir": str(work),
            }
        finally:
            for op in operators:
                op.stop()
            side.stop()
        result["operator_log"] = log_problems([op.log_path for op in operators])
        if args.keep:
            say(f"control plane state kept in {cp.state_dir}")
    result["rows"] = [dict(zip(("figure", "value", "target", "verdict"), r, strict=True)) for r in rows(result)]
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
        say(f"figures written to {args.json}")
    if pythonpath is not None:
        shutil.rmtree(work / "ref", ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
