"""Run a real Kubernetes control plane on loopback: start, attach to, stop.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler each run as
their own process from the one binary that build.py makes. Nodes are plain API
objects (see nodes.py); there is no kubelet, so pods get scheduled but never run.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
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
    ) -> None:
        # A state dir we made ourselves is ours to delete on stop().
        self._owns_state_dir = state_dir is None
        self.layout = Layout(Path(state_dir or tempfile.mkdtemp(prefix="serveplane-cp-")).resolve())
        self.node_names = tuple(node_names)
        self.binary = binary
        self.detach = detach
        self.service_cidr = service_cidr
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
            str(self.binary), "kubectl",
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
        keys = pki.generate(layout.pki_dir, self.service_cidr)
        self.ports = {name: processes.free_port() for name in components.PORT_NAMES}
        self._write_kubeconfigs(keys)
        layout.audit_policy.write_text(components.AUDIT_POLICY)

        self._spawn("etcd", components.etcd_args(layout, self.ports))
        etcd_health = f"http://127.0.0.1:{self.ports['etcd-client']}/health"
        self._wait("etcd", lambda: _http_ok(etcd_health))

        self._spawn("kube-apiserver", components.apiserver_args(layout, self.ports, keys, self.service_cidr))
        self._wait("kube-apiserver", lambda: self.api.ok("/readyz"))

        self._spawn(
            "kube-controller-manager",
            components.controller_manager_args(layout, self.ports, keys, self.service_cidr),
        )
        self._spawn("kube-scheduler", components.scheduler_args(layout, self.ports))
        nodes.register(self.api, self.node_names)

        for component in ("kube-controller-manager", "kube-scheduler"):
            url = f"https://127.0.0.1:{self.ports[component]}/healthz"
            self._wait(component, lambda url=url: probe_insecure(url))
        # Pods cannot be created in a namespace until the controller-manager has
        # made its `default` ServiceAccount; wait, so tests need not.
        self._wait("kube-controller-manager", lambda: self.api.ok("/api/v1/namespaces/default/serviceaccounts/default"))
        self._wait("kube-controller-manager", lambda: self.api.ok("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"))

    def _write_kubeconfigs(self, keys: pki.Pki) -> None:
        server = f"https://127.0.0.1:{self.ports['kube-apiserver']}"
        kubeconfig.write(
            self.kubeconfig, server=server, ca_cert=keys.ca.cert, user="admin",
            client_cert=keys.admin.cert, client_key=keys.admin.key,
        )
        for component, pair in (("kube-controller-manager", keys.controller_manager), ("kube-scheduler", keys.scheduler)):
            kubeconfig.write(
                self.layout.component_kubeconfig(component), server=server, ca_cert=keys.ca.cert,
                user=f"system:{component}", client_cert=pair.cert, client_key=pair.key,
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
        )
        cp.pids = {k: int(v) for k, v in state["pids"].items()}
        cp.ports = {k: int(v) for k, v in state["ports"].items()}
        return cp

    @staticmethod
    def _log(msg: str) -> None:
        print(f"[serveplane.localcluster] {msg}", file=sys.stderr, flush=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
