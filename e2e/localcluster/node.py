"""A real Kubernetes node on this machine: containerd + runc + a CNI bridge, the kubelet, kube-proxy.

Started after a `ControlPlane` made with ``node_address`` (the API server must be reachable from pods), and
stopped before it. The node's images are imported into its containerd from archives (images.py builds them;
nothing can be pulled here). `stop` tears down everything it made (nodeclean.py), and so does `down` for a
node whose starter has gone (`dev down`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import kubeconfig, nodeclean, pki, processes
from .build import ensure_node_binary
from .controlplane import ControlPlane, http_ok
from .nodeconfig import BRIDGE, NodeLayout, cni_conflist, containerd_toml, kubelet_yaml, kubeproxy_yaml

PARTS = ("containerd", "kubelet", "kube-proxy")


def primary_address() -> str:
    """The machine's address on its default route: what pods reach the API server on, and the node's IP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # connect() on UDP sends nothing; it only picks the route and so the source address.
        s.connect(("192.0.2.254", 9))
        return str(s.getsockname()[0])


class NodeError(RuntimeError):
    pass


class Node:
    """One node named after the machine, as the kubelet's Hostname address must resolve for the API server."""

    def __init__(
        self,
        controlplane: ControlPlane,
        state_dir: Path,
        *,
        images: Sequence[Path] = (),
        detach: bool = False,
        start_timeout: float = 120.0,
    ) -> None:
        if controlplane.node_address is None:
            raise NodeError("the control plane must be started with node_address= for a real node")
        self.cp = controlplane
        self.layout = NodeLayout(Path(state_dir).resolve())
        self.images = list(images)
        self.detach = detach
        self.start_timeout = start_timeout
        self.name = socket.gethostname()
        self.address = controlplane.node_address
        self.pids: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.before = nodeclean.HostState()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.binary: Path | None = None

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start ------------------------------------------------------------

    def start(self) -> Node:
        if Path("/sys/class/net", BRIDGE).exists() or nodeclean.node_processes(self.layout):
            raise NodeError(
                f"a serveplane node already runs on this machine (bridge {BRIDGE} exists): one node per machine, "
                "as kube-proxy's iptables chains are machine-wide; stop it first (serveplane dev down)"
            )
        self.binary = ensure_node_binary()
        started = time.monotonic()
        self.before = nodeclean.capture()
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        if not self.detach:
            atexit.register(self.stop)
        try:
            self._step("containerd", self._start_containerd)
            self._step("images", self._import_images)
            self._step("kubelet", self._start_kubelet)
            self._step("kube-proxy", self._start_kube_proxy)
        except BaseException:
            self.stop()
            raise
        self._log(f"node {self.name} ready in {time.monotonic() - started:.1f}s")
        return self

    def _step(self, what: str, run: Callable[[], None]) -> None:
        started = time.monotonic()
        run()
        self._log(f"{what} ready in {time.monotonic() - started:.1f}s")

    def _start_containerd(self) -> None:
        layout = self.layout
        for name, value in (("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")):
            nodeclean.set_sysctl(name, value)
        layout.containerd_config.parent.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(containerd_toml(layout))
        layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (layout.cni_conf_dir / "10-serveplane.conflist").write_text(cni_conflist(layout))
        self._spawn("containerd", ["containerd", "--config", str(layout.containerd_config)])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """containerd's own client, in the namespace the kubelet's pods live in."""
        argv = ["ctr", "--address", str(self.layout.containerd_socket), "--namespace", "k8s.io", *args]
        result = subprocess.run(argv, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise NodeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        return result

    def _import_images(self) -> None:
        # The archives carry fully qualified names (docker.io/...), which is what a pod's short name resolves to.
        for archive in self.images:
            self.ctr("images", "import", str(archive))

    def _certificate(self, stem: str, common_name: str, *organizations: str) -> pki.CertPair:
        return pki.issue(
            self.cp.layout.pki_dir, stem, common_name, organizations=organizations, into=self.layout.pki_dir
        )

    def _kubeconfig(self, part: str, user: str, pair: pki.CertPair) -> Path:
        return kubeconfig.write(
            self.layout.kubeconfig(part),
            server=f"https://{self.address}:{self.cp.ports['kube-apiserver']}",
            ca_cert=self.cp.layout.pki_dir / "ca.crt",
            user=user,
            client_cert=pair.cert,
            client_key=pair.key,
        )

    def _start_kubelet(self) -> None:
        layout = self.layout
        user = f"system:node:{self.name}"
        path = self._kubeconfig("kubelet", user, self._certificate("kubelet", user, "system:nodes"))
        self.ports.update(kubelet=processes.free_port(), kubelet_healthz=processes.free_port())
        layout.kubelet_config.write_text(
            kubelet_yaml(
                layout,
                ca_cert=self.cp.layout.pki_dir / "ca.crt",
                address=self.address,
                port=self.ports["kubelet"],
                healthz_port=self.ports["kubelet_healthz"],
            )
        )
        self._spawn(
            "kubelet",
            [
                "kubelet",
                f"--config={layout.kubelet_config}",
                f"--kubeconfig={path}",
                f"--root-dir={layout.kubelet_root}",
                f"--cert-dir={layout.pki_dir / 'kubelet-serving'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.address}",
            ],
        )
        self._wait("kubelet", self.ready)

    def running(self) -> bool:
        """Every part's process is alive (and the Node is Ready)."""
        alive = all(part in self.pids and processes.is_alive(self.pids[part]) for part in PARTS)
        return alive and self.ready()

    def ready(self) -> bool:
        status, body = self.cp.api.get(f"/api/v1/nodes/{self.name}")
        if status != 200:
            return False
        conditions = body.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _start_kube_proxy(self) -> None:
        self._kubeconfig("kube-proxy", "system:kube-proxy", self._certificate("kube-proxy", "system:kube-proxy"))
        self.ports.update(proxy_healthz=processes.free_port(), proxy_metrics=processes.free_port())
        self.layout.kubeproxy_config.write_text(
            kubeproxy_yaml(
                self.layout,
                hostname=self.name,
                address=self.address,
                healthz_port=self.ports["proxy_healthz"],
                metrics_port=self.ports["proxy_metrics"],
            )
        )
        self._spawn("kube-proxy", ["kube-proxy", f"--config={self.layout.kubeproxy_config}"])
        url = f"http://127.0.0.1:{self.ports['proxy_healthz']}/healthz"
        self._wait("kube-proxy", lambda: http_ok(url))

    # -- processes ----------------------------------------------------------

    def _spawn(self, part: str, argv: list[str]) -> None:
        program = argv if part == "containerd" else [str(self.binary), *argv]
        proc = processes.spawn(program, self.layout.log(part), detach=self.detach, env=dict(os.environ))
        self._procs[part] = proc
        self.pids[part] = proc.pid
        self._save_state()

    def _wait(self, part: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not processes.is_alive(self.pids[part]):
                raise NodeError(f"{part} exited during startup; last log lines:\n{self.tail(part)}")
            time.sleep(0.2)
        raise NodeError(f"{part} not ready after {self.start_timeout:.0f}s; last log lines:\n{self.tail(part)}")

    def tail(self, part: str, lines: int = 30) -> str:
        return processes.tail(self.layout.log(part), lines)

    # -- stop ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop the pods, then the parts, and undo every change to the machine."""
        atexit.unregister(self.stop)
        if self.binary is not None and "kubelet" in self.pids:
            processes.stop_groups([self.pids["kubelet"]])
            # Sandboxes removed through containerd's CRI get their CNI teardown (veth, IP, NAT rules).
            if "containerd" in self.pids and processes.is_alive(self.pids["containerd"]):
                subprocess.run(
                    [str(self.binary), "cri-cleanup", f"--endpoint=unix://{self.layout.containerd_socket}"],
                    capture_output=True,
                    timeout=120,
                )
        if self.binary is not None and "kube-proxy" in self.pids:
            processes.stop_groups([self.pids["kube-proxy"]])
            # kube-proxy removes its own iptables chains.
            subprocess.run(
                [str(self.binary), "kube-proxy", "--cleanup", f"--config={self.layout.kubeproxy_config}"],
                capture_output=True,
                timeout=60,
            )
        if "containerd" in self.pids:
            processes.stop_groups([self.pids["containerd"]])
        for proc in self._procs.values():
            proc.wait(timeout=10)
        self._procs.clear()
        self.pids.clear()
        nodeclean.clean(self.layout, self.before)
        if self.cp.healthy():
            self.cp.kubectl("delete", "node", self.name, "--ignore-not-found", "--wait=false", check=False)

    def leftovers(self) -> list[str]:
        return nodeclean.leftovers(self.layout, self.before)

    # -- state file (for `dev down` from another process) ------------------

    def _save_state(self) -> None:
        state = {"pids": self.pids, "ports": self.ports, "before": self.before.to_json(), "name": self.name}
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.layout.state_file)

    @classmethod
    def attach(cls, controlplane: ControlPlane, state_dir: Path) -> Node:
        """The node an earlier start() (maybe another process) left in ``state_dir``; FileNotFoundError if none."""
        node = cls(controlplane, state_dir, detach=True)
        state = json.loads(node.layout.state_file.read_text())
        node.pids = {k: int(v) for k, v in state["pids"].items()}
        node.ports = {k: int(v) for k, v in state["ports"].items()}
        node.before = nodeclean.HostState.from_json(state["before"])
        node.binary = ensure_node_binary()
        return node

    @staticmethod
    def _log(msg: str) -> None:
        print(f"[serveplane.localcluster] {msg}", file=sys.stderr, flush=True)
