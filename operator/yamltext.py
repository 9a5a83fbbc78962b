"""PURE: YAML text that kubectl reads back as it was written.

PyYAML writes YAML 1.1, kubectl reads YAML 1.2: a string such as 8403e57 (a hash: an exponent without a dot) or 0o17
is plain text to the first and a number to the second, so it is quoted here.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

_NUMBER_TO_KUBECTL = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+|0o[0-7]+")


class KubectlDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings kubectl would take for numbers."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if _NUMBER_TO_KUBECTL.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


KubectlDumper.add_representer(str, _string)


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=KubectlDumper, sort_keys=False)


def dump_all(values: Iterable[Any]) -> str:
    return yaml.dump_all(values, Dumper=KubectlDumper, sort_keys=False)
