"""Run a real Kubernetes control plane on loopback: start, attach to, stop.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler each run as
their own process from the one binary that build.py makes. Nodes are plain API
objects (see nodes.py); there is no kubelet, so pods get scheduled but never run.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from . import components, kubeconfig, nodes, pki, processes
from .build import BINARY_NAME, ensure_binary
from .components import COMPONENTS, DEFAULT_SERVICE_CIDR, Layout
from .rest import ApiClient, probe_insecure


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class ControlPlane:
    """A local control plane; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        node_names: Sequence[str] = nodes.DEFAULT_NODE_NAMES,
        binary: Path | None = None,
        detach: bool = False,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
        start_timeout: float = 180.0,
        node_address: str | None = None,
    ) -> None:
        """``node_address``: for a real node (node.py), the machine's address that its pods and kubelet reach
        the API server on; then ``node_names`` should be empty, as the kubelet registers its own Node."""
        # A state dir we made ourselves is ours to delete on stop().
        self._owns_state_dir = state_dir is None
        self.layout = Layout(Path(state_dir or tempfile.mkdtemp(prefix="serveplane-cp-")).resolve())
        self.node_names = tuple(node_names)
        self.binary = binary
        self.detach = detach
        self.service_cidr = service_cidr
        self.node_address = node_address
        self.start_timeout = start_timeout
        self.pids: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._api: ApiClient | None = None

    # -- what callers use -------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    @property
    def kubeconfig(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self.layout.admin_kubeconfig

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines, every request at level Metadata); read it with audit.read()."""
        return self.layout.audit_log

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            ca = self.layout.pki_dir / "ca.crt"
            self._api = ApiClient(self.server_url, str(ca), pki.load(self.layout.pki_dir).admin)
        return self._api

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        as_kubeconfig: Path | str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run the bundled kubectl (as admin unless ``as_kubeconfig``); output is captured text."""
        assert self.binary is not None, "not started"
        argv = [
            str(self.binary),
            "kubectl",
            f"--kubeconfig={as_kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.layout.kubectl_cache}",
            *args,
        ]
        result = subprocess.run(argv, input=input, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def create_service_account_kubeconfig(
        self, namespace: str, name: str, path: Path | str, *, duration: str = "24h"
    ) -> Path:
        """A kubeconfig that acts as ServiceAccount ``namespace/name`` (which must exist).

        The token comes from the TokenRequest API, exactly what a pod would get.
        """
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()
        return kubeconfig.write(
            Path(path),
            server=self.server_url,
            ca_cert=self.layout.pki_dir / "ca.crt",
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token,
            namespace=namespace,
        )

    def ensure_nodes_ready(self) -> None:
        nodes.ensure_ready(self.api, self.node_names)

    def healthy(self) -> bool:
        """Every component process is ours and alive, and the API server is ready."""
        for component in COMPONENTS:
            pid = self.pids.get(component)
            if not pid or not processes.is_alive(pid):
                return False
            if not processes.runs_component(pid, BINARY_NAME, component):
                return False
        return self.api.ok("/readyz")

    # -- lifecycle --------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self.pids:
            raise RuntimeError(f"control plane in {self.state_dir} already started")
        self.binary = Path(self.binary or ensure_binary())
        started = time.monotonic()
        layout = self.layout
        layout.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.detach:
            atexit.register(self.stop)
        try:
            self._start(layout)
        except BaseException:
            self.stop()
            raise
        self._log(f"control plane ready at {self.server_url} in {time.monotonic() - started:.1f}s")
        return self

    def _start(self, layout: Layout) -> None:
        address = ipaddress.IPv4Address(self.node_address) if self.node_address else None
        keys = pki.generate(layout.pki_dir, self.service_cidr, address)
        self.ports = _listen_ports(components.PORT_NAMES)
        self._write_kubeconfigs(keys)
        layout.audit_policy.write_text(components.AUDIT_POLICY)

        for component in ("etcd", "kube-apiserver"):
            self._spawn(component, self._args(component))
            self._wait(component, self._ready_check(component))

        for component in ("kube-controller-manager", "kube-scheduler"):
            self._spawn(component, self._args(component))
        nodes.register(self.api, self.node_names)

        for component in ("kube-controller-manager", "kube-scheduler"):
            self._wait(component, self._ready_check(component))
        # Pods cannot be created in a namespace until the controller-manager has
        # made its `default` ServiceAccount; wait, so tests need not.
        self._wait("kube-controller-manager", lambda: self.api.ok("/api/v1/namespaces/default/serviceaccounts/default"))
        self._wait(
            "kube-controller-manager", lambda: self.api.ok("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
        )

    def _args(self, component: str) -> list[str]:
        """The command line of ``component`` (after the binary); the same on every start of this plane."""
        layout, ports = self.layout, self.ports
        if component == "etcd":
            return components.etcd_args(layout, ports)
        if component == "kube-scheduler":
            return components.scheduler_args(layout, ports)
        keys = pki.load(layout.pki_dir)
        if component == "kube-apiserver":
            return components.apiserver_args(layout, ports, keys, self.service_cidr, self.node_address)
        if component == "kube-controller-manager":
            return components.controller_manager_args(
                layout, ports, keys, self.service_cidr, real_node=self.node_address is not None
            )
        raise ValueError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")

    def _ready_check(self, component: str) -> Callable[[], bool]:
        if component == "etcd":
            url = f"http://127.0.0.1:{self.ports['etcd-client']}/health"
            return lambda: http_ok(url)
        if component == "kube-apiserver":
            return lambda: self.api.ok("/readyz")
        url = f"https://127.0.0.1:{self.ports[component]}/healthz"
        return lambda: probe_insecure(url)

    def restart(self, component: str) -> None:
        """Stop ``component`` and start it again with the same flags, ports and data; wait until it is ready.

        Meant for etcd and kube-apiserver (their clients reconnect), but any
        of COMPONENTS works. After etcd, also waits for the API server's
        /readyz, which fails while etcd is away. The state file gets the new pid.
        """
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")
        if component not in self.pids:
            raise RuntimeError(f"{component} of the control plane in {self.state_dir} is not running")
        started = time.monotonic()
        args = self._args(component)
        if self._is_ours(component):
            processes.stop_groups([self.pids[component]])
        proc = self._procs.pop(component, None)
        if proc is not None:
            proc.wait(timeout=10)
        self._spawn(component, args)
        self._wait(component, self._ready_check(component))
        if component == "etcd" and "kube-apiserver" in self.pids:
            self._wait("kube-apiserver", self._ready_check("kube-apiserver"))
        self._log(f"{component} restarted in {time.monotonic() - started:.1f}s")

    def _write_kubeconfigs(self, keys: pki.Pki) -> None:
        server = f"https://127.0.0.1:{self.ports['kube-apiserver']}"
        kubeconfig.write(
            self.kubeconfig,
            server=server,
            ca_cert=keys.ca.cert,
            user="admin",
            client_cert=keys.admin.cert,
            client_key=keys.admin.key,
        )
        for component, pair in (
            ("kube-controller-manager", keys.controller_manager),
            ("kube-scheduler", keys.scheduler),
        ):
            kubeconfig.write(
                self.layout.component_kubeconfig(component),
                server=server,
                ca_cert=keys.ca.cert,
                user=f"system:{component}",
                client_cert=pair.cert,
                client_key=pair.key,
            )

    def _spawn(self, component: str, args: list[str]) -> None:
        proc = processes.spawn([str(self.binary), *args], self.layout.log(component), detach=self.detach)
        self._procs[component] = proc
        self.pids[component] = proc.pid
        # Save after every spawn, so `down` can clean up even a half-started plane.
        self._save_state()

    def _wait(self, component: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if ready():
                return
            pid = self.pids[component]
            if not processes.is_alive(pid):
                raise RuntimeError(
                    f"{component} exited during startup; last log lines:\n{processes.tail(self.layout.log(component))}"
                )
            time.sleep(0.2)
        raise TimeoutError(
            f"{component} not ready after {self.start_timeout:.0f}s; last log lines:\n"
            f"{processes.tail(self.layout.log(component))}"
        )

    def stop(self, *, remove_state: bool | None = None) -> None:
        """Stop every component (SIGTERM, then SIGKILL) and reap them.

        ``remove_state`` defaults to True for a temp state dir made by us.
        """
        atexit.unregister(self.stop)
        # Reverse start order: clients first, etcd last, so none of them spends
        # its grace period retrying a server that is already gone.
        order = (("kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",))
        for group in order:
            pgids = [self.pids[c] for c in group if c in self.pids and self._is_ours(c)]
            processes.stop_groups(pgids)
            for c in group:
                proc = self._procs.pop(c, None)
                if proc is not None:
                    proc.wait(timeout=10)
        self.pids.clear()
        self.layout.state_file.unlink(missing_ok=True)
        if self._owns_state_dir if remove_state is None else remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _is_ours(self, component: str) -> bool:
        # Our own children are ours by construction; a pid read from a state
        # file must still be running our binary before we signal it.
        pid = self.pids[component]
        return component in self._procs or processes.runs_component(pid, BINARY_NAME, component)

    # -- state file -------------------------------------------------------

    def _save_state(self) -> None:
        state = {
            "binary": str(self.binary),
            "pids": self.pids,
            "ports": self.ports,
            "node_names": list(self.node_names),
            "service_cidr": self.service_cidr,
            "node_address": self.node_address,
            "kubeconfig": str(self.kubeconfig),
        }
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.layout.state_file)

    @classmethod
    def attach(cls, state_dir: Path | str) -> ControlPlane:
        """The control plane that an earlier start() (maybe another process) left in ``state_dir``.

        Raises FileNotFoundError when there is none; check ``healthy()`` before use.
        """
        layout = Layout(Path(state_dir).resolve())
        state = json.loads(layout.state_file.read_text())
        cp = cls(
            layout.state_dir,
            node_names=state["node_names"],
            binary=Path(state["binary"]),
            detach=True,
            service_cidr=state["service_cidr"],
            node_address=state.get("node_address"),
        )
        cp.pids = {k: int(v) for k, v in state["pids"].items()}
        cp.ports = {k: int(v) for k, v in state["ports"].items()}
        return cp

    @staticmethod
    def _log(msg: str) -> None:
        print(f"[serveplane.localcluster] {msg}", file=sys.stderr, flush=True)


def _listen_ports(names: Sequence[str]) -> dict[str, int]:
    """Distinct free ports on 127.0.0.1 for ``names``, between 20000 and the kernel's ephemeral range if there is room.

    A port from inside that range (what binding port 0 gives) can be taken as
    the source port of any outgoing connection on the machine before its
    component binds it, or while restart() has it unbound.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(50 if low > 21000 else 0):
            port = random.randrange(20000, low)
            if port not in ports.values() and _bindable(port):
                break
        else:
            port = processes.free_port()
        ports[name] = port
    return ports


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_ok(url: str) -> bool:
    """An HTTP GET of `url` answers 200 (a health endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
