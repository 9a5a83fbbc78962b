"""What `serveplane dev up|down|kubectl` do: a long-lived control plane for a person.

Unlike the test fixture, `up` leaves the components running after it returns
(detached, pids in the state dir's state.json), and a second `up` reuses a
healthy instance instead of starting another.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .controlplane import ControlPlane
from .nodes import DEFAULT_NODE_NAMES


def default_state_dir() -> Path:
    """$SERVEPLANE_DEV_STATE_DIR, else serveplane/dev in the user's cache dir."""
    override = os.environ.get("SERVEPLANE_DEV_STATE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "serveplane" / "dev"


def _state_dir(state_dir: Path | str | None) -> Path:
    return Path(state_dir) if state_dir is not None else default_state_dir()


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def status(state_dir: Path | str | None = None) -> ControlPlane | None:
    """The running, healthy dev control plane, or None."""
    try:
        cp = ControlPlane.attach(_state_dir(state_dir))
    except FileNotFoundError:
        return None
    return cp if cp.healthy() else None


def up(state_dir: Path | str | None = None, node_names: Sequence[str] = DEFAULT_NODE_NAMES) -> ControlPlane:
    """Start the dev control plane, or reuse the one already running; print `export KUBECONFIG=...`.

    The export line goes to stdout (so `eval "$(serveplane dev up)"` works);
    progress goes to stderr.
    """
    directory = _state_dir(state_dir)
    cp = status(directory)
    if cp is not None:
        _err(f"control plane already running at {cp.server_url}")
    else:
        # Whatever is left of an unhealthy earlier instance would hold ports
        # and confuse the new one's state file: clear it out first.
        down(directory, quiet=True)
        cp = ControlPlane(directory, node_names=node_names, detach=True).start()
        _err(f"control plane running at {cp.server_url}; logs in {cp.layout.logs_dir}")
    print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
    return cp


def down(state_dir: Path | str | None = None, *, quiet: bool = False) -> bool:
    """Stop the dev control plane and remove its state dir. True if one was running."""
    directory = _state_dir(state_dir)
    try:
        cp = ControlPlane.attach(directory)
    except FileNotFoundError:
        cp = None
    if cp is not None:
        cp.stop(remove_state=False)
    # Remove only a dir that looks like ours, never some unrelated path given by mistake.
    if any((directory / marker).exists() for marker in ("pki", "etcd", "state.json")):
        shutil.rmtree(directory, ignore_errors=True)
    if not quiet:
        _err("control plane stopped" if cp is not None else "no control plane was running")
    return cp is not None


def kubectl(args: list[str], state_dir: Path | str | None = None) -> int:
    """Run the bundled kubectl against the dev control plane (like `minikube kubectl --`); its exit code."""
    directory = _state_dir(state_dir)
    try:
        cp = ControlPlane.attach(directory)
    except FileNotFoundError:
        _err("no dev control plane is running; start one with `serveplane dev up`")
        return 1
    argv = [str(cp.binary), "kubectl", f"--kubeconfig={cp.kubeconfig}", f"--cache-dir={cp.layout.kubectl_cache}", *args]
    # Inherit stdin/stdout/stderr so interactive use (edit, exec, -w) behaves as usual.
    return subprocess.call(argv)
