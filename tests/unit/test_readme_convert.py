"""The README's side-by-side ("Coming from KubeRay") is what `serveplane convert` really prints for that sample."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "fixtures" / "kuberay" / "ray-service.mobilenet.yaml"


def side_by_side() -> tuple[str, str]:
    section = (ROOT / "README.md").read_text().split("## Coming from KubeRay", 1)[1].split("\n## ", 1)[0]
    left, right = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    return left, right


def test_the_right_column_is_the_commands_output() -> None:
    command = Path(sys.executable).parent / "serveplane"
    printed = subprocess.run([str(command), "convert", str(SAMPLE)], capture_output=True, text=True, check=True).stdout
    assert side_by_side()[1] == printed


def test_the_left_column_is_the_sample_without_its_comments() -> None:
    assert yaml.safe_load(side_by_side()[0]) == yaml.safe_load(SAMPLE.read_text())
