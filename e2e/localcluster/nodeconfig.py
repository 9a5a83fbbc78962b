"""The configuration files of a real node's parts: containerd, the CNI network, the kubelet and kube-proxy.

Pure functions of a `NodeLayout` and a few addresses, kept apart from the process handling (node.py) so the
settings, where the node's behaviour really lives, can be read in one place. Every path the parts write to
lies under the node's state dir, so that removing it (after unmounting) removes the node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# One bridge and one pod range per machine: kube-proxy's iptables chains are machine-wide, so a second
# node on the same machine could not work anyway (node.py refuses to start one).
BRIDGE = "serveplane0"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
# The kube-dns Service's ClusterIP, the tenth of the control plane's default service range, as kubeadm does.
DNS_SERVICE_IP = "10.96.0.10"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


@dataclass(frozen=True)
class NodeLayout:
    state_dir: Path

    @property
    def state_file(self) -> Path:
        return self.state_dir / "node.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def log(self, part: str) -> Path:
        return self.logs_dir / f"{part}.log"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def containerd_root(self) -> Path:
        return self.state_dir / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.state_dir / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.state_dir / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.state_dir / "containerd" / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.state_dir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.state_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.state_dir / "kubelet-config.yaml"

    @property
    def kubeproxy_config(self) -> Path:
        return self.state_dir / "kube-proxy-config.yaml"

    def kubeconfig(self, part: str) -> Path:
        return self.state_dir / f"{part}.kubeconfig"


def containerd_toml(layout: NodeLayout) -> str:
    """containerd 1.6's config (version 2), every path under the node's state dir."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.containerd_root}/opt"

[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # This machine's root lacks CAP_SYS_RESOURCE: a container may not get an oom_score_adj below containerd's.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  # The kubelet's cgroupDriver is cgroupfs (no systemd here).
  SystemdCgroup = false
  Root = "{layout.containerd_state}/runc"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.cni_conf_dir}"
"""


def cni_conflist(layout: NodeLayout) -> str:
    """One bridge for every pod, NAT for traffic leaving the pod range, hairpin for a pod reaching itself."""
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "serveplane",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                # A pod that reaches itself through a ClusterIP (kube-proxy DNATs back to it) needs the
                # bridge to send the packet back out of the port it came in on.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conflist, indent=2)


def kubelet_yaml(layout: NodeLayout, *, ca_cert: Path, address: str, port: int, healthz_port: int) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine has cgroup v1 only; v1.37 still runs there when told to (a deprecation warning).
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        # Without CAP_SYS_RESOURCE the kubelet cannot lower its own oom_score_adj.
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The API server presents a certificate of this CA for logs, exec and port-forward and is asked
        # (webhook) whether that identity may; nobody else gets in.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(layout.state_dir / "pod-logs"),
        # Nothing can be pulled here: an image garbage-collected for disk space would be gone for good.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A developer's disk is often fuller than the 10% a server keeps free; only a nearly full one evicts.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubeproxy_yaml(
    layout: NodeLayout, *, hostname: str, address: str, healthz_port: int, metrics_port: int
) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": hostname,
        "bindAddress": address,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # 0: leave the machine's conntrack table size alone (raising it needs privileges this VM lacks).
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    return yaml.safe_dump(config, sort_keys=False)
