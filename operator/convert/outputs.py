"""PURE: what became of the input: the paths into it, the notes on what was not converted, the output documents.

Every step records on an Output which input paths it mapped and which it noted, so a test can check that each leaf
of the input is one or the other: nothing is dropped silently.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ROOT = ""
"""The path of a whole input document; it covers every part of it."""
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def child(path: str, key: str | int) -> str:
    """The path of `key` under `path`: `a.b`, `a[0]`, or `a["ray.io/ft-enabled"]` for a key with dots or slashes."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _PLAIN_KEY.fullmatch(key) else f"[{json.dumps(key)}]"
    if part.startswith("["):
        return f"{path}{part}"
    return f"{path}.{part}" if path else part


def within(path: str, ancestor: str) -> bool:
    """Whether `path` is `ancestor` or below it (the whole document's path, ROOT, covers everything)."""
    return ancestor == ROOT or path == ancestor or path.startswith((ancestor + ".", ancestor + "["))


@dataclass(frozen=True)
class Note:
    path: str
    reason: str


@dataclass
class Output:
    """One document of the output, and what became of the parts of the input it stands for."""

    obj: dict[str, Any] | None
    source: str
    """The input document it comes from, e.g. `RayService rayservice-sample`."""
    mapped: set[str] = field(default_factory=set)
    notes: list[Note] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    disabled: bool = False
    """Printed commented out: its model refuses it (the notes say why)."""

    def map(self, path: str) -> None:
        self.mapped.add(path)

    def note(self, path: str, reason: str) -> None:
        self.notes.append(Note(path, reason))

    def remark(self, text: str) -> None:
        self.remarks.append(text)

    def forget(self, path: str) -> None:
        """Take back what was recorded as mapped under `path` (its value was refused after all)."""
        self.mapped = {p for p in self.mapped if not within(p, path)}

    def absorb(self, other: Output) -> None:
        """Take over what `other`, a document that will not be printed, recorded."""
        self.mapped |= other.mapped
        self.notes += other.notes
        self.remarks += other.remarks


@dataclass
class Conversion:
    outputs: list[Output]
    sources: list[str]
    """Per input document, in order, what it was: `RayService name`, `passed through: Secret name`, ..."""
