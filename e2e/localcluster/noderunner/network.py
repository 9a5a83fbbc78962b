"""Pod networking with iproute2: one bridge per runner, one netns + veth per pod.

The host keeps the bridge's address (the gateway), so it reaches every pod IP
directly over the bridge; pods reach each other at layer 2 through it. Nothing
is routed or NATed, so the host needs neither ip_forward nor iptables.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterable

from .instance import PREFIX_LEN, Instance, mac_for_ip

IP = shutil.which("ip") or "/usr/sbin/ip"


class NetworkError(RuntimeError):
    pass


def ip(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run one ``ip`` command; raise NetworkError with its stderr when ``check`` and it fails."""
    result = subprocess.run([IP, *args], capture_output=True, text=True, input=input)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def ensure_bridge(instance: Instance) -> None:
    """Create the instance's bridge with the gateway address and bring it up."""
    if link_exists(instance.bridge):
        ip("link", "del", instance.bridge)
    # No STP, so ports forward at once instead of after a learning delay.
    ip("link", "add", "name", instance.bridge, "address", instance.bridge_mac, "type", "bridge",
       "forward_delay", "0", "stp_state", "0")
    ip("addr", "add", f"{instance.gateway}/{PREFIX_LEN}", "dev", instance.bridge)
    ip("link", "set", instance.bridge, "up")


def delete_bridge(instance: Instance) -> None:
    ip("link", "del", instance.bridge, check=False)


def create_sandbox(instance: Instance, netns: str, veth: str, pod_ip: str) -> None:
    """A netns whose eth0 has ``pod_ip``, cabled to the bridge, with lo up and a default route."""
    try:
        ip("netns", "add", netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "address", mac_for_ip(pod_ip), "netns", netns)
        ip("link", "set", veth, "master", instance.bridge, "up")
        batch = "\n".join([
            f"addr add {pod_ip}/{PREFIX_LEN} dev eth0",
            "link set eth0 up",
            "link set lo up",
            # Programs that find their own IP by "connecting" a UDP socket
            # outwards (Ray does) need a route, even one that goes nowhere.
            f"route add default via {instance.gateway}",
        ])
        ip("-n", netns, "-batch", "-", input=batch + "\n")
    except NetworkError:
        delete_sandbox(netns, veth)
        raise


def delete_sandbox(netns: str, veth: str) -> None:
    """Remove the pod's veth and netns (either may already be gone)."""
    # Deleting the netns destroys eth0 and with it the host end; deleting the
    # host end first as well covers a netns that was never created.
    ip("link", "del", veth, check=False)
    ip("netns", "del", netns, check=False)


def list_netns(prefix: str) -> list[str]:
    out = ip("netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def list_links(prefix: str) -> list[str]:
    out = ip("-o", "link", "show", check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return [n for n in names if n.startswith(prefix)]


def netns_pids(netns: str) -> list[int]:
    out = ip("netns", "pids", netns, check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


class IpPool:
    """Pod IPs per node: node slot N hands out 10.<instance>.N.1-254.

    Allocation goes round-robin, so a freed IP is reused as late as possible.
    """

    def __init__(self, instance: Instance, node_slots: Iterable[int]) -> None:
        self._instance = instance
        self._lock = threading.Lock()
        self._in_use: set[str] = set()
        self._next: dict[int, int] = {slot: 1 for slot in node_slots}

    def allocate(self, node_slot: int) -> str:
        with self._lock:
            start = self._next[node_slot]
            for step in range(254):
                host = (start - 1 + step) % 254 + 1
                candidate = self._instance.pod_ip(node_slot, host)
                if candidate not in self._in_use:
                    self._in_use.add(candidate)
                    self._next[node_slot] = host % 254 + 1
                    return candidate
        raise NetworkError(f"no free pod IP left on node slot {node_slot}")

    def release(self, pod_ip: str) -> None:
        with self._lock:
            self._in_use.discard(pod_ip)
