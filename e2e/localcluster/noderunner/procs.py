"""Container processes: start them inside a pod's netns, find them, signal them.

A container is started as
``ip netns exec <netns> unshare --uts -- sh -c 'hostname H; exec "$@"' <argv>``:
every step execs the next, so the Popen pid *is* the container's main process,
in its own session and process group. ``ip netns exec`` also gives it a private
mount namespace with /etc/netns/<netns>/* bind-mounted over /etc (our DNS), and
the UTS namespace gives it the pod's hostname.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..processes import signal_group, spawn
from .instance import MARKER_ENV
from .network import IP

UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
HOSTNAME = shutil.which("hostname") or "/bin/hostname"
SH = shutil.which("sh") or "/bin/sh"
_SHIM = f'{HOSTNAME} "$1" 2>/dev/null; shift; exec "$@"'


def in_netns(netns: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the pod's network (and /etc) view, as exec probes and hooks are."""
    return [IP, "netns", "exec", netns, *argv]


def spawn_container(
    argv: list[str], *, netns: str, hostname: str, env: Mapping[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen:
    """Start a container's main process; stdout and stderr are appended to ``log_path``.

    Detached from the runner's own lifetime: the runner stops containers itself, and `cleanup` finds any a
    killed runner left behind by their marker.
    """
    full = in_netns(netns, [UNSHARE, "--uts", "--", SH, "-c", _SHIM, "sh", hostname, *argv])
    return spawn(full, log_path, detach=True, env=dict(env), cwd=cwd)


def run_in_netns(
    netns: str, argv: list[str], *, env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> tuple[int | None, str]:
    """Run a short command (exec probe or hook) in the pod; (exit code or None on timeout, output)."""
    proc = subprocess.Popen(
        in_netns(netns, argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=str(cwd) if cwd else None,
        start_new_session=True,
        close_fds=True,
    )
    try:
        out, _ = proc.communicate(timeout=max(timeout, 0.1))
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timed out after {timeout:g}s"


def _marker_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    key = MARKER_ENV.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode(errors="replace")
    return None


def marked_pids(prefix: str, *, exact: bool = False) -> list[int]:
    """Pids whose environment marks them as ours: marker == ``prefix`` when ``exact``, else startswith."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        marker = _marker_of(int(entry))
        if marker is None:
            continue
        if marker == prefix if exact else marker.startswith(prefix):
            found.append(int(entry))
    return found


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def signal_container(pgid: int | None, marker: str, sig: int) -> None:
    """Signal the container's process group and every process carrying its marker."""
    if pgid is not None:
        signal_group(pgid, sig)
    signal_pids(marked_pids(marker, exact=True), sig)


def kill_and_wait(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGKILL ``pids`` (not our children) and wait until they are gone."""
    pending = set(pids)
    signal_pids(pending, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {p for p in pending if _alive(p)}
        if pending:
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    # A zombie is dead; its parent just has not reaped it yet.
    return state != "Z"


def exit_code(returncode: int) -> int:
    """Popen's returncode as a container runtime reports it (128 + signal for a signal death)."""
    return 128 - returncode if returncode < 0 else returncode
