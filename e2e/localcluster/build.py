"""Build, or reuse from the cache, the Kubernetes binaries the local cluster runs.

The Go module in ``e2e/cluster`` compiles etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl into one multi-call binary,
and, from its ``node/`` package, kubelet and kube-proxy into a second one (the
same go.mod, so the same Kubernetes version). ``e2e/dns`` builds CoreDNS with
the plugins a cluster DNS needs. A cold build takes many minutes on a small
machine, so each result is cached under
``~/.cache/serveplane/<kind>/<sha256 of its sources>/`` and reused by every
later run (developers and CI on the same machine alike).
"""

from __future__ import annotations

import argparse
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
NODE_BINARY_NAME = "serveplane-node"
DNS_BINARY_NAME = "coredns"

# The node binary's main package, inside the control plane's module.
_NODE_PACKAGE = "./node"

# Both packages carry their own copy of the version variables: the first feeds
# the servers' /version, the second kubectl's client version.
_VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def cache_root(kind: str = "cluster") -> Path:
    """Where built binaries of `kind` live: outside the repo, so fresh clones reuse them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "serveplane" / kind


def source_dir() -> Path:
    """The Go module, found from this file so no cwd or install layout matters."""
    return Path(__file__).resolve().parent.parent / "cluster"


def dns_source_dir() -> Path:
    """The CoreDNS module (its own, so the cluster module does not carry CoreDNS's dependencies)."""
    return Path(__file__).resolve().parent.parent / "dns"


def source_hash(src: Path | None = None, patterns: tuple[str, ...] = ("*.go",)) -> str:
    """sha256 over go.sum, go.mod and the files `patterns` glob in `src` (relative name and content).

    The default globs only the module's top-level *.go, which is what the
    control plane's main package is made of; the node binary passes
    ``("node/*.go",)`` so editing one binary's main never rebuilds the other.
    """
    src = src or source_dir()
    digest = hashlib.sha256()
    globbed = sorted({path for pattern in patterns for path in src.glob(pattern)})
    for path in [src / "go.sum", src / "go.mod", *globbed]:
        # The relative name equals the bare file name for top-level files, so
        # keys made before patterns existed stay valid.
        digest.update(path.relative_to(src).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def node_source_hash(src: Path | None = None) -> str:
    """The node binary's cache key: the shared go.mod/go.sum and node/*.go."""
    return source_hash(src, patterns=(f"{_NODE_PACKAGE.removeprefix('./')}/*.go",))


def required_version(go_mod: Path, module: str) -> str:
    """The version of `module` that the go.mod file requires, e.g. ``v1.37.2`` (a block or a one-line require)."""
    text = go_mod.read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\d+\.\d+\.\d+\S*)", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{go_mod} does not require {module}")
    return match.group(1)


def kubernetes_version(src: Path | None = None) -> str:
    """The k8s.io/kubernetes version that go.mod requires, e.g. ``v1.37.2``."""
    return required_version((src or source_dir()) / "go.mod", "k8s.io/kubernetes")


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


def coredns_version(src: Path | None = None) -> str:
    """The github.com/coredns/coredns version that e2e/dns/go.mod requires, e.g. ``v1.15.0``."""
    return required_version((src or dns_source_dir()) / "go.mod", "github.com/coredns/coredns")


def dns_ldflags(version: str) -> str:
    """CoreDNS's Makefile stamps only coremain.GitCommit (`-version` prints it after the Go version).

    A build from the module has no git checkout, so the module version stands
    in for the commit; CoreDNS's own version string is a constant in its code.
    """
    return f"-s -w -X github.com/coredns/coredns/coremain.GitCommit={version}"


def cached_binary_path(src: Path | None = None) -> Path:
    return cache_root() / source_hash(src) / BINARY_NAME


def cached_node_binary_path(src: Path | None = None) -> Path:
    return cache_root("node") / node_source_hash(src) / NODE_BINARY_NAME


def cached_dns_binary_path(src: Path | None = None) -> Path:
    return cache_root("dns") / source_hash(src or dns_source_dir()) / DNS_BINARY_NAME


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

    src = _checkout(source_dir(), "the control plane", "SERVEPLANE_CLUSTER_BINARY")
    version = kubernetes_version(src)
    return go_build_cached(
        what=f"the Kubernetes {version} control plane", src=src, target=cached_binary_path(src),
        ldflags=ldflags(version), package=".",
    )


def ensure_node_binary() -> Path:
    """Return the kubelet/kube-proxy multi-call binary, building it first if it is not cached.

    It is run as ``serveplane-node kubelet ...`` or ``serveplane-node kube-proxy ...``
    (or through a symlink of either name). ``SERVEPLANE_NODE_BINARY`` points at
    a prebuilt binary and skips the build.
    """
    override = os.environ.get("SERVEPLANE_NODE_BINARY")
    if override:
        return Path(override)
    src = _checkout(source_dir(), "the node components", "SERVEPLANE_NODE_BINARY")
    version = kubernetes_version(src)
    return go_build_cached(
        what=f"the Kubernetes {version} kubelet and kube-proxy", src=src, target=cached_node_binary_path(src),
        ldflags=ldflags(version), package=_NODE_PACKAGE,
    )


def ensure_dns_binary() -> Path:
    """Return the CoreDNS binary, building it first if it is not cached.

    ``SERVEPLANE_DNS_BINARY`` points at a prebuilt coredns and skips the build.
    """
    override = os.environ.get("SERVEPLANE_DNS_BINARY")
    if override:
        return Path(override)
    src = _checkout(dns_source_dir(), "CoreDNS", "SERVEPLANE_DNS_BINARY")
    version = coredns_version(src)
    return go_build_cached(
        what=f"CoreDNS {version}", src=src, target=cached_dns_binary_path(src),
        ldflags=dns_ldflags(version), package=".",
    )


def _checkout(src: Path, what: str, override_env: str) -> Path:
    if not (src / "go.mod").is_file():
        raise RuntimeError(
            f"{src} not found: building {what} needs a source checkout of serveplane "
            f"(or set {override_env} to a prebuilt binary)"
        )
    return src


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


def main(argv: list[str] | None = None) -> None:
    """`python -m serveplane.localcluster.build` prebuilds (e.g. in CI) and prints the control plane's path;
    with ``--all`` it builds the node and DNS binaries too and prints one path a line."""
    parser = argparse.ArgumentParser(prog="python -m serveplane.localcluster.build", description=main.__doc__)
    parser.add_argument("--all", action="store_true", help="also build kubelet/kube-proxy and CoreDNS")
    args = parser.parse_args(argv)
    builders = [ensure_binary, ensure_node_binary, ensure_dns_binary] if args.all else [ensure_binary]
    for build in builders:
        started = time.monotonic()
        path = build()
        # Printed as each finishes, so a later failure still leaves the earlier paths on stdout; the time is
        # for the set-up log (a cached binary takes a fraction of a second).
        print(path, flush=True)
        _log(f"{path.name}: {time.monotonic() - started:.1f} s (built, or found in the cache)")


if __name__ == "__main__":
    main()
