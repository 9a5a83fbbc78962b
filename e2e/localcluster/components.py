"""The file layout of a control plane's state dir and each component's flags.

Kept apart from the process handling so the flags, which is where a control
plane's behaviour really lives, can be read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .pki import Pki

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"

# Start order; stop goes the other way round.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PORT_NAMES = ("etcd-client", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Layout:
    """Where everything lives inside one control plane's state dir."""

    state_dir: Path

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def etcd_dir(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def kubectl_cache(self) -> Path:
        return self.state_dir / "kubectl-cache"

    def component_kubeconfig(self, component: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{component}.kubeconfig"

    def cert_dir(self, component: str) -> Path:
        return self.state_dir / "certs" / component

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log: one JSON event per line (read it with audit.py)."""
        return self.logs_dir / "audit.log"

    @property
    def audit_policy(self) -> Path:
        return self.state_dir / "audit-policy.yaml"


# Metadata (who, verb, object, response code; no bodies) of every request, once
# it is answered; a watch's event comes when the watch ends. RequestReceived
# would only double the lines.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


def etcd_args(layout: Layout, ports: dict[str, int]) -> list[str]:
    return [
        "etcd",
        f"--data-dir={layout.etcd_dir}",
        f"--listen-client-url=http://127.0.0.1:{ports['etcd-client']}",
        f"--listen-peer-url=http://127.0.0.1:{ports['etcd-peer']}",
    ]


def _listen_flags(node_address: str | None) -> list[str]:
    if node_address is None:
        # Loopback only: this is a developer's and CI's private cluster. The `kubernetes` Service's Endpoints
        # may not point at loopback, and nothing in-cluster runs to use them.
        return ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
    # A real node: its pods reach the API server through the `kubernetes` Service (kube-proxy DNATs the
    # ClusterIP to this address) and its kubelet dials this address; host tools keep using loopback.
    return ["--bind-address=0.0.0.0", f"--advertise-address={node_address}"]


def apiserver_args(
    layout: Layout, ports: dict[str, int], pki: Pki, service_cidr: str, node_address: str | None = None
) -> list[str]:
    return [
        "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{ports['etcd-client']}",
        *_listen_flags(node_address),
        f"--secure-port={ports['kube-apiserver']}",
        f"--cert-dir={layout.cert_dir('kube-apiserver')}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={service_cidr}",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        # How it reaches a real kubelet (logs, exec, port-forward): by the node's InternalIP, with a client
        # certificate the kubelet checks against the same CA.
        f"--kubelet-client-certificate={pki.kubelet_client.cert}",
        f"--kubelet-client-key={pki.kubelet_client.key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # Without a kubelet, this plugin's not-ready taint on every new Node would never go (the node-lifecycle
        # controller is off then too); a real node lifts it with its first heartbeat.
        *(() if node_address else ("--disable-admission-plugins=TaintNodesByCondition",)),
        "--profiling=false",
        # On SIGTERM, drain the requests in flight, then give open watches 2 s
        # (not the default 60 s, longer than stop()'s grace) to close: a stop
        # or restart() takes seconds, not a SIGKILL after the grace.
        "--shutdown-send-retry-after=true",
        f"--audit-policy-file={layout.audit_policy}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-format=json",
        # Blocking: each event is written before its request returns, with no
        # buffer in between, so a test sees a request in the log right away.
        "--audit-log-mode=blocking",
        # Rotate at 100 MB, keeping one old file: a long dev session stays bounded.
        "--audit-log-maxsize=100",
        "--audit-log-maxbackup=1",
    ]


def _client_flags(layout: Layout, component: str, port: int) -> list[str]:
    kubeconfig = layout.component_kubeconfig(component)
    return [
        f"--kubeconfig={kubeconfig}",
        # Without these the component cannot check who calls its own
        # /metrics and logs warnings about it on every start.
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.cert_dir(component)}",
        # A single instance: leader election would only add a startup delay.
        "--leader-elect=false",
        "--profiling=false",
    ]


def controller_manager_args(
    layout: Layout, ports: dict[str, int], pki: Pki, service_cidr: str, real_node: bool = False
) -> list[str]:
    return [
        "kube-controller-manager",
        *_client_flags(layout, "kube-controller-manager", ports["kube-controller-manager"]),
        # Every default controller (garbage collector, namespace, endpointslice
        # and its mirroring, serviceaccount and its tokens, root CA publisher,
        # deployments, jobs, ...); node-lifecycle only with a real kubelet: with
        # Node objects alone it would mark them NotReady and evict their pods.
        "--controllers=*" if real_node else "--controllers=*,-node-lifecycle-controller",
        # Each controller acts under its own ServiceAccount, as in a real
        # cluster, so RBAC problems show up here too.
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={service_cidr}",
        "--cluster-name=serveplane-local",
    ]


def scheduler_args(layout: Layout, ports: dict[str, int]) -> list[str]:
    return ["kube-scheduler", *_client_flags(layout, "kube-scheduler", ports["kube-scheduler"])]
