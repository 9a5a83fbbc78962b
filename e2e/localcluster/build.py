"""Build, or reuse from the cache, the multi-call control-plane binary.

The Go module in ``e2e/cluster`` compiles etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl into one binary. A cold
build takes many minutes on a small machine, so the result is cached under
``~/.cache/serveplane/cluster/<sha256 of the module's sources>/`` and reused by
every later run (developers and CI on the same machine alike).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BINARY_NAME = "serveplane-cluster"

# Both packages carry their own copy of the version variables: the first feeds
# the servers' /version, the second kubectl's client version.
_VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def cache_root() -> Path:
    """Where built binaries live: outside the repo, so fresh clones reuse them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "serveplane" / "cluster"


def source_dir() -> Path:
    """The Go module, found from this file so no cwd or install layout matters."""
    return Path(__file__).resolve().parent.parent / "cluster"


def source_hash(src: Path | None = None) -> str:
    """sha256 over go.sum, go.mod and every *.go file (name and content)."""
    src = src or source_dir()
    digest = hashlib.sha256()
    files = [src / "go.sum", src / "go.mod"] + sorted(src.glob("*.go"))
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def kubernetes_version(src: Path | None = None) -> str:
    """The k8s.io/kubernetes version that go.mod requires, e.g. ``v1.37.2``."""
    text = ((src or source_dir()) / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", text, re.MULTILINE)
    if not match:
        raise RuntimeError("go.mod does not require k8s.io/kubernetes")
    return match.group(1)


def ldflags(version: str) -> str:
    """Linker flags that stamp the real version (otherwise it reads v0.0.0-master)."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in _VERSION_PACKAGES:
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def cached_binary_path(src: Path | None = None) -> Path:
    return cache_root() / source_hash(src) / BINARY_NAME


def _log(msg: str) -> None:
    print(f"[serveplane.localcluster] {msg}", file=sys.stderr, flush=True)


def ensure_binary() -> Path:
    """Return the control-plane binary, building it first if it is not cached.

    ``SERVEPLANE_CLUSTER_BINARY`` points at a prebuilt binary and skips all of
    this (handy when the Go toolchain is not installed).
    """
    override = os.environ.get("SERVEPLANE_CLUSTER_BINARY")
    if override:
        return Path(override)

    src = source_dir()
    if not (src / "go.mod").is_file():
        raise RuntimeError(
            f"{src} not found: building the control plane needs a source checkout of serveplane "
            "(or set SERVEPLANE_CLUSTER_BINARY to a prebuilt binary)"
        )
    version = kubernetes_version(src)
    return go_build_cached(
        what=f"the Kubernetes {version} control plane", src=src, target=cached_binary_path(src),
        ldflags=ldflags(version), package=".",
    )


def go_build_cached(*, what: str, src: Path, target: Path, ldflags: str, package: str) -> Path:
    """Build `package` of the Go module in `src` into `target` once; every later call, in any process, reuses it."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A lock, so two pytest sessions or a dev shell and CI do not both spend
    # minutes building the same thing.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _build(what, src, target, ldflags, package)
    return target


def _build(what: str, src: Path, target: Path, flags: str, package: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(f"the Go toolchain (go) is needed to build {what}")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    env = dict(os.environ, GOWORK="off", CGO_ENABLED="0")
    cmd = [go, "build", "-trimpath", "-buildvcs=false", "-ldflags", flags, "-o", str(tmp), package]
    _log(f"building {what} into {target} (a cold build takes minutes)")
    started = time.monotonic()
    # Go's own output goes to fd 2 too, so a slow build is visibly alive; the
    # raw fd works even when sys.stderr is replaced by a capture object.
    result = subprocess.run(cmd, cwd=src, env=env, stdout=2, stderr=2)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"go build of {what} failed with exit code {result.returncode}")
    # Rename last, so a half-written file is never mistaken for a cached build.
    os.replace(tmp, target)
    _log(f"built {what} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    # `python -m serveplane.localcluster.build` prebuilds (e.g. in CI) and prints the path.
    print(ensure_binary())
