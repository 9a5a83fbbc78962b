"""`python -m serveplane.runtime` for real on this host: Ray, the agent's probes, drain, shutdown and crash exits.

Each node gets free ports for everything (other Ray clusters may run on this machine) and POD_IP=127.0.0.1. No
fixed sleeps: every wait polls with a deadline. A test that fails still kills what it started, by Ray session.
Run with `-s` to see the measured figures (startup time, agent memory, stop time).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from serveplane.localcluster.redis import RedisServer
from serveplane.runtime import args as cli
from serveplane.runtime import procfs

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

STARTUP_TIMEOUT_S = 180.0  # 2 shared cores: `ray start --head` alone takes ~10 s, more when the box is busy
DEPLOY_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 90.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def wait_for(check: Callable[[], Any], timeout: float, what: str, node: "Node | None" = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if node is not None and node.proc.poll() is not None:
            pytest.fail(f"entrypoint exited with {node.proc.returncode} while waiting for {what}:\n{node.log_tail()}")
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}" + (f":\n{node.log_tail()}" if node else ""))


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    temp_dir: str
    log_path: Path
    agent_url: str
    http_port: int
    started: float
    sessions: set[int] = field(default_factory=set)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        return http("GET", self.agent_url + path, timeout=timeout)

    def ray_processes(self) -> list[procfs.ProcStat]:
        """Every live process of this node's Ray: its session(s) plus anything naming its temp dir."""
        self.sessions |= {s.session for pid in procfs.mentioning(self.temp_dir) if (s := procfs.stat(pid))}
        self.sessions.discard(os.getsid(0))  # never our own
        members = {m.pid: m for sid in self.sessions for m in procfs.session_members(sid)}
        for pid in procfs.mentioning(self.temp_dir):
            if (found := procfs.stat(pid)) is not None:
                members[pid] = found
        return [m for m in members.values() if m.pid != self.proc.pid]

    def kill_everything(self) -> None:
        """Teardown after a failure: SIGKILL the entrypoint and every Ray process it left."""
        self.ray_processes()  # remember the sessions while their processes still exist
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 30
        while (left := self.ray_processes()) and time.monotonic() < deadline:
            for member in left:
                try:
                    os.kill(member.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not the repo root: its `operator/` folder would shadow the stdlib module in Ray's workers.
    with tempfile.TemporaryDirectory(prefix="sprt-") as path:
        yield Path(path)


@pytest.fixture
def nodes(workdir: Path) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def start(role: str, extra: list[str], name: str, env: dict[str, str] | None = None) -> Node:
        agent, http_port, metrics, agent_listen = free_ports(4)
        pod_env = {
            **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
            "POD_IP": "127.0.0.1",
            "POD_NAME": f"{name}-{os.getpid()}",
            "POD_NAMESPACE": "runtime-test",
            "SERVEPLANE_CLUSTER": "it",
            "RAY_USAGE_STATS_ENABLED": "0",
            **(env or {}),
        }
        argv = [
            sys.executable, "-m", "serveplane.runtime", role,
            f"--agent-port={agent}", f"--http-port={http_port}", f"--metrics-port={metrics}", *extra,
            # Default to fixed ports; moved so parallel Ray nodes on this host do not collide.
            f"--ray-param=dashboard-agent-listen-port={agent_listen}",
            "--ray-param=object-store-memory=100000000",
        ]
        log_path = workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=workdir, env=pod_env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        node = Node(proc, cli.temp_dir(pod_env, proc.pid), log_path, f"http://127.0.0.1:{agent}", http_port,
                    time.monotonic())
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill_everything()
        # A crashed or killed node keeps its Ray temp dir (its logs tell why); tests do not need it afterwards.
        shutil.rmtree(node.temp_dir, ignore_errors=True)


def start_head(nodes: Callable[..., Node], name: str, gcs: int | None = None, **env: str) -> tuple[Node, str]:
    """A head node; returns it and its dashboard URL."""
    gcs = gcs or free_ports(1)[0]
    dashboard, client = free_ports(2)
    node = nodes("head", [f"--port={gcs}", f"--dashboard-port={dashboard}",
                          f"--ray-param=ray-client-server-port={client}", "--ray-param=num-cpus=2"], name, env)
    return node, f"http://127.0.0.1:{dashboard}"


def ready(node: Node) -> dict[str, Any] | None:
    status, body = node.get("/readyz", timeout=5)
    return body if status == 200 else None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stop_and_check_clean(node: Node) -> float:
    """SIGTERM the entrypoint; it must exit 0 and leave no Ray process behind. Returns how long it took."""
    node.ray_processes()  # learn the sessions while Ray runs
    assert node.ray_processes(), "no Ray process found before the stop: the check below would prove nothing"
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    try:
        code = node.proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"entrypoint still running {EXIT_TIMEOUT_S}s after SIGTERM:\n{node.log_tail()}")
    took = time.monotonic() - started
    assert code == 0, node.log_tail()
    assert node.ray_processes() == [], node.log_tail()
    assert not Path(node.temp_dir).exists(), "a clean stop removes the Ray temp dir"
    return took


def test_head_lifecycle(nodes: Callable[..., Node]) -> None:
    head, dashboard = start_head(nodes, "head", SERVEPLANE_DRAIN_MIN_WAIT_S="1", SERVEPLANE_DRAIN_TIMEOUT_S="20")

    # Liveness answers at once, during startup, without waiting for Ray.
    status, live = wait_for(lambda: (r := head.get("/livez", timeout=2))[0] and r, 30, "/livez", head)
    assert status == 200, live

    # Ready without any Serve app: the dashboard answers and there is no proxy yet.
    body = wait_for(lambda: ready(head), STARTUP_TIMEOUT_S, "/readyz 200", head)
    startup_s = time.monotonic() - head.started
    assert body["proxy"] == "absent" and body["dashboard_up"] is True, body
    print(f"\nhead: /readyz 200 after {startup_s:.1f}s")

    config = {
        "http_options": {"host": "0.0.0.0", "port": head.http_port},
        "applications": [{"name": "hello", "route_prefix": "/hello", "import_path": "serveplane.examples.hello:app",
                          "args": {"greeting": "hi"}}],
    }
    status, answer = http("PUT", dashboard + "/api/serve/applications/", config, timeout=60)
    assert status == 200, answer
    proxy = f"http://127.0.0.1:{head.http_port}"
    wait_for(lambda: http("GET", proxy + "/hello/")[0] == 200, DEPLOY_TIMEOUT_S, "hello to answer", head)
    assert http("GET", proxy + "/hello/")[1]["greeting"] == "hi"

    # Ready, now because the proxy is healthy; and it stays so.
    for _ in range(3):
        status, body = head.get("/readyz")
        assert status == 200 and body["proxy"] == "healthy" and body["reason"] == "serve proxy healthy", body
    assert head.get("/livez")[0] == 200

    status, text = head.get("/metrics")
    assert status == 200
    lines = text.splitlines()
    for name in ['serveplane_agent_probe_total{probe="readyz",result="ok"}', "serveplane_agent_proxy_healthy 1.0",
                 "serveplane_agent_raylet_up 1.0", "serveplane_agent_gcs_up 1.0", "serveplane_agent_draining 0.0",
                 "serveplane_agent_dashboard_up 1.0", "serveplane_agent_process_resident_memory_bytes"]:
        assert any(line.startswith(name) for line in lines), name
    print(f"head: agent (entrypoint) RSS {rss_kib(head.proc.pid) / 1024:.1f} MiB")

    # Drain: a client holding a keep-alive connection to the proxy keeps /drain waiting; closing it ends the wait.
    client = socket.create_connection(("127.0.0.1", head.http_port))
    client.sendall(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    drained: dict[str, Any] = {}
    drain = threading.Thread(
        target=lambda: drained.update(zip(("status", "body"), head.get("/drain", timeout=60), strict=True))
    )
    drain_started = time.monotonic()
    drain.start()
    wait_for(lambda: head.get("/readyz")[0] == 503, 10, "/readyz 503 while draining", head)
    status, body = head.get("/readyz")
    assert body["draining"] is True and body["reason"].startswith("draining"), body
    assert head.get("/livez")[0] == 200, "liveness must not fail while draining"
    time.sleep(1.5)  # longer than the drain's 1 s minimum: only the open connection keeps it waiting
    assert drain.is_alive(), f"/drain returned with a client still connected: {drained}"
    client.close()
    drain.join(timeout=15)
    assert not drain.is_alive()
    assert drained["status"] == 200 and drained["body"]["ended"] == "idle", drained
    print(f"head: /drain returned {time.monotonic() - drain_started:.1f}s after it was called ({drained['body']})")

    took = stop_and_check_clean(head)
    print(f"head: stopped cleanly {took:.1f}s after SIGTERM")


@pytest.mark.parametrize(("victim", "signum"), [("raylet", signal.SIGTERM), ("gcs_server", signal.SIGKILL)])
def test_exits_nonzero_when_ray_dies(nodes: Callable[..., Node], victim: str, signum: signal.Signals) -> None:
    # SIGTERM to the raylet is the case `ray start --block` itself ignores (it counts SIGTERM exits as graceful).
    head, _ = start_head(nodes, f"crash-{victim}")
    wait_for(lambda: ready(head), STARTUP_TIMEOUT_S, "/readyz 200", head)
    # The pid the entrypoint watches, as it logged it: a process named like the victim may also be a short-lived
    # child the raylet forked for a worker.
    announced = re.search(r"ray running: raylet pid (\d+), gcs pid (\d+)", head.log_path.read_text())
    assert announced, head.log_tail()
    target = int(announced.group(1 if victim == "raylet" else 2))
    found = procfs.stat(target)
    assert found is not None and found.comm == victim, head.log_tail()
    os.kill(target, signum)
    # On a busy machine the raylet's graceful shutdown can outlast any fixed wait; what is under test is the
    # entrypoint noticing a dead raylet, so one that outlives its SIGTERM for long gets SIGKILL (noted).
    deadline = time.monotonic() + EXIT_TIMEOUT_S / 2
    while procfs.is_alive(target) and time.monotonic() < deadline:
        time.sleep(0.25)
    if procfs.is_alive(target):
        print(f"{victim} (pid {target}) outlived {signum.name} for {EXIT_TIMEOUT_S / 2:.0f}s: SIGKILL")
        os.kill(target, signal.SIGKILL)
    try:
        code = head.proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        state = procfs.stat(target)
        pytest.fail(f"entrypoint still running after {victim} (pid {target}, now {state}) died:\n{head.log_tail()}")
    assert code == 1, head.log_tail()
    assert f"{victim} (pid {target}) died" in head.log_path.read_text() or "ray start exited" in head.log_tail()
    assert head.ray_processes() == [], head.log_tail()


def test_ray_follows_a_killed_entrypoint(nodes: Callable[..., Node]) -> None:
    # SIGKILL leaves the entrypoint no chance to stop Ray: `ray start` must get SIGTERM from the kernel and clean up.
    head, _ = start_head(nodes, "killed")
    wait_for(lambda: ready(head), STARTUP_TIMEOUT_S, "/readyz 200", head)
    assert head.ray_processes()
    head.proc.kill()
    head.proc.wait()
    wait_for(lambda: head.ray_processes() == [], 60, "Ray processes to go after the entrypoint was killed")


def test_worker_waits_for_head_by_dns_name_and_is_ready_without_replicas(nodes: Callable[..., Node]) -> None:
    gcs = free_ports(1)[0]
    # The worker comes first, as it may in Kubernetes; "localhost" stands for the head Service's DNS name.
    worker = nodes("worker", [f"--address=localhost:{gcs}", "--ray-param=num-cpus=1"], "worker",
                   {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "10"})
    wait_for(lambda: head_missing(worker), 30, "worker waiting for the head", worker)
    assert worker.get("/livez")[0] == 200

    head, dashboard = start_head(nodes, "head2", gcs=gcs)
    wait_for(lambda: ready(head), STARTUP_TIMEOUT_S, "head /readyz 200", head)
    body = wait_for(lambda: ready(worker), STARTUP_TIMEOUT_S, "worker /readyz 200", worker)
    # Serve is not even running: no proxy on the worker, which is Ready all the same.
    assert body["proxy"] == "absent" and body["role"] == "worker", body
    # Both raylets joined one cluster (Ray's state API lists its nodes).
    wait_for(lambda: alive_nodes(dashboard) == 2, 60, "two alive Ray nodes", worker)

    took = stop_and_check_clean(worker)
    print(f"\nworker: stopped cleanly {took:.1f}s after SIGTERM (Ray drains the node first)")
    # The SIGTERM reached `ray start`, which drained the node through the GCS before stopping its processes.
    log = worker.log_path.read_text(errors="replace")
    assert "received SIGTERM. Draining for up to 10" in log and "finished draining" in log, worker.log_tail()
    stop_and_check_clean(head)


def head_missing(worker: Node) -> bool:
    status, body = worker.get("/readyz", timeout=2)
    return status == 503 and isinstance(body, dict) and body.get("phase") == "waiting_for_head"


def alive_nodes(dashboard: str) -> int:
    status, reply = http("GET", dashboard + "/api/v0/nodes")
    if status != 200 or not isinstance(reply, dict):
        return 0
    return sum(1 for node in reply["data"]["result"]["result"] if node["state"] == "ALIVE")


@pytest.fixture
def redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer("127.0.0.1", free_ports(1)[0], workdir / "redis").start()
    yield server
    server.stop()


def node_ids(dashboard: str) -> set[str]:
    status, reply = http("GET", dashboard + "/api/v0/nodes")
    if status != 200 or not isinstance(reply, dict):
        return set()
    return {node["node_id"] for node in reply["data"]["result"]["result"] if node["state"] == "ALIVE"}


def test_a_new_head_resumes_the_cluster_from_redis_and_the_worker_rides_it_out(
    nodes: Callable[..., Node], redis: RedisServer, workdir: Path
) -> None:
    """GCS fault tolerance as the operator wires it: the head's env names Redis and the password variable, the
    worker waits long for a lost GCS; a second head on the same address resumes the same Ray cluster, and the
    clean-up command removes exactly that cluster's keys."""
    gcs = free_ports(1)[0]
    ft = {"RAY_REDIS_ADDRESS": redis.address, "RAY_external_storage_namespace": "cluster-a",
          cli.REDIS_PASSWORD_ENV: redis.password}
    first, dashboard = start_head(nodes, "fth1", gcs=gcs, **ft)
    wait_for(lambda: ready(first), STARTUP_TIMEOUT_S, "head /readyz 200", first)
    worker = nodes("worker", [f"--address=localhost:{gcs}", "--ray-param=num-cpus=1"], "ftw",
                   {"RAY_gcs_rpc_server_reconnect_timeout_s": "600"})
    wait_for(lambda: ready(worker), STARTUP_TIMEOUT_S, "worker /readyz 200", worker)
    wait_for(lambda: len(node_ids(dashboard)) == 2, 60, "two alive nodes", worker)
    ids = node_ids(dashboard)
    assert redis.keys("RAYcluster-a@*"), "the head keeps the GCS's tables in Redis"
    assert redis.password not in first.log_path.read_text(errors="replace"), "the password is never logged"

    first.kill_everything()  # the head is lost, as when its pod goes
    second, dashboard = start_head(nodes, "fth2", gcs=gcs, **ft)
    wait_for(lambda: ready(second), STARTUP_TIMEOUT_S, "the new head /readyz 200", second)
    # The worker's raylet (same node id, same process) is a node of the resumed cluster: it never restarted.
    # The old head's node is dead and the new head is a new node, so the one id of before that is alive again
    # is the worker's.
    wait_for(lambda: len(node_ids(dashboard) & ids) == 1 and len(node_ids(dashboard)) == 2, 120,
             "the worker alive in the resumed cluster", worker)
    assert worker.proc.poll() is None, worker.log_tail()
    stop_and_check_clean(worker)
    stop_and_check_clean(second)

    redis.cli("SET", "RAYcluster-b@KV", "kept")
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **ft}
    done = subprocess.run([sys.executable, "-m", "serveplane.runtime", "redis-cleanup"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert redis.keys("RAYcluster-a@*") == []
    assert redis.keys("RAYcluster-b@*") == ["RAYcluster-b@KV"], "another cluster's state is left alone"
