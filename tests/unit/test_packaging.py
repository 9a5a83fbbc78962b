"""The two distributions: `serveplane` (pyproject.toml: the operator, the runtime, the example apps) and
`serveplane-dev` (e2e/pyproject.toml: serveplane.localcluster, the local control plane and test kit).

Every package folder of the product is in pyproject.toml's package list (setuptools installs only those, so a folder
missing there is absent from the images' `pip install .` though the editable install finds it); nothing of e2e/ is in
the product's wheel or images; and the wheel, installed on its own with only its declared dependencies, runs its
commands (and `serveplane dev` says what is missing instead of a traceback). The wheel is built from exactly what
helm/Dockerfile.operator copies, with the venv's setuptools, offline; a few seconds in all.
"""
from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from serveplane.localcluster import images
from serveplane.operator import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("helm/Dockerfile.operator", "helm/Dockerfile.runtime")
# What only the test kit or the lint needs; a plain `pip install serveplane` must not depend on them.
DEV_ONLY = {"cryptography", "promql-parser", "lupa", "pytest", "mypy", "ruff", "serveplane-dev"}


def _setuptools(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text())["tool"]["setuptools"]


def _project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text())["project"]


def test_every_package_folder_is_installed() -> None:
    config = _setuptools(ROOT / "pyproject.toml")
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "package folders pyproject.toml does not install"
    assert listed - found == set(), "listed packages with no folder"


def test_the_product_packages_nothing_of_e2e() -> None:
    config = _setuptools(ROOT / "pyproject.toml")
    names = set(config["packages"]) | set(config["package-dir"]) | set(config.get("package-data", {}))
    assert not {name for name in names if name.startswith("serveplane.localcluster")}
    assert not [folder for folder in config["package-dir"].values() if folder.split("/")[0] == "e2e"]
    requirements = [Requirement(r) for r in _project(ROOT / "pyproject.toml")["dependencies"]]
    assert not {canonicalize_name(r.name) for r in requirements} & DEV_ONLY


def test_serveplane_dev_is_the_local_control_plane_in_the_same_namespace() -> None:
    pyproject = ROOT / "e2e" / "pyproject.toml"
    config = _setuptools(pyproject)
    assert _project(pyproject)["name"] == "serveplane-dev"
    assert config["packages"] == ["serveplane.localcluster"]
    assert config["package-dir"] == {"serveplane.localcluster": "localcluster"}
    # `serveplane` is a namespace shared by both distributions: neither may own it (no serveplane/__init__.py).
    for each in (_setuptools(ROOT / "pyproject.toml"), config):
        assert "serveplane" not in each["packages"] and "serveplane" not in each["package-dir"]


def _third_party_imports(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "serveplane"}


def test_serveplane_dev_declares_what_localcluster_imports() -> None:
    dependencies = _project(ROOT / "e2e" / "pyproject.toml")["dependencies"]
    declared = {canonicalize_name(Requirement(r).name) for r in dependencies}
    assert "serveplane" in declared
    by_module = importlib.metadata.packages_distributions()
    for module in _third_party_imports(ROOT / "e2e" / "localcluster"):
        assert {canonicalize_name(d) for d in by_module.get(module, [])} & declared, (
            f"e2e/localcluster imports {module}, which no dependency of serveplane-dev provides"
        )


def _instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions (continuations joined, comments dropped)."""
    text = re.sub(r"^\s*#.*\n", "", (ROOT / dockerfile).read_text(), flags=re.MULTILINE)
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_images_take_nothing_of_e2e(dockerfile: str) -> None:
    assert not [s for s in images.copy_sources((ROOT / dockerfile).read_text()) if s.split("/")[0] == "e2e"]
    for line in _instructions(dockerfile):
        assert "e2e" not in line and "serveplane-dev" not in line and "localcluster" not in line, line
    # And the build context itself leaves e2e/ out, so a COPY of it fails the build.
    assert "e2e" in (ROOT / ".dockerignore").read_text().split()


def test_both_images_install_the_same_sources() -> None:
    operator, runtime = (images.copy_sources((ROOT / d).read_text()) for d in DOCKERFILES)
    assert operator == runtime


# ---------------------------------------------------------------------------------------------------------------
# The wheel, built from the operator image's build context


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("context")
    for source in images.copy_sources((ROOT / DOCKERFILES[0]).read_text()):
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (context / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, context / source)
    out = tmp_path_factory.mktemp("wheel")
    # The venv's setuptools (make install upgrades it), no index: offline.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--wheel-dir", str(out), str(context)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("serveplane-*.whl")
    return built


def test_the_wheel_holds_the_product_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"serveplane", wheel.name.split("-py")[0] + ".dist-info"}
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    assert {"serveplane/operator", "serveplane/operator/api", "serveplane/runtime", "serveplane/examples"} <= packages
    assert "serveplane/operator/cli.py" in names
    assert "serveplane/__init__.py" not in names  # the namespace serveplane-dev shares
    assert not [name for name in names if name.startswith("serveplane/localcluster/") or "e2e" in name]


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.parser.Parser().parsestr(archive.read(metadata).decode())
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


def test_the_wheel_depends_on_no_dev_tool(wheel: Path) -> None:
    plain = {canonicalize_name(r.name) for r in _requires(wheel) if not r.marker or r.marker.evaluate({"extra": ""})}
    assert plain and not plain & DEV_ONLY


def _closure(requirements: list[Requirement]) -> Iterator[importlib.metadata.Distribution]:
    """The installed distributions `requirements` need, with theirs, as pip would install them (markers
    evaluated, extras followed), found in this venv."""
    seen: set[str] = set()
    todo = [(r, "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(requirement.name)
        dist = importlib.metadata.distribution(requirement.name)
        assert dist.version in requirement.specifier or not requirement.specifier, (requirement, dist.version)
        for wanted in sorted(requirement.extras):
            todo.extend((Requirement(r), wanted) for r in dist.requires or [])
        if key in seen:
            continue
        seen.add(key)
        yield dist
        todo.extend((Requirement(r), "") for r in dist.requires or [])


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (no editable finder, no serveplane-dev) and, linked from this venv,
    only the distributions its Requires-Dist needs: what `pip install serveplane` gives, offline and in seconds."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index",
         "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    deps = venv / "deps"
    deps.mkdir()
    for dist in _closure([r for r in _requires(wheel) if not r.marker or r.marker.evaluate({"extra": ""})]):
        assert dist.files is not None, f"{dist.metadata['Name']} has no RECORD"
        site = Path(str(dist.locate_file("")))
        for top in {file.parts[0] for file in dist.files} - {"..", "__pycache__"}:
            if not (deps / top).exists() and (site / top).exists():
                (deps / top).symlink_to(site / top)
    # A path in a .pth is only appended to sys.path: the .pth files of this venv (its editable finders) stay out.
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "zz-deps.pth").write_text(f"{deps}\n")
    return venv


def _run(venv: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / command[0]), *command[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_installed_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    result = _run(installed, "python", "-c",
                  "import serveplane.operator.cli as c, serveplane.examples as e; print(c.__file__, e.__file__)",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(path.startswith(str(installed)) for path in result.stdout.split()), result.stdout
    result = _run(installed, "python", "-c", "import serveplane.localcluster", cwd=tmp_path)
    assert result.returncode == 1 and "ModuleNotFoundError: No module named 'serveplane.localcluster'" in result.stderr


@pytest.mark.parametrize("command", [("operator", "--help"), ("convert", "--help"), ("--help",)])
def test_the_installed_commands_run(installed: Path, tmp_path: Path, command: tuple[str, ...]) -> None:
    result = _run(installed, "serveplane", *command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: serveplane")


def test_the_installed_render_renders_the_examples(installed: Path, tmp_path: Path) -> None:
    files = [str(ROOT / "examples" / name) for name in ("cluster.yaml", "hello.yaml")]
    result = _run(installed, "serveplane", "render", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "# --- Serve config" in result.stdout and "\nkind: Pod\n" in result.stdout


def test_the_installed_crds_are_the_checked_in_ones(installed: Path, tmp_path: Path) -> None:
    result = _run(installed, "serveplane", "crds", "--output", str(tmp_path / "crds"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = {path.name: path.read_text() for path in (tmp_path / "crds").iterdir()}
    assert written == {path.name: path.read_text() for path in (ROOT / "crds").glob("*.yaml")}


@pytest.mark.parametrize("action", [("up",), ("down",), ("kubectl", "get", "pods")])
def test_the_installed_dev_command_says_serveplane_dev_is_missing(
    installed: Path, tmp_path: Path, action: tuple[str, ...],
) -> None:
    result = _run(installed, "serveplane", "dev", *action, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", cli.DEV_MISSING + "\n")
