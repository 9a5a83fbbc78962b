"""The node images' cache keys (serveplane.localcluster.images): what changes a key and what does not. No builds."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from serveplane.localcluster import images

REPO = images.repo_root()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the images are built from (recipes and every input), to edit freely."""
    root = tmp_path / "repo"
    inputs = {s.recipe for s in images.SPECS} | {images.ROOTFS_ARGS}
    for image in images.SPECS:
        inputs.update(images.image_inputs(image, REPO))
    for relative in sorted(inputs):
        source, target = REPO / relative, root / relative
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_keys_are_stable_and_independent_of_where_the_checkout_lives(tree: Path) -> None:
    assert images.image_keys(tree) == images.image_keys(tree)
    assert images.image_keys(tree) == images.image_keys(REPO)
    assert len(set(images.image_keys(tree).values())) == len(images.SPECS) + 1  # every image and the rootfs


def test_a_changed_source_file_changes_the_project_images_only(tree: Path) -> None:
    before = images.image_keys(tree)
    path = tree / "operator" / "settings.py"
    path.write_text(path.read_text() + "\n# edited\n")
    assert changed(before, images.image_keys(tree)) == {"operator", "runtime"}


def test_a_new_file_in_a_copied_directory_changes_the_key(tree: Path) -> None:
    before = images.image_keys(tree)
    (tree / "examples" / "apps" / "new_app.py").write_text("x = 1\n")
    assert changed(before, images.image_keys(tree)) == {"operator", "runtime"}


def test_bytecode_caches_do_not_change_any_key(tree: Path) -> None:
    before = images.image_keys(tree)
    for package in ("operator", "runtime", "examples/apps"):
        cache = tree / package / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / "module.cpython-311.pyc").write_bytes(b"\x00bytecode")
        (cache / "notes.txt").write_text("anything under __pycache__ is left out\n")
    (tree / "operator" / "stray.pyc").write_bytes(b"\x00bytecode")
    assert images.image_keys(tree) == before


def test_a_base_recipe_change_is_chained_into_its_children(tree: Path) -> None:
    before = images.image_keys(tree)
    recipe = tree / "e2e/images/python/Containerfile"
    recipe.write_text(recipe.read_text() + "# edited\n")
    assert changed(before, images.image_keys(tree)) == {"python", "operator"}

    before = images.image_keys(tree)
    recipe = tree / "e2e/images/ray/Containerfile"
    recipe.write_text(recipe.read_text() + "# edited\n")
    assert changed(before, images.image_keys(tree)) == {"ray", "runtime"}


def test_the_root_filesystem_recipe_is_chained_into_both_bases_and_their_children(tree: Path) -> None:
    before = images.image_keys(tree)
    args = tree / images.ROOTFS_ARGS
    args.write_text(args.read_text().replace("bookworm\n", "trixie\n"))
    assert changed(before, images.image_keys(tree)) == {"rootfs", "python", "ray", "operator", "runtime"}


def test_the_project_dockerfile_and_its_ignore_file_are_inputs(tree: Path) -> None:
    before = images.image_keys(tree)
    dockerfile = tree / "helm/Dockerfile.runtime"
    dockerfile.write_text(dockerfile.read_text() + "# edited\n")
    assert changed(before, images.image_keys(tree)) == {"runtime"}

    before = images.image_keys(tree)
    ignore = tree / ".dockerignore"
    ignore.write_text(ignore.read_text() + "*.md\n")
    assert changed(before, images.image_keys(tree)) == {"operator", "runtime"}


def test_the_go_programs_sources_are_inputs(tree: Path) -> None:
    before = images.image_keys(tree)
    main = tree / images.PAUSE_MODULE / "main.go"
    main.write_text(main.read_text() + "// edited\n")
    assert changed(before, images.image_keys(tree)) == {"pause"}

    before = images.image_keys(tree)
    main = tree / images.DNS_MODULE / "main.go"
    main.write_text(main.read_text() + "// edited\n")
    assert changed(before, images.image_keys(tree)) == {"coredns"}


def test_cache_key_covers_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    (tmp_path / "a").write_text("1")
    key = images.cache_key(root=tmp_path, recipe="Containerfile", inputs=["a"])
    assert key == images.cache_key(root=tmp_path, recipe="Containerfile", inputs=["a", "a"])
    assert key != images.cache_key(root=tmp_path, recipe="Containerfile", inputs=["a"], base_key="0" * 64)
    assert key != images.cache_key(root=tmp_path, recipe="Containerfile", inputs=["a"], extra=["x:1"])
    (tmp_path / "a").rename(tmp_path / "b")
    assert key != images.cache_key(root=tmp_path, recipe="Containerfile", inputs=["b"])
    with pytest.raises(FileNotFoundError):
        images.cache_key(root=tmp_path, recipe="Containerfile", inputs=["a"])


def test_copy_sources_reads_the_dockerfiles_copy_lines() -> None:
    expected = ["pyproject.toml", "README.md", "operator", "runtime", "examples/apps"]
    for name in ("operator", "runtime"):
        assert images.copy_sources((REPO / f"helm/Dockerfile.{name}").read_text()) == expected
    text = (
        "FROM x AS build\n# COPY commented/ out/\nCOPY --chown=1:1 \\\n    a.txt ./b/ /dst/\n"
        'ADD ["c d", "/e"]\nCOPY --from=build /bin/x /x\nRUN echo COPY nothing\n'
    )
    assert images.copy_sources(text) == ["a.txt", "b", "c d"]


def _from_images(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", (REPO / dockerfile).read_text(), re.MULTILINE)


def test_the_bases_carry_the_names_the_dockerfiles_start_from() -> None:
    for child in ("operator", "runtime"):
        image = images.spec(child)
        assert image.base is not None
        (name,) = _from_images(image.recipe)
        assert images.spec(image.base).reference == _qualified(name)


def _qualified(name: str) -> str:
    """A short name as containerd and podman normalise it: docker.io/, and library/ for a one-part path."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


def test_the_ray_stand_in_installs_the_version_pyproject_pins() -> None:
    runtime_deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["runtime"]
    (pin,) = [dep for dep in runtime_deps if dep.startswith("ray[serve]==")]
    version = pin.removeprefix("ray[serve]==")
    assert f'"{pin}"' in (REPO / images.spec("ray").recipe).read_text()
    assert images.spec("ray").tag == f"{version}-py311"


def test_the_coredns_tag_is_the_version_its_module_builds() -> None:
    match = re.search(r"github\.com/coredns/coredns (v\S+)", (REPO / images.DNS_MODULE / "go.mod").read_text())
    assert match is not None
    assert images.spec("coredns").tag == match.group(1)
