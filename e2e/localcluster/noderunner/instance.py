"""Which runner instance owns which host resources, and the lock that proves it.

Several node runners may share one machine (two engineers' test sessions, say).
Each takes the lowest free instance index under an flock; every host resource
it creates (bridge, netns, veths, /etc/netns dirs, marked processes) carries
that index in its name. Whoever holds the lock may therefore treat anything
carrying the index as a leftover of a crashed earlier run and remove it.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR = Path("/run/serveplane-noderunner")
ETC_NETNS = Path("/etc/netns")
# 10.244.0.0/16 for instance 0 up to 10.255.0.0/16 for instance 11.
MAX_INSTANCES = 12
FIRST_OCTET = 10
BASE_SECOND_OCTET = 244
PREFIX_LEN = 16
# Pods' environments carry this variable, so their processes can be found even
# after they leave the container's process group (daemons, setsid).
MARKER_ENV = "SERVEPLANE_NODERUNNER_CONTAINER"


@dataclass(frozen=True)
class Instance:
    """Names and addresses of one runner instance's host resources."""

    index: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_INSTANCES:
            raise ValueError(f"instance index must be in [0, {MAX_INSTANCES}), got {self.index}")

    @property
    def bridge(self) -> str:
        return f"spbr{self.index}"

    @property
    def bridge_mac(self) -> str:
        # Fixed, so the bridge does not take on a port's MAC (and change it
        # whenever that port goes away, which would stale every pod's ARP entry).
        return f"02:53:50:00:00:{self.index:02x}"

    @property
    def second_octet(self) -> int:
        return BASE_SECOND_OCTET + self.index

    @property
    def subnet(self) -> str:
        return f"{FIRST_OCTET}.{self.second_octet}.0.0/{PREFIX_LEN}"

    @property
    def gateway(self) -> str:
        """The bridge's address on the host: the pods' default route and the Nodes' InternalIP."""
        return f"{FIRST_OCTET}.{self.second_octet}.0.1"

    @property
    def netns_prefix(self) -> str:
        return f"sp{self.index}-"

    @property
    def veth_prefix(self) -> str:
        # The trailing "x" keeps instance 1's prefix from matching instance 10's names.
        return f"spv{self.index}x"

    @property
    def marker_prefix(self) -> str:
        return f"{self.index}/"

    def netns_name(self, pod_uid: str) -> str:
        return f"{self.netns_prefix}{pod_uid}"

    def veth_name(self, pod_uid: str) -> str:
        # Interface names are at most 15 characters.
        return f"{self.veth_prefix}{pod_uid.replace('-', '')[:8]}"

    def marker(self, pod_uid: str, container: str) -> str:
        return f"{self.marker_prefix}{pod_uid}/{container}"

    def pod_marker_prefix(self, pod_uid: str) -> str:
        return f"{self.marker_prefix}{pod_uid}/"

    def pod_ip(self, node_slot: int, host: int) -> str:
        return f"{FIRST_OCTET}.{self.second_octet}.{node_slot}.{host}"

    @staticmethod
    def etc_dir(netns: str) -> Path:
        """What `ip netns exec` bind-mounts over /etc inside ``netns``."""
        return ETC_NETNS / netns


def mac_for_ip(ip: str) -> str:
    """A MAC derived from the IP: a reused IP keeps its MAC, so no ARP cache goes stale."""
    octets = [int(part) for part in ip.split(".")]
    return "02:42:" + ":".join(f"{o:02x}" for o in octets)


class InstanceLock:
    """An exclusive flock on one instance index, held for the runner's lifetime.

    The kernel drops it when the holder dies, however it dies, which is what
    makes "lock free" mean "any resources of this index are leftovers".
    """

    def __init__(self, instance: Instance, fd: int) -> None:
        self.instance = instance
        self._fd: int | None = fd

    @staticmethod
    def _path(index: int) -> Path:
        return LOCK_DIR / f"instance-{index}.lock"

    @classmethod
    def try_acquire(cls, index: int) -> InstanceLock | None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(cls._path(index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(Instance(index), fd)

    @classmethod
    def acquire(cls, index: int | None = None) -> InstanceLock:
        """Lock ``index``, or the lowest free index when None."""
        candidates = [index] if index is not None else list(range(MAX_INSTANCES))
        for candidate in candidates:
            lock = cls.try_acquire(candidate)
            if lock is not None:
                return lock
        if index is not None:
            raise RuntimeError(f"node runner instance {index} is in use by another live runner")
        raise RuntimeError(f"all {MAX_INSTANCES} node runner instances are in use")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
