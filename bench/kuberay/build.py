"""KubeRay's ray-operator, built from its Go module (the module proxy's zip of the tagged release) with the
machine's Go, and cached under ~/.cache/serveplane/kuberay/<version>/.

Nothing is pulled from a container registry: the binary runs on the host (see operator.py), and its CRDs and RBAC
are read from the module's own config/ directory, as its kustomize overlays would apply them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MODULE = "github.com/ray-project/kuberay/ray-operator"
VERSION = "v1.5.0"
BINARY = "ray-operator"
# The files of the module that the bench applies; their absence means a different layout than the one read here.
CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")
RBAC_FILES = (
    "service_account.yaml", "role.yaml", "role_binding.yaml",
    "leader_election_role.yaml", "leader_election_role_binding.yaml",
)


def _say(message: str) -> None:
    print(f"[bench.kuberay] {message}", file=sys.stderr, flush=True)


def cache_dir(version: str = VERSION) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "serveplane" / "kuberay" / version


@dataclass(frozen=True)
class KubeRay:
    """A built operator and the module source it came from."""

    version: str
    binary: Path
    source: Path  # the module's directory in the Go module cache (read-only)

    @property
    def crds(self) -> list[Path]:
        return [self.source / "config" / "crd" / "bases" / name for name in CRD_FILES]

    @property
    def rbac(self) -> list[Path]:
        return [self.source / "config" / "rbac" / name for name in RBAC_FILES]

    def check(self) -> None:
        """The binary runs and the CRD and RBAC files are where this bench reads them."""
        missing = [str(p) for p in (*self.crds, *self.rbac) if not p.is_file()]
        if missing:
            raise RuntimeError(f"KubeRay {self.version}'s module lacks: {', '.join(missing)}")
        # Its flag set is the first thing main() parses: --help proves the binary starts on this machine.
        run = subprocess.run([str(self.binary), "--help"], capture_output=True, text=True, timeout=60)
        if "-use-kubernetes-proxy" not in run.stderr + run.stdout:
            raise RuntimeError(f"{self.binary} --help did not list its flags:\n{run.stderr[-2000:]}")


def _go_env() -> dict[str, str]:
    # A static binary (no cgo), the module's own go.mod and go.sum as they are (no workspace, no edits: the module
    # cache is read-only, and the tag has no replace directives).
    return dict(os.environ, CGO_ENABLED="0", GOWORK="off", GOFLAGS="-mod=readonly -buildvcs=false")


def module_source(version: str = VERSION) -> Path:
    """The module's directory in the Go module cache, downloaded through the module proxy if missing."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
        capture_output=True, text=True, env=_go_env(), cwd=Path.home(),
    )
    info = json.loads(out.stdout) if out.stdout.strip() else {}
    if out.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {info.get('Error') or out.stderr}")
    return Path(info["Dir"])


def ensure(version: str = VERSION) -> KubeRay:
    """The operator of `version`, built now if the cache lacks it (a few minutes cold on 2 cores, at nice 19)."""
    if shutil.which("go") is None:
        raise RuntimeError("go is needed to build KubeRay's operator")
    source = module_source(version)
    target = cache_dir(version) / BINARY
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{BINARY}.{os.getpid()}.tmp")
        # main.go at the module's root is package main: the operator's entry point (KubeRay's Dockerfile builds it).
        cmd = ["nice", "-n", "19", "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(tmp), "."]
        _say(f"building {MODULE}@{version} (cold: several minutes)")
        started = time.monotonic()
        result = subprocess.run(cmd, cwd=source, env=_go_env(), stdout=2, stderr=2)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"go build of {MODULE}@{version} failed (exit {result.returncode})")
        os.replace(tmp, target)  # last, so a half-written binary is never taken for a cached one
        _say(f"built {target} in {time.monotonic() - started:.0f} s")
    built = KubeRay(version=version, binary=target, source=source)
    built.check()
    return built
