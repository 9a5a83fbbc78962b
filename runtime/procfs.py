"""Read-only views of Linux /proc: processes of a session, their names and command lines, and TCP connections.

Used by the supervisor (which Ray processes are ours, are raylet and GCS alive) and by the drain (are clients still
connected to this node's Serve proxy). psutil is not a dependency of the runtime (Ray vendors its own copy, which
we do not import), and these few reads are all we need. Parsing is split from reading so tests can feed text.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TCP_ESTABLISHED = "01"


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int

    @property
    def is_zombie(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(pid: int, text: str) -> ProcStat:
    """Parse /proc/<pid>/stat; the command name sits in parentheses and may itself contain spaces or ')'."""
    open_paren, close_paren = text.index("("), text.rindex(")")
    fields = text[close_paren + 2 :].split()
    return ProcStat(
        pid=pid,
        comm=text[open_paren + 1 : close_paren],
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
    )


def stat(pid: int) -> ProcStat | None:
    """The process's stat, or None once it is gone."""
    try:
        return parse_stat(pid, (PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> list[str]:
    """argv of the process ([] if gone). Ray workers rewrite theirs (setproctitle) to e.g. `ray::ProxyActor`."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def all_pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def is_alive(pid: int) -> bool:
    found = stat(pid)
    return found is not None and not found.is_zombie


def session_members(session: int) -> list[ProcStat]:
    """Live processes of a session. Ray's workers move to their own process groups but keep the session."""
    members = []
    for pid in all_pids():
        found = stat(pid)
        if found is not None and found.session == session and not found.is_zombie:
            members.append(found)
    return members


def mentions_path(argv: list[str], path: str) -> bool:
    """Whether an argument is `path`, ends with it (`--temp-dir=PATH`) or lies under it: /tmp/ray-1 must not match
    /tmp/ray-12."""
    path = path.rstrip("/")
    return any(part.endswith(path) or f"{path}/" in part for part in argv)


def mentioning(path: str) -> list[int]:
    """Live processes (other than ourselves) whose command line names `path`, e.g. our Ray temp dir."""
    own = os.getpid()
    return [pid for pid in all_pids() if pid != own and mentions_path(cmdline(pid), path) and is_alive(pid)]


def count_established(tables: list[str], local_port: int) -> int:
    """Count ESTABLISHED TCP connections to `local_port` in /proc/net/tcp{,6} text (one table per string)."""
    count = 0
    for table in tables:
        for line in table.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 4:
                continue
            local, state = parts[1], parts[3]
            port_hex = local.rsplit(":", 1)[-1]
            if state == _TCP_ESTABLISHED and int(port_hex, 16) == local_port:
                count += 1
    return count


def established_connections(local_port: int) -> int | None:
    """Clients connected to `local_port` in this network namespace (the pod's); None if /proc/net is unreadable."""
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            tables.append((PROC / "net" / name).read_text())
        except OSError:
            continue
    return count_established(tables, local_port) if tables else None
