"""What a real node leaves on the machine, and how to take it all away again.

A kubelet, containerd and the CNI change the machine well beyond their own processes: pod processes in
`kubepods` cgroups, container shims that outlive containerd by design, mounts, network namespaces, a bridge,
iptables (nft) tables and two sysctls. `capture` records the machine before a node starts; `leftovers`
lists what differs afterwards (the test of `dev down`), and `clean` undoes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .nodeconfig import BRIDGE, NodeLayout

CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
# The bridge plugin turns on forwarding, and kube-proxy needs bridged traffic to pass iptables (a pod
# reaching a ClusterIP whose backend shares its bridge).
SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables")


@dataclass
class HostState:
    """The parts of the machine a node changes, as they were before it started."""

    nft_tables: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HostState:
        return cls(**data)  # type: ignore[arg-type]


def _nft_tables() -> list[str]:
    result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return sorted(line.strip() for line in result.stdout.splitlines() if line.startswith("table "))


def _netns() -> list[str]:
    return sorted(str(p) for d in NETNS_DIRS if d.is_dir() for p in d.iterdir())


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def set_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value)


def capture() -> HostState:
    values = {name: value for name in SYSCTLS if (value := _sysctl(name)) is not None}
    return HostState(nft_tables=_nft_tables(), netns=_netns(), sysctls=values)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def in_kubepods(pid: int) -> bool:
    try:
        return "/kubepods" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def node_processes(layout: NodeLayout) -> list[int]:
    """Every live process of the node: its parts (they name its state dir), the shims, the pods' processes."""
    mine = str(layout.state_dir)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            if (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split() or ["Z"])[0] == "Z":
                continue
        except OSError:
            continue
        if mine in cmdline(pid) or in_kubepods(pid):
            pids.append(pid)
    return pids


def _mounts(layout: NodeLayout, before: HostState) -> list[str]:
    """Mount points under the state dir, or of network namespaces the node made (deepest first)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(f"{layout.state_dir}/") or (
            any(point.startswith(f"{d}/") for d in NETNS_DIRS) and point not in before.netns
        ):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _kubepods_cgroups() -> list[Path]:
    """Every `kubepods` cgroup directory in every hierarchy, children before parents."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        top = hierarchy / "kubepods"
        if top.is_dir():
            found += sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
    return found


def _bridge_exists() -> bool:
    return Path("/sys/class/net", BRIDGE).exists()


def leftovers(layout: NodeLayout, before: HostState) -> list[str]:
    """What the node changed that is still there: empty once `clean` (or `Node.stop`) has run."""
    out = [f"process {pid}: {cmdline(pid)[:160]}" for pid in node_processes(layout)]
    out += [f"mount {point}" for point in _mounts(layout, before)]
    out += [f"netns {ns}" for ns in _netns() if ns not in before.netns]
    tops = {p for p in _kubepods_cgroups() if p.name == "kubepods"}
    out += [f"cgroup {p}" for p in sorted(tops)]
    out += [f"bridge {BRIDGE}"] if _bridge_exists() else []
    out += [f"nft {table}" for table in _nft_tables() if table not in before.nft_tables]
    out += [
        f"sysctl {name}={_sysctl(name)} (was {value})"
        for name, value in before.sysctls.items()
        if _sysctl(name) != value
    ]
    if layout.state_dir.exists():
        out.append(f"state dir {layout.state_dir}")
    return out


def kill_processes(layout: NodeLayout, timeout: float = 10.0) -> None:
    """SIGKILL whatever of the node still runs (after its parts had their chance to stop cleanly)."""
    deadline = time.monotonic() + timeout
    while (pids := node_processes(layout)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def clean(layout: NodeLayout, before: HostState) -> None:
    """Undo everything `leftovers` would list. Safe to run again, and on a half-started node."""
    kill_processes(layout)
    for point in _mounts(layout, before):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    for ns in _netns():
        if ns not in before.netns:
            Path(ns).unlink(missing_ok=True)
    for cgroup in _kubepods_cgroups():
        try:
            cgroup.rmdir()
        except OSError:
            pass  # a process that has not quite died yet; `leftovers` reports it
    if _bridge_exists():
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    for table in _nft_tables():
        if table not in before.nft_tables:
            subprocess.run(["nft", "delete", *table.split()], capture_output=True)
    for name, value in before.sysctls.items():
        if _sysctl(name) != value:
            set_sysctl(name, value)
    subprocess.run(["rm", "-rf", "--one-file-system", str(layout.state_dir)], capture_output=True)
