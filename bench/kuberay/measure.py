"""The steps of the comparison, the same code for both systems (systems.py): each returns the figures it measured.

Traffic is the e2e suite's EndpointTraffic: requests spread over the serve Service's ready endpoints, re-read every
half second, so a request fails when a client of the Service would see it fail, and the seconds with no ready
endpoint are counted.
"""
from __future__ import annotations

import collections
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trialkit import EndpointTraffic

from serveplane.localcluster import audit
from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.node import Node
from serveplane.localcluster.trial import serve_endpoints

from .systems import DASHBOARD_PORT, HELLO_PATH, SERVE_PORT, Obj, System, example

GREETING = "Hello from the bench"
UPDATED = "Updated in place"
# The workload's size, from the example the two systems share: a head plus the worker group, and the number of
# hello replicas (one a node): at least that many proxies have a replica and serve.
RAY_PODS = 1 + sum(g["replicas"] for g in example("cluster.yaml")["spec"]["workerGroups"])
SERVING_PROXIES = next(d["numReplicas"] for d in example("hello.yaml")["spec"]["deployments"])
RATE = 10.0  # requests a second, as the e2e suite's default
IDLE_WINDOW_S = 60.0

Result = dict[str, Any]


def _say(message: str) -> None:
    print(f"[vs_kuberay] {message}", flush=True)


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll until `probe` returns something truthy (returned); OSError, KeyError and ValueError mean not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, KeyError, ValueError, TypeError) as problem:
            last = problem
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


def greeting_at(ip: str, timeout: float = 3.0) -> str | None:
    """The hello app's greeting from the Serve proxy at `ip`, or None unless it answered 200 with one."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{SERVE_PORT}{HELLO_PATH}", timeout=timeout) as answer:
            value = json.loads(answer.read()).get("greeting")
            return value if answer.status == 200 and isinstance(value, str) else None
    except (OSError, ValueError):
        return None


def serving(system: System, greeting: str) -> list[str] | None:
    """The ready serve endpoints, when at least SERVING_PROXIES of them exist and every one answers `greeting`."""
    endpoints = serve_endpoints(system.cp, system.namespace, system.serve_service)
    if len(endpoints) >= SERVING_PROXIES and all(greeting_at(ip) == greeting for ip in endpoints):
        return endpoints
    return None


def _live(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def ray_hosts(system: System, head: Obj) -> set[str]:
    """The hosts (pod names) of the alive nodes of the Ray cluster `head` runs, from its dashboard."""
    url = f"http://{head['status']['podIP']}:{DASHBOARD_PORT}/nodes?view=hostNameList"
    request = urllib.request.Request(url, headers=system.dashboard_headers())
    with urllib.request.urlopen(request, timeout=5) as answer:
        return set(json.loads(answer.read())["data"]["hostNameList"])  # the dashboard answers in camelCase


def current_greeting(system: System) -> str:
    """What the hello app answers now (the steps can run one by one, after any earlier change)."""
    endpoints = wait_until("a ready serve endpoint",
                           lambda: serve_endpoints(system.cp, system.namespace, system.serve_service), timeout=120)
    return str(wait_until("the hello app to answer", lambda: greeting_at(endpoints[0]), timeout=60))


def whole(system: System, greeting: str, image: str | None = None) -> bool:
    """Steady: RAY_PODS live Ray pods (of `image`, if given) and no other, all of them nodes of the head's Ray
    cluster, and the serve Service routing to proxies that answer `greeting`."""
    pods = system.pods()
    live = _live(pods)
    if len(pods) != RAY_PODS or len(live) != RAY_PODS:
        return False
    if image is not None and any(p["spec"]["containers"][0]["image"] != image for p in live):
        return False
    head = system.head_pod()
    if head is None or not head.get("status", {}).get("podIP"):
        return False
    return ray_hosts(system, head) == {p["metadata"]["name"] for p in live} and serving(system, greeting) is not None


def identities(system: System) -> dict[str, tuple[str, int]]:
    """Each Ray pod's UID and container restarts: what an in-place change must leave alone."""
    return {
        p["metadata"]["name"]: (p["metadata"]["uid"],
                                sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses") or []))
        for p in system.pods()
    }


def traffic_figures(traffic: EndpointTraffic) -> Result:
    return {
        "requests": traffic.sent,
        "failed": traffic.failed,
        "no_ready_endpoint_s": round(traffic.no_endpoint_s, 1),
        "first_errors": traffic.errors[:5],
    }


def remove_examples(cp: ControlPlane) -> None:
    """The examples `serveplane dev up` applied take the node's 2 cores too: delete them before measuring."""
    if cp.kubectl("get", "scl", "demo", "-n", "default", check=False).returncode != 0:
        return
    _say("deleting the examples of `serveplane dev up` (default/demo and its applications) to free the node")
    cp.kubectl("delete", "sapp,sdep", "--all", "-n", "default", "--timeout=300s", check=False)
    cp.kubectl("delete", "scl", "demo", "-n", "default", "--timeout=300s")
    cp.kubectl("wait", "--for=delete", "pod", "-l", "serveplane.dev/cluster=demo", "-n", "default",
               "--timeout=300s", check=False)


# ---------------------------------------------------------------------------------------------------------------
# The steps


def apply_to_first_200(system: System) -> Result:
    """Fresh namespace, apply the workload, then time the first 200 of the hello app through a ready serve
    endpoint, and the moment the Service routes to SERVING_PROXIES proxies that all answer."""
    system.remove()
    system.create_namespace()
    started = time.monotonic()
    system.apply(GREETING)
    first: float | None = None

    def probe() -> bool:
        nonlocal first
        endpoints = serve_endpoints(system.cp, system.namespace, system.serve_service)
        if first is None and any(greeting_at(ip) == GREETING for ip in endpoints):
            first = time.monotonic() - started
        return first is not None and serving(system, GREETING) is not None

    wait_until("the hello app to answer", probe, timeout=900, interval=0.25)
    serving_s = time.monotonic() - started
    wait_until("the whole cluster", lambda: whole(system, GREETING), timeout=600)
    assert first is not None
    return {"first_200_s": round(first, 1), "serving_s": round(serving_s, 1),
            "whole_s": round(time.monotonic() - started, 1)}


class AuditTail:
    """The audit log from a mark on: a stack that ran for hours has a log of up to 100 MB, too much to parse again
    on every poll of 2 cores; only the lines written since the mark are read (from the start again if the API
    server rotated the file meanwhile)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.requests: list[audit.Request] = []

    def read(self) -> list[audit.Request]:
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < self.offset:
            self.offset = 0
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read(size - self.offset)
        whole_lines = chunk[: chunk.rfind(b"\n") + 1]  # a last line still being written waits for the next read
        self.offset += len(whole_lines)
        for line in whole_lines.splitlines():
            if line.strip():
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete":
                    self.requests.append(audit.parse(event))
        return self.requests

    def count(self, user: str, since: float, until: float) -> collections.Counter[tuple[str, str]]:
        return audit.count(self.read(), user=user, since=since, until=until)


def _quiet(system: System, log: AuditTail, marked: float, seconds: float) -> bool:
    """No request but Lease renewals by the operator in the last `seconds` (of the log read since `marked`)."""
    now = time.time()
    calls = log.count(system.operator_user, now - seconds, now)
    return now - marked >= seconds and not any(not target.startswith("leases") for _, target in calls)


def idle_minute(system: System) -> Result:
    """One steady minute: the operator's API requests (audit log; watches left out, Lease renewals apart), its HTTP
    requests to Ray, its resident memory."""
    log, marked = AuditTail(system.cp.audit_log), time.time()
    try:  # once the operator has finished reacting to the apply; one that never goes quiet is measured anyway
        wait_until("the operator to go quiet for 10 s", lambda: _quiet(system, log, marked, 10), timeout=90,
                   interval=2)
        settled = True
    except TimeoutError:
        settled = False
    http_before = system.operator_http_requests()
    start = time.time()
    rss: list[float] = []
    while time.time() - start < IDLE_WINDOW_S:  # the measured window itself, sampling memory as it goes
        rss.append(system.operator_rss_mib())
        time.sleep(5)
    end = time.time()
    http_during = system.operator_http_requests() - http_before
    time.sleep(1)  # a request of the window's last moment is logged once answered
    calls = log.count(system.operator_user, start, end)
    per_minute = 60.0 / (end - start)
    leases = sum(n for (_, target), n in calls.items() if target.startswith("leases"))
    others = collections.Counter({f"{verb} {target}": n for (verb, target), n in calls.items()
                                  if not target.startswith("leases")})
    return {
        "quiet_before": settled,
        "api_requests_per_min": round(sum(others.values()) * per_minute, 1),
        "api_requests": dict(others.most_common()),
        "lease_requests_per_min": round(leases * per_minute, 1),
        "dashboard_requests_per_min": round(http_during["dashboard"] * per_minute, 1),
        "proxy_health_requests_per_min": round(http_during["serve proxy health"] * per_minute, 1),
        "operator_rss_mib": round(max(rss), 1),
        "operator": system.operator_note(),
    }


def in_place_update(system: System) -> Result:
    """The hello app's args changed: time until every serving proxy answers the new greeting, under traffic."""
    wanted = GREETING if current_greeting(system) == UPDATED else UPDATED  # a change also when run again
    before = identities(system)
    with EndpointTraffic(system.cp, system.namespace, system.serve_service, HELLO_PATH, rate=RATE) as traffic:
        traffic.carry_on(20)
        started = time.monotonic()
        system.set_greeting(wanted)
        wait_until("the new greeting everywhere", lambda: serving(system, wanted), timeout=600, interval=0.25)
        seconds = time.monotonic() - started
        traffic.carry_on(40)
    after = identities(system)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    return {"seconds": round(seconds, 1), **traffic_figures(traffic), "pods_replaced_or_restarted": len(changed)}


class PeakPods:
    """The most Ray pods of the workload that existed at once (terminating ones too: they still hold the node)."""

    def __init__(self, system: System) -> None:
        self.system, self.peak = system, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            try:
                pods = self.system.pods()
            except Exception:  # a failed read is no measurement; the next one is
                continue
            self.peak = max(self.peak, sum(1 for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")))

    def __enter__(self) -> PeakPods:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def retag(cp: ControlPlane, node: Node, source: str, target: str) -> None:
    """Give the node's containerd the runtime image under a second name (nothing can be pulled), and wait until the
    kubelet reports it, so pods of the new name start from it."""
    # containerd keeps images by their full names, as it normalises the short ones pods use.
    qualified = [name if "." in name.split("/")[0] else f"docker.io/{name}" for name in (source, target)]
    node.ctr("images", "tag", "--force", *qualified)

    def reported() -> bool:
        status = json.loads(cp.kubectl("get", "node", node.name, "-o", "json").stdout)["status"]
        return any(qualified[1] in image.get("names", []) for image in status.get("images", []))

    wait_until(f"the node to report {qualified[1]}", reported, timeout=120, interval=2)


def image_upgrade(system: System, image: str) -> Result:
    """Every Ray pod's image changed (serveplane: the ServeCluster's spec.image; KubeRay: the RayService's
    rayClusterConfig, its blue/green): failures, seconds without a ready endpoint, the peak of pods, the time until
    the traffic is on new pods only and until the old ones are gone."""
    greeting = current_greeting(system)
    with PeakPods(system) as peak, EndpointTraffic(system.cp, system.namespace, system.serve_service, HELLO_PATH,
                                                   rate=RATE) as traffic:
        traffic.carry_on(20)
        started = time.monotonic()
        system.set_image(image)
        switched: float | None = None

        def done() -> bool:
            nonlocal switched
            if switched is None:
                new = {p["status"].get("podIP") for p in _live(system.pods())
                       if p["spec"]["containers"][0]["image"] == image}
                endpoints = set(traffic.endpoints)
                if endpoints and endpoints <= new:
                    switched = time.monotonic() - started
            return whole(system, greeting, image)

        wait_until("the upgrade to end (old pods gone)", done, timeout=1500, interval=1.0)
        seconds = time.monotonic() - started
        traffic.carry_on(20)
    return {"seconds": round(seconds, 1), "traffic_on_new_pods_s": None if switched is None else round(switched, 1),
            **traffic_figures(traffic), "peak_pods": peak.peak}


def head_loss(system: System) -> Result:
    """The head pod deleted under traffic: failures, seconds without a ready endpoint, and the time until the
    cluster is whole again (a new head, every pod a node of its Ray cluster, the app answering everywhere)."""
    head = wait_until("one head pod", system.head_pod, timeout=60)
    greeting = current_greeting(system)
    with EndpointTraffic(system.cp, system.namespace, system.serve_service, HELLO_PATH, rate=RATE) as traffic:
        traffic.carry_on(20)
        started = time.monotonic()
        system.cp.kubectl("delete", "pod", head["metadata"]["name"], "-n", system.namespace, "--wait=false")

        def replaced() -> bool:
            new = system.head_pod()
            return new is not None and new["metadata"]["uid"] != head["metadata"]["uid"]

        wait_until("a new head pod", replaced, timeout=300)
        wait_until("the cluster whole again", lambda: whole(system, greeting), timeout=900, interval=1.0)
        seconds = time.monotonic() - started
        traffic.carry_on(20)
    return {"seconds": round(seconds, 1), **traffic_figures(traffic)}
