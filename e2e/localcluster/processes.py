"""Start and stop the control-plane component processes.

Each component runs in its own session (so its own process group) with its
output in a log file. Stopping signals the whole group: SIGTERM, a grace
period, then SIGKILL, so nothing is left behind even after a failed test.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process is killed outright
    # (SIGKILL, OOM) the kernel still kills the components, which atexit
    # handlers and fixture finalizers cannot cover. SIGKILL, not SIGTERM: all
    # components get it at once, and an apiserver whose etcd is shutting down
    # beside it can take minutes over its graceful shutdown.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(
    argv: list[str], log_path: Path, *, detach: bool, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``argv`` in a new session with stdout/stderr going to ``log_path``.

    ``detach`` lets the process outlive this Python process (for ``dev up``).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
            close_fds=True,
            env=env,
            cwd=str(cwd) if cwd else None,
        )


def _reap(pid: int) -> None:
    # Our own exited children stay zombies (and look alive) until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_zombie(pid: int) -> bool:
    # A dead process that nobody has reaped yet (e.g. a detached component
    # whose new parent, pid 1, is slow to wait) still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def is_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def runs_component(pid: int, binary_name: str, component: str) -> bool:
    """True if ``pid`` is our binary running ``component``.

    Guards against a pid from an old state file that now belongs to some
    unrelated process: we must never signal that.
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return len(argv) >= 2 and Path(argv[0].decode()).name == binary_name and argv[1].decode() == component


def _group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process is in process group ``pgid``."""
    _reap(pgid)
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # After the command name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    """Signal a whole process group; one that is already gone is fine."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_groups(pgids: list[int], grace: float = 10.0) -> None:
    """SIGTERM the process groups, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for pgid in pgids:
        signal_group(pgid, signal.SIGTERM)
    if _wait_gone(pgids, grace):
        return
    for pgid in pgids:
        signal_group(pgid, signal.SIGKILL)
    _wait_gone(pgids, 5.0)


def _wait_gone(pgids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        for pgid in pgids:
            _reap(pgid)
        if not any(_group_alive(p) for p in pgids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
