"""A Serve dashboard simulator for the scale benchmark (bench/ only; never used where real Ray can run).

It answers the part of the Ray dashboard's REST API that serveplane uses, on port 8265 of every head pod IP
that the stand-in kubelet hands out (one loopback address per pod, see standin_kubelet.py):

  PUT /api/serve/applications/   the body is validated by `ray.serve.schema.ServeDeploySchema`, as Serve does;
                                 a bad body gets 400 with pydantic's text. Serve's PUT is declarative: an
                                 application left out is deleted, a new or changed one is DEPLOYING for
                                 `deploy_delay_s`, then RUNNING; an unchanged one keeps running.
  GET /api/serve/applications/   `ServeInstanceDetails` in the shape Serve's controller returns it
                                 (`exclude_unset`): the empty schema before the first PUT (no controller yet),
                                 then the applications with `deployed_app_config` and their deployments and
                                 replicas, `controller_info`, `proxy_location`, `http_options`, `grpc_options`
                                 and one HEALTHY proxy per pod of the cluster (only the head's with HeadOnly),
                                 keyed by node id with `node_ip` = the pod's IP.
  GET /api/ray/version           as the dashboard answers it.
  GET /sim/stats                 (not Ray's) requests counted by "METHOD path", in total and per head; never
                                 counted itself.

Which head a request is for comes from the local address of its socket. The bench reads the counters and the
log of PUTs in-process (`stats()`, `puts_since()`), from another thread: everything they touch is locked.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DASHBOARD_PORT = 8265
APPLICATIONS_PATH = "/api/serve/applications/"
VERSION_PATH = "/api/ray/version"
STATS_PATH = "/sim/stats"

# What Serve's controller fills in for a deployment whose config leaves a field unset (Ray 2.x defaults).
DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "max_ongoing_requests": 5,
    "max_queued_requests": -1,
    "user_config": None,
    "graceful_shutdown_wait_loop_s": 2.0,
    "graceful_shutdown_timeout_s": 20.0,
    "health_check_period_s": 10.0,
    "health_check_timeout_s": 30.0,
    "ray_actor_options": {"num_cpus": 1.0},
}
# The deployment Serve reports for an application whose config names none (the simulator runs no code).
DEFAULT_DEPLOYMENT = "Ingress"


@dataclass(frozen=True)
class PodInfo:
    """One pod the stand-in kubelet made Ready, as the simulator needs it."""

    namespace: str
    name: str
    uid: str
    cluster: str
    role: str
    """`head` or `worker` (the pod's serveplane.dev/node-type label)."""
    ip: str
    generation: str = ""
    """The pod's serveplane.dev/generation label: each generation is a Ray cluster of its own ("" before
    generations, and for a kubelet that does not say)."""


class PodRegistry:
    """The pods that run, by IP; written by the kubelet, read by the simulator (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_ip: dict[str, PodInfo] = {}
        self._version = 0

    def add(self, pod: PodInfo) -> None:
        with self._lock:
            self._by_ip[pod.ip] = pod
            self._version += 1

    def remove(self, ip: str) -> PodInfo | None:
        with self._lock:
            self._version += 1
            return self._by_ip.pop(ip, None)

    def get(self, ip: str) -> PodInfo | None:
        with self._lock:
            return self._by_ip.get(ip)

    def cluster_pods(self, namespace: str, cluster: str, generation: str | None = None) -> list[PodInfo]:
        """The ServeCluster's pods (of one generation, unless None: of all), heads first, then by name."""
        with self._lock:
            pods = [
                p for p in self._by_ip.values()
                if p.namespace == namespace and p.cluster == cluster and generation in (None, p.generation)
            ]
        return sorted(pods, key=lambda p: (p.role != "head", p.name))

    @property
    def version(self) -> int:
        with self._lock:
            return self._version


def node_id(ip: str) -> str:
    """A Ray-looking node id (56 hex digits), stable per pod IP."""
    return hashlib.sha256(f"node:{ip}".encode()).hexdigest()[:56]


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _target_replicas(deployment: dict[str, Any]) -> int:
    replicas = deployment.get("num_replicas")
    if isinstance(replicas, int):
        return replicas
    auto = deployment.get("autoscaling_config") or {}
    for key in ("initial_replicas", "min_replicas"):
        if isinstance(auto.get(key), int) and auto[key] > 0:
            return int(auto[key])
    return 1


@dataclass
class _App:
    config: dict[str, Any]
    """The application's config as submitted (`ServeApplicationSchema`, exclude_unset), i.e. deployed_app_config."""
    deployed_wall: float
    ready_at: float
    """Monotonic time at which the application turns RUNNING."""
    changed: frozenset[str]
    """Deployments (re)deployed by the PUT that last changed this application."""


@dataclass
class HeadState:
    """What Serve's controller on one head knows: born with the first PUT to that head."""

    ip: str
    started_wall: float
    options: dict[str, Any] = field(default_factory=dict)
    apps: dict[str, _App] = field(default_factory=dict)
    version: int = 0
    cache_key: tuple[Any, ...] | None = None
    cache_text: str = ""


@dataclass(frozen=True)
class PutRecord:
    at: float
    """time.monotonic() when the PUT arrived."""
    ip: str
    replicas: dict[tuple[str, str], Any]
    """(application, deployment) -> num_replicas as the body carried it (None when unset)."""


class ServeSim:
    """The simulator; `start()` on an event loop, then `add_head(ip)` for every head pod IP."""

    def __init__(
        self,
        registry: PodRegistry,
        *,
        deploy_delay_s: float = 3.0,
        port: int = DASHBOARD_PORT,
        stats_host: str = "127.0.0.1",
        stats_port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from ray.serve.schema import ServeDeploySchema  # heavy; only the simulator needs it

        self._schema = ServeDeploySchema
        self.registry = registry
        self.deploy_delay_s = deploy_delay_s
        self.port = port
        self.stats_host, self.stats_port = stats_host, stats_port
        self._clock = clock
        self._lock = threading.Lock()
        self._heads: dict[str, HeadState] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._by_head: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self._puts: list[PutRecord] = []
        self._runner: web.AppRunner | None = None
        self._sites: dict[str, web.TCPSite] = {}
        self.session_name = time.strftime("session_%Y-%m-%d_%H-%M-%S_000000_1")

    # -- serving ----------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        application = web.Application(client_max_size=64 * 1024 * 1024)
        application.router.add_put(APPLICATIONS_PATH, self._put)
        application.router.add_get(APPLICATIONS_PATH, self._get)
        application.router.add_get(VERSION_PATH, self._version)
        application.router.add_get(STATS_PATH, self._stats)
        return application

    async def start(self) -> None:
        """Start serving; the stats endpoint listens on `stats_host:stats_port` (0: any free port)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.stats_host, self.stats_port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.stats_port = server.sockets[0].getsockname()[1]

    async def add_head(self, ip: str) -> None:
        """Listen on ip:port (idempotent). Raises OSError when the address is taken (e.g. a real dashboard)."""
        assert self._runner is not None, "start() first"
        if ip in self._sites:
            return
        site = web.TCPSite(self._runner, ip, self.port, reuse_address=True)
        await site.start()
        self._sites[ip] = site

    async def remove_head(self, ip: str) -> None:
        """Stop listening on ip and forget its Serve state (a new head starts with no applications)."""
        site = self._sites.pop(ip, None)
        if site is not None:
            await site.stop()
        with self._lock:
            self._heads.pop(ip, None)

    async def stop(self) -> None:
        for ip in list(self._sites):
            await self.remove_head(ip)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def stats_url(self) -> str:
        return f"http://{self.stats_host}:{self.stats_port}{STATS_PATH}"

    # -- what the bench reads (any thread) ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._counts),
                "by_head": {ip: dict(c) for ip, c in self._by_head.items()},
                "puts": len(self._puts),
                "heads": sorted(self._sites),
            }

    def puts_since(self, since: float) -> list[PutRecord]:
        with self._lock:
            return [p for p in self._puts if p.at >= since]

    # -- handlers ---------------------------------------------------------------------------------------

    @staticmethod
    def _local_ip(request: web.Request) -> str:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return str(sockname[0]) if sockname else ""

    def _count(self, request: web.Request) -> str:
        ip = self._local_ip(request)
        key = f"{request.method} {request.path}"
        with self._lock:
            self._counts[key] += 1
            self._by_head[ip][key] += 1
        return ip

    async def _put(self, request: web.Request) -> web.Response:
        ip = self._count(request)
        status, text = self.apply_put(ip, await request.text())
        return web.Response(status=status, text=text)

    async def _get(self, request: web.Request) -> web.Response:
        ip = self._count(request)
        return web.Response(text=self.details_text(ip), content_type="application/json")

    async def _version(self, request: web.Request) -> web.Response:
        self._count(request)
        import ray

        body = {"version": "4", "ray_version": ray.__version__, "ray_commit": ray.__commit__,
                "session_name": self.session_name}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.stats()), content_type="application/json")

    # -- Serve's behaviour (plain methods: the unit test calls them too) -----------------------------------

    def apply_put(self, ip: str, body: str) -> tuple[int, str]:
        """Serve's PUT: (HTTP status, text). 400 with the validation error for a body Serve would refuse."""
        from pydantic import ValidationError

        try:
            config = self._schema.model_validate(json.loads(body))
        except json.JSONDecodeError as error:
            return 400, f"request body is not JSON: {error}"
        except ValidationError as error:
            return 400, repr(error)
        now, wall = self._clock(), time.time()
        submitted = config.model_dump(mode="json", exclude_unset=True)
        apps = [a.model_dump(mode="json", exclude_unset=True) for a in config.applications]
        record = PutRecord(
            at=now, ip=ip,
            replicas={(a.get("name", "default"), d["name"]): d.get("num_replicas")
                      for a in apps for d in a.get("deployments") or []},
        )
        with self._lock:
            self._puts.append(record)
            head = self._heads.get(ip)
            if head is None:
                head = self._heads[ip] = HeadState(ip=ip, started_wall=wall)
            head.options = {k: v for k, v in submitted.items() if k != "applications"}
            kept: dict[str, _App] = {}
            for app in apps:
                name = app.get("name", "default")
                old = head.apps.get(name)
                if old is not None and old.config == app:
                    kept[name] = old
                    continue
                kept[name] = _App(
                    config=app, deployed_wall=wall, ready_at=now + self.deploy_delay_s, changed=_changed(old, app)
                )
            head.apps = kept
            head.version += 1
        return 200, ""

    def details(self, ip: str) -> dict[str, Any]:
        return json.loads(self.details_text(ip))

    def details_text(self, ip: str) -> str:
        """GET's body for the head at `ip`, rebuilt only when something it shows has changed."""
        now = self._clock()
        with self._lock:
            head = self._heads.get(ip)
            if head is None:
                return json.dumps(_empty_details())
            pod = self.registry.get(ip)
            # The head's own Ray cluster: during an upgrade, another generation's pods are not its nodes.
            pods = self.registry.cluster_pods(pod.namespace, pod.cluster, pod.generation) if pod else []
            deploying = tuple(sorted(n for n, a in head.apps.items() if a.ready_at > now))
            key = (head.version, deploying, tuple((p.ip, p.role) for p in pods))
            if key != head.cache_key:
                head.cache_text = json.dumps(instance_details(head, pods, now))
                head.cache_key = key
            return head.cache_text


def _changed(old: _App | None, app: dict[str, Any]) -> frozenset[str]:
    """The deployments a PUT redeploys: all of them for a new application or new code/args, else the changed ones."""
    same_code = old is not None and all(old.config.get(k) == app.get(k) for k in ("import_path", "args", "runtime_env"))
    if old is None or not same_code:
        return frozenset(_deployment_names(app))
    before = {d["name"]: d for d in old.config.get("deployments") or []}
    return frozenset(d["name"] for d in app.get("deployments") or [] if before.get(d["name"]) != d)


def _deployment_names(app: dict[str, Any]) -> list[str]:
    return [d["name"] for d in app.get("deployments") or []] or [DEFAULT_DEPLOYMENT]


def _empty_details() -> dict[str, Any]:
    # ServeInstanceDetails.get_empty_schema_dict(): what the dashboard answers while no controller runs.
    return {"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": None}


def _actor(ip: str, kind: str, seed: str) -> dict[str, Any]:
    return {
        "node_id": node_id(ip),
        "node_ip": ip,
        "node_instance_id": ip,
        "actor_id": _hex(f"actor:{seed}", 32),
        "actor_name": kind,
        "worker_id": _hex(f"worker:{seed}", 56),
        "log_file_path": f"/serve/{kind.lower()}_{_hex(seed, 6)}.log",
    }


def _deployment(app: str, spec: dict[str, Any], app_state: _App, pods: list[PodInfo], now: float) -> dict[str, Any]:
    name = spec["name"]
    target = _target_replicas(spec)
    updating = app_state.ready_at > now and name in app_state.changed
    config = {**DEPLOYMENT_DEFAULTS, "num_replicas": target, **spec}
    if "autoscaling_config" in spec:
        config.pop("num_replicas", None)
    actor_options = config.get("ray_actor_options") or {}
    cpus = actor_options.get("num_cpus", 1.0)
    replicas = []
    ips = [p.ip for p in pods] or [""]
    for index in range(target):
        ip = ips[index % len(ips)]
        replica_id = _hex(f"{app}#{name}#{index}", 8)
        replicas.append({
            **_actor(ip, f"SERVE_REPLICA::{app}#{name}#{replica_id}", f"{app}/{name}/{index}"),
            "replica_id": replica_id,
            "state": "STARTING" if updating else "RUNNING",
            "pid": 10000 + index,
            "start_time_s": app_state.deployed_wall,
        })
    return {
        "name": name,
        "status": "UPDATING" if updating else "HEALTHY",
        "status_trigger": "CONFIG_UPDATE_STARTED" if updating else "CONFIG_UPDATE_COMPLETED",
        "message": "",
        "deployment_config": config,
        "target_num_replicas": target,
        "required_resources": {"CPU": cpus},
        "replicas": replicas,
    }


def instance_details(head: HeadState, pods: list[PodInfo], now: float) -> dict[str, Any]:
    """ServeInstanceDetails of one head as Serve's controller dumps it (`exclude_unset=True`)."""
    options = head.options
    location = options.get("proxy_location", "EveryNode")
    proxied = [p for p in pods if location == "EveryNode" or p.role == "head"] if location != "Disabled" else []
    applications: dict[str, Any] = {}
    for name, app in sorted(head.apps.items()):
        deploying = app.ready_at > now
        specs = {d["name"]: d for d in app.config.get("deployments") or []}
        deployments = {
            d: _deployment(name, specs.get(d, {"name": d}), app, pods, now) for d in _deployment_names(app.config)
        }
        applications[name] = {
            "name": name,
            "route_prefix": app.config.get("route_prefix", "/"),
            "docs_path": None,
            "status": "DEPLOYING" if deploying else "RUNNING",
            "message": "",
            "last_deployed_time_s": app.deployed_wall,
            "deployed_app_config": app.config,
            "source": "declarative",
            "deployments": deployments,
            "external_scaler_enabled": bool(app.config.get("external_scaler_enabled", False)),
            "deployment_topology": {
                "app_name": name,
                "nodes": {d: {"name": d, "app_name": name, "outbound_deployments": [], "is_ingress": i == 0}
                          for i, d in enumerate(deployments)},
                "ingress_deployment": next(iter(deployments), None),
            },
        }
    return {
        "target_capacity": options.get("target_capacity"),
        "controller_info": _actor(head.ip, "SERVE_CONTROLLER_ACTOR", f"controller:{head.ip}"),
        "proxy_location": location,
        "http_options": options.get("http_options") or {"host": "0.0.0.0", "port": 8000},
        "grpc_options": options.get("grpc_options") or {"port": 9000, "grpc_servicer_functions": []},
        "proxies": {
            node_id(p.ip): {**_actor(p.ip, f"SERVE_PROXY_ACTOR-{node_id(p.ip)}", f"proxy:{p.ip}"), "status": "HEALTHY"}
            for p in proxied
        },
        "applications": applications,
        "target_groups": [],
        "restores_unset_config_options": True,
    }


async def serve_forever(registry: PodRegistry, ips: list[str], deploy_delay_s: float = 3.0) -> None:
    """Run the simulator by hand on the given head IPs (for poking at it with curl)."""
    sim = ServeSim(registry, deploy_delay_s=deploy_delay_s)
    await sim.start()
    for ip in ips:
        await sim.add_head(ip)
    print(f"serving {', '.join(ips)} on :{sim.port}; stats at {sim.stats_url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    registry = PodRegistry()
    heads = sys.argv[1:] or ["127.200.0.1"]
    for i, head_ip in enumerate(heads):
        registry.add(PodInfo("default", f"c{i}-head", str(i), f"c{i}", "head", head_ip))
    asyncio.run(serve_forever(registry, heads))
