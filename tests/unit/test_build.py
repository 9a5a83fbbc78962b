"""The cache keys of the locally built Go binaries: each covers its own sources and nothing else."""
from __future__ import annotations

from pathlib import Path

import pytest

from serveplane.localcluster import build


@pytest.fixture
def module(tmp_path: Path) -> Path:
    """A stand-in for e2e/cluster: go.mod, go.sum, the control plane's main and the node's main."""
    (tmp_path / "go.mod").write_text("module serveplane.dev/e2e/cluster\n\nrequire k8s.io/kubernetes v1.37.2\n")
    (tmp_path / "go.sum").write_text("k8s.io/kubernetes v1.37.2 h1:x\n")
    (tmp_path / "main.go").write_text("package main\n")
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "main.go").write_text("package main\n")
    return tmp_path


def test_a_node_source_change_moves_only_the_node_key(module: Path) -> None:
    cluster_key, node_key = build.source_hash(module), build.node_source_hash(module)
    (module / "node" / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert build.node_source_hash(module) != node_key
    assert build.source_hash(module) == cluster_key


def test_a_control_plane_source_change_moves_only_the_control_plane_key(module: Path) -> None:
    cluster_key, node_key = build.source_hash(module), build.node_source_hash(module)
    (module / "etcd.go").write_text("package main\n")
    assert build.source_hash(module) != cluster_key
    assert build.node_source_hash(module) == node_key


@pytest.mark.parametrize("name", ["go.mod", "go.sum"])
def test_the_shared_module_files_move_both_keys(module: Path, name: str) -> None:
    cluster_key, node_key = build.source_hash(module), build.node_source_hash(module)
    with (module / name).open("a") as f:
        f.write("// changed\n")
    assert build.source_hash(module) != cluster_key
    assert build.node_source_hash(module) != node_key


def test_the_keys_differ_although_both_mains_are_equal(module: Path) -> None:
    # The file's path inside the module is hashed, not only its content: main.go and node/main.go hold the same
    # text here, yet they are different binaries' sources.
    assert build.source_hash(module) != build.node_source_hash(module)


def test_each_binary_has_its_own_cache_folder(module: Path, tmp_path_factory: pytest.TempPathFactory,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    cluster, node = build.cached_binary_path(module), build.cached_node_binary_path(module)
    assert (cluster.parent.parent.name, cluster.parent.name) == ("cluster", build.source_hash(module))
    assert (node.parent.parent.name, node.parent.name) == ("node", build.node_source_hash(module))
    assert node.name == build.NODE_BINARY_NAME


def test_the_dns_version_comes_from_its_go_mod(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module serveplane.dev/e2e/dns\n\nrequire github.com/coredns/coredns v1.15.0\n")
    assert build.coredns_version(tmp_path) == "v1.15.0"
    assert build.dns_ldflags("v1.15.0").endswith("-X github.com/coredns/coredns/coremain.GitCommit=v1.15.0")
