"""`python -m serveplane.runtime head|worker ...`: one Ray node plus its node agent, for one pod; and
`python -m serveplane.runtime drain --agent-port=P`, the preStop hook's drain request to that agent.

Order of life:
  1. parse the command line (args.py), pick a short per-pod Ray temp dir;
  2. serve the agent (agent.py) at once, so probes get answers while Ray starts;
  3. worker: wait until the head's GCS resolves and answers (network.py);
  4. `ray start --block` in a new session (supervisor.py), then watch raylet and GCS;
  5. on SIGTERM/SIGINT: stop Ray in `ray stop`'s order, scoped to our session, SIGKILL leftovers, exit 0;
     if Ray dies on its own: clean up the same way and exit 1 so the kubelet restarts the container.
The preStop hook (`... drain`, over loopback) drains before the kubelet's SIGTERM, so step 5 does not drain again;
a SIGTERM that no drain came before drains first.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from types import FrameType

from . import args as cli
from . import network
from .agent import AgentServer, AgentSettings, create_app
from .drain import Drainer, DrainSettings
from .metrics import AgentMetrics
from .reaper import Reaper, become_subreaper
from .state import NodeState
from .supervisor import RaySupervisor

log = logging.getLogger("serveplane.runtime")

_POLL_S = 0.5
# Ray already died: what is left only needs a short grace before SIGKILL.
_CRASH_STOP_GRACE_S = 5.0
EXIT_OK, EXIT_RAY_DIED, EXIT_USAGE = 0, 1, 2


def ray_env(environ: Mapping[str, str], *, temp: str, ray_drain_s: float) -> dict[str, str]:
    env = dict(environ)
    # The Redis password goes to `ray start` as its flag (args.ray_start_command), not into the environment every
    # Ray process, users' replicas included, inherits.
    env.pop(cli.REDIS_PASSWORD_ENV, None)
    # Ray's dashboard leaves multiprocessing dirs (pymp-*) in TMPDIR when killed: keep them under our temp dir,
    # which a clean stop removes.
    env["TMPDIR"] = temp
    # A RAY_ADDRESS inherited from the image would point `ray start` elsewhere.
    env.pop("RAY_ADDRESS", None)
    env[cli.RAY_DRAIN_ENV] = f"{ray_drain_s:g}"
    # Without RAY_AUTH_MODE, Ray 2.60 turns token authentication on whenever ~/.ray/auth_token exists (an image
    # may ship one): the operator, which then has no token, would be refused. The mode is the operator's choice.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


def auth_token(environ: Mapping[str, str]) -> str | None:
    """Ray's auth token when token authentication is on (the operator sets both from the cluster's Secret)."""
    if environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    return environ.get("RAY_AUTH_TOKEN", "").strip() or None


class Runtime:
    def __init__(self, args: cli.RuntimeArgs, temp: str, environ: Mapping[str, str]) -> None:
        self.args = args
        self.temp = temp
        self.environ = environ
        self.node_ip = network.node_ip(environ)
        self.stop = threading.Event()
        self.state = NodeState(is_head=args.is_head, startup_grace_s=args.startup_grace_s)
        self.reaper = Reaper()
        self.supervisor = RaySupervisor(state=self.state, reaper=self.reaper, temp_dir=temp)
        self.ray_drain_s = cli.ray_drain_timeout(environ, is_head=args.is_head)
        drainer = Drainer(
            settings=DrainSettings(
                http_port=args.http_port, timeout_s=args.drain_timeout_s, min_wait_s=args.drain_min_wait_s
            ),
            state=self.state,
        )
        app = create_app(
            settings=AgentSettings(
                http_port=args.http_port, dashboard_port=args.dashboard_port, node_ip=self.node_ip,
                auth_token=auth_token(environ),
            ),
            state=self.state,
            drainer=drainer,
            metrics=AgentMetrics(role=args.role, node_ip=self.node_ip, cluster=environ.get("SERVEPLANE_CLUSTER", "")),
        )
        self.agent = AgentServer(app, args.agent_port)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stop.set()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        if not become_subreaper():
            log.warning("could not become a child subreaper; orphaned Ray processes go to init")
        if not self.agent.start():
            log.error("node agent did not start on port %d", self.args.agent_port)
            return EXIT_USAGE
        log.info("node agent on :%d; %s node, ip %s, temp dir %s", self.args.agent_port, self.args.role,
                 self.node_ip, self.temp)
        try:
            return self._run_ray()
        finally:
            self.agent.stop()

    def drain_first(self) -> None:
        """A stop no preStop drain came before (a hook that failed or was refused, an older pod's hook, a plain
        SIGTERM) drains here first, through the agent as the hook does, within the same budget."""
        if self.state.info().draining_since is not None:
            return
        log.info("stopping without a preStop drain: draining first")
        status, text = request_drain(self.args.agent_port, auth_token(self.environ), self.args.drain_timeout_s + 5)
        if status != 200:
            log.warning("drain before stopping failed: %s %s", status or "no answer:", text.strip()[:500])

    def _run_ray(self) -> int:
        gcs_address = None
        if self.args.address:
            host, port = self.args.address
            if network.wait_for_gcs(host, port, self.stop) is None:
                return EXIT_OK  # told to stop before the head appeared
            # The head Service's name, not the address it resolved to: a new head pod (GCS fault tolerance) has a
            # new IP, and Ray's GCS client re-resolves the name when it reconnects.
            gcs_address = network.format_address(host, port)
        os.makedirs(self.temp, exist_ok=True)
        command = cli.ray_start_command(
            self.args, python=sys.executable, node_ip=self.node_ip, temp=self.temp, gcs_address=gcs_address,
            redis_password=self.environ.get(cli.REDIS_PASSWORD_ENV) if self.args.is_head else None,
        )
        self.supervisor.start(command, ray_env(self.environ, temp=self.temp, ray_drain_s=self.ray_drain_s))
        died = None
        while not self.stop.wait(_POLL_S):
            self.reaper.reap()
            died = self.supervisor.poll()
            if died:
                break
        if died:
            log.error("Ray died (%s): cleaning up, then exiting %d so the container restarts", died, EXIT_RAY_DIED)
            grace = _CRASH_STOP_GRACE_S
        else:
            self.drain_first()
            grace = self.ray_drain_s + self.args.stop_grace_s
            log.info("forwarding SIGTERM to Ray: node drain up to %.0fs, %.0fs in all before SIGKILL",
                     self.ray_drain_s, grace)
        survivors = self.supervisor.stop(grace)
        if survivors:
            log.error("Ray processes survived SIGKILL: %s", survivors)
            return EXIT_RAY_DIED
        if died:
            return EXIT_RAY_DIED  # keep the temp dir: its logs tell why
        if not self.environ.get("SERVEPLANE_RAY_TEMP_DIR"):
            shutil.rmtree(self.temp, ignore_errors=True)
        log.info("Ray stopped; no process left")
        return EXIT_OK


def request_drain(port: int, token: str | None, timeout_s: float) -> tuple[int, str]:
    """Ask the agent on this pod's loopback to drain; (HTTP status or 0 when it gave no answer, its text)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/drain", method="POST", data=b"")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read(4096).decode(errors="replace")
    except (OSError, TimeoutError) as error:
        return 0, str(error) or type(error).__name__


def drain_main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The preStop hook: drain this pod through its agent, from the pod itself (a loopback peer, which the agent
    trusts without a token; the token goes too when there is one). Exit 0 once drained, 1 otherwise: the kubelet
    then goes on with the SIGTERM either way."""
    try:
        args = cli.parse_drain(argv)
    except cli.ArgsError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    status, text = request_drain(args.agent_port, auth_token(environ), args.timeout_s)
    if status != 200:
        log.error("drain failed: %s %s", status or "no answer:", text.strip()[:500])
        return EXIT_RAY_DIED
    try:
        log.info("drained: %s", json.loads(text))
    except ValueError:
        log.info("drained: %s", text.strip()[:500])
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [cli.DRAIN]:
        return drain_main(argv[1:], os.environ)
    try:
        args = cli.parse(argv, os.environ)
        runtime = Runtime(args, cli.temp_dir(os.environ, os.getpid()), os.environ)
    except cli.ArgsError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    return runtime.run()
