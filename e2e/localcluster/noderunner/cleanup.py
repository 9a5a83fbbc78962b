"""Remove what a runner instance left on the host: processes, netns, veths, bridge, /etc/netns dirs.

Used by every runner at start (for a crashed predecessor) and at stop (as a
final sweep), and from the CLI (``python -m serveplane.localcluster.noderunner
cleanup``). Only instances whose lock nobody holds are touched, so a live
runner's pods are never harmed.
"""

from __future__ import annotations

import logging
import shutil

from . import network, procs
from .instance import ETC_NETNS, MAX_INSTANCES, Instance, InstanceLock

log = logging.getLogger(__name__)


def cleanup_instance(instance: Instance) -> list[str]:
    """Remove everything carrying ``instance``'s names; the caller must hold its lock. Returns what went."""
    removed: list[str] = []
    namespaces = network.list_netns(instance.netns_prefix)
    pids: set[int] = set(procs.marked_pids(instance.marker_prefix))
    for netns in namespaces:
        pids.update(network.netns_pids(netns))
    if pids:
        procs.kill_and_wait(pids)
        removed.append(f"processes {sorted(pids)}")
    for netns in namespaces:
        network.ip("netns", "del", netns, check=False)
        removed.append(f"netns {netns}")
    for link in network.list_links(instance.veth_prefix):
        network.ip("link", "del", link, check=False)
        removed.append(f"link {link}")
    if network.link_exists(instance.bridge):
        network.delete_bridge(instance)
        removed.append(f"bridge {instance.bridge}")
    if ETC_NETNS.is_dir():
        for directory in ETC_NETNS.glob(f"{instance.netns_prefix}*"):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(f"dir {directory}")
        try:
            # Only when empty: other instances may still use it.
            ETC_NETNS.rmdir()
        except OSError:
            pass
    return removed


def cleanup(index: int | None = None) -> dict[int, list[str]]:
    """Clean instance ``index`` (or every instance) unless a live runner holds it; {index: removed}."""
    results: dict[int, list[str]] = {}
    for candidate in [index] if index is not None else range(MAX_INSTANCES):
        lock = InstanceLock.try_acquire(candidate)
        if lock is None:
            log.info("instance %d is in use by a live runner; left alone", candidate)
            continue
        try:
            results[candidate] = cleanup_instance(lock.instance)
        finally:
            lock.release()
    return results
