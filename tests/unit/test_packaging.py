"""Every Python package folder of the project is in pyproject.toml's package list: setuptools installs only those,
so a folder missing there is absent from the images (`pip install .`) though the editable install finds it."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found - listed == set(), "package folders pyproject.toml does not install"
    assert listed - found == set(), "listed packages with no folder"
