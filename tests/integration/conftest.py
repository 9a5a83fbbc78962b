"""Fixtures for tests against a real Ray head: `ray_head` starts one per session and always tears it down.

Teardown kills exactly the processes of our own `ray start` session (new session id, SIGKILL, like
`ray stop --force`) instead of running `ray stop --force`, which would also kill any other Ray cluster that someone
else runs on the same machine.
"""

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import OperatorProcess, install
from serveplane.localcluster.testkit import wait_for
from serveplane.operator.api.kinds import CLUSTERS

_STARTUP_TIMEOUT_S = 180.0
_TEARDOWN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RayHead:
    """Where the test Ray head answers. Put `serve_port` in the Serve config's http_options.port."""

    dashboard_url: str
    serve_port: int
    temp_dir: Path
    startup_s: float
    auth_token: str | None = None
    """Set when the head runs Ray's token authentication (RAY_AUTH_MODE=token): the dashboard wants it."""
    grpc_port: int = 0
    """A free port for Serve's gRPC proxy (grpc_options.port), if a test starts one."""
    gcs_port: int = 0

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are picked so the ports are distinct.
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _ray_cli() -> str:
    beside_python = Path(sys.executable).parent / "ray"
    found = str(beside_python) if beside_python.exists() else shutil.which("ray")
    if not found:
        pytest.skip("the ray CLI is not installed (pip install 'serveplane[runtime]')")
    return found


def _session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is `sid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after its closing one.
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            members.append(int(entry.name))
    return members


def _kill_session(proc: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL every process of the `ray start` session; return survivors (should be none)."""
    deadline = time.monotonic() + _TEARDOWN_TIMEOUT_S
    members = _session_members(proc.pid)
    # Loop because a dying raylet may still be forking workers while we kill.
    while members and time.monotonic() < deadline:
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        time.sleep(0.2)
        members = _session_members(proc.pid)
    return members


def _die_with_parent() -> None:
    """Runs in the `ray start` child. If pytest itself is killed (CI timeout), the kernel sends `ray start` a
    SIGTERM, and Ray shuts its node down (after a drain of up to 30 s). SIGKILL would be faster but leaves the
    dashboard and runtime-env agents orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _dashboard_up(url: str, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url + "/api/ray/version", headers=headers)
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200 and "ray_version" in json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    yield from _ray_head(auth_token=None)


@pytest.fixture(scope="session")
def ray_head_with_token() -> Iterator[RayHead]:
    """A second head, under Ray's token authentication (RAY_AUTH_MODE=token, the token in RAY_AUTH_TOKEN), as the
    operator runs every cluster by default. The only other head of the suite: keep its users few."""
    # Ray's own token format (`ray get-auth-token --generate`): 32 random bytes, hex.
    yield from _ray_head(auth_token=secrets.token_hex(32))


def _ray_head(auth_token: str | None) -> Iterator[RayHead]:
    ray = _ray_cli()
    # Short on purpose: Ray puts AF_UNIX sockets under it, and those paths are limited to ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="spray-", dir="/tmp"))
    gcs_port, dashboard_port, serve_port, client_port, agent_port, grpc_port = _free_ports(6)
    command = [
        ray, "start", "--head", "--block",
        "--temp-dir", str(temp_dir),
        "--port", str(gcs_port),
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        # These two default to fixed ports (10001, 52365): move them so parallel Ray heads don't collide.
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--num-cpus", "4",
        "--object-store-memory", str(200 * 1024 * 1024),
        "--include-dashboard", "true",
        "--disable-usage-stats",
    ]
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS" and not key.startswith("RAY_AUTH_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    if auth_token is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token)
    else:
        env["RAY_AUTH_MODE"] = "disabled"  # explicit: a token file in ~/.ray would otherwise switch it on
    # Ray's dashboard leaves multiprocessing dirs (pymp-*) behind when killed: keep them inside temp_dir.
    env["TMPDIR"] = str(temp_dir)
    log_path = temp_dir / "ray-start.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # --block keeps `ray start` as the parent; a new session lets teardown find every Ray process by session
        # id (workers get their own process groups but stay in the session). cwd keeps the repo's `operator/`
        # folder from shadowing the stdlib module in Ray's workers.
        proc = subprocess.Popen(
            command, cwd=temp_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    try:
        while not _dashboard_up(dashboard_url, auth_token):
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() - started > _STARTUP_TIMEOUT_S:
                pytest.fail(f"Ray dashboard not up after {_STARTUP_TIMEOUT_S}s:\n{_log_tail(log_path)}")
            time.sleep(0.25)
        yield RayHead(
            dashboard_url=dashboard_url,
            serve_port=serve_port,
            temp_dir=temp_dir,
            startup_s=time.monotonic() - started,
            auth_token=auth_token,
            grpc_port=grpc_port,
            gcs_port=gcs_port,
        )
    finally:
        survivors = _kill_session(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        if survivors:
            pytest.fail(f"Ray processes survived teardown: {survivors}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever uses a Ray head is a `ray` test, so `-m "not ray"` skips it without each test carrying the mark.
    for item in items:
        if {"ray_head", "ray_head_with_token"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


@pytest.fixture
def namespace(controlplane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, removed afterwards, pods and all."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[5:45].strip("-")
    controlplane.kubectl("create", "namespace", name)
    yield name
    # No kubelet confirms pod deletions here: finish them, so the namespace really goes.
    controlplane.kubectl("delete", "scl", "--all", "-n", name, "--wait=false")
    controlplane.kubectl("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force")
    controlplane.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def operator(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator as its own ServiceAccount under the chart's RBAC, one per test module; its log must stay clean."""
    install(controlplane)
    with OperatorProcess(controlplane, tmp_path_factory.mktemp("operator")) as proc:
        yield proc
    proc.assert_clean()


def operator_metrics(proc: OperatorProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The operator's /metrics: each sample name's (labels, value) pairs."""
    with urllib.request.urlopen(proc.metrics_url, timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _rounds_and_clusters(proc: OperatorProcess) -> tuple[float, float]:
    """Rounds of cluster loops that had a ServeCluster to reconcile (result busy or steady: not the last round of
    a loop whose cluster is gone, not an error), and the ServeClusters in the operator's store."""
    samples = operator_metrics(proc)
    rounds = sum(value for labels, value in samples.get("serveplane_reconcile_total", [])
                 if labels.get("result") in ("busy", "steady"))
    clusters = sum(value for labels, value in samples.get("serveplane_resources", []) if labels.get("kind") == CLUSTERS)
    return rounds, clusters


def wait_for_rounds(proc: OperatorProcess, rounds: int = 3, *, clusters: int = 1, timeout: float = 90.0) -> None:
    """Return once the operator has run `rounds` whole reconcile rounds of the test's ServeClusters that all began
    after this call: for a test that asserts the operator did NOT act, the proof that it had the chance.

    The counter (serveplane_reconcile_total) has no cluster label, so the count is made only while the operator's
    store holds just the test's `clusters` ServeClusters (earlier tests' clusters gone): then every counted round
    is one of theirs. A round counts when it ends, after its actions (the cluster's status, written last); the
    round under way at the start may have begun before the test's change, hence one more.
    """
    def alone() -> tuple[float] | None:  # a tuple: truthy for wait_for even when no round was counted yet
        counted, held = _rounds_and_clusters(proc)
        return (counted,) if held == clusters else None

    (base,) = wait_for(f"the operator's store to hold just the test's {clusters} ServeCluster(s)", alone)

    def advanced() -> bool:
        counted, held = _rounds_and_clusters(proc)
        assert held == clusters, f"the operator's store holds {held} ServeClusters, not {clusters}"
        return counted >= base + rounds + 1

    wait_for(f"{rounds} reconcile rounds of the operator", advanced, timeout=timeout, interval=0.2)


@pytest.fixture
def operator_rounds(operator: OperatorProcess) -> Callable[..., None]:
    """`operator_rounds(n)`: wait until the module's operator has had n whole rounds of the test's cluster (see
    `wait_for_rounds`), before asserting that it left something alone."""
    def wait(rounds: int = 3, *, clusters: int = 1, timeout: float = 90.0) -> None:
        wait_for_rounds(operator, rounds, clusters=clusters, timeout=timeout)
    return wait
