"""Build, or reuse from the cache, the `helm` binary the chart tests use.

``e2e/helm`` is a Go module without Go code of its own: its go.mod requires helm.sh/helm/v3 and names
``helm.sh/helm/v3/cmd/helm`` as a ``tool``, so ``go build helm.sh/helm/v3/cmd/helm`` inside it builds Helm's own
CLI at exactly the versions its go.sum pins. As with the control plane (build.py), the binary is cached under
``~/.cache/serveplane/helm/<sha256 of go.sum and go.mod>/helm`` and reused by every later run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .build import cache_root as _cluster_cache_root
from .build import go_build_cached, required_version, source_hash
from .controlplane import ControlPlane

BINARY_NAME = "helm"
PACKAGE = "helm.sh/helm/v3/cmd/helm"


def cache_root() -> Path:
    """``~/.cache/serveplane/helm`` (next to the control plane's ``cluster``; XDG_CACHE_HOME is honoured)."""
    return _cluster_cache_root().parent / "helm"


def source_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "helm"


def ldflags(src: Path | None = None) -> str:
    """What Helm's own Makefile stamps: its version, and the Kubernetes version of its client-go.

    Without them `helm version` says v3.22 and `.Capabilities.KubeVersion` in `helm template` is v1.20.
    """
    go_mod = (src or source_dir()) / "go.mod"
    version = required_version(go_mod, "helm.sh/helm/v3")
    client_go = required_version(go_mod, "k8s.io/client-go")  # v0.37.0 -> Kubernetes 1.37
    major, minor = str(int(client_go.lstrip("v").split(".")[0]) + 1), client_go.split(".")[1]
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={version}",
             "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def cached_binary_path(src: Path | None = None) -> Path:
    return cache_root() / source_hash(src or source_dir()) / BINARY_NAME


def ensure_helm() -> Path:
    """Return the helm binary, building it first if it is not cached.

    ``SERVEPLANE_HELM_BINARY`` points at a prebuilt helm and skips the build.
    """
    override = os.environ.get("SERVEPLANE_HELM_BINARY")
    if override:
        return Path(override)
    src = source_dir()
    if not (src / "go.mod").is_file():
        raise RuntimeError(f"{src} not found: building helm needs a source checkout (or set SERVEPLANE_HELM_BINARY)")
    return go_build_cached(
        what="helm", src=src, target=cached_binary_path(src), ldflags=ldflags(src), package=PACKAGE
    )


class Helm:
    """The helm binary with its own config, cache and data dirs, talking to the control plane as admin."""

    def __init__(self, cp: ControlPlane, home: Path) -> None:
        self.binary = ensure_helm()
        self.env = dict(
            os.environ,
            KUBECONFIG=str(cp.kubeconfig),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_DATA_HOME=str(home / "data"),
        )

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=600)
        if check and result.returncode != 0:
            raise RuntimeError(f"{argv} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result


if __name__ == "__main__":
    print(ensure_helm())
