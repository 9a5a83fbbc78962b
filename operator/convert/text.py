"""PURE: a Conversion as the YAML text `serveplane convert` prints, with its notes and remarks as comments.

Apart from the conversion so that the data (what was mapped, what noted) is tested as data; the YAML goes through
yamltext so that kubectl reads back what is written.
"""
from __future__ import annotations

import textwrap

from .. import yamltext
from .outputs import Conversion, Output

COMMENT_WIDTH = 118


def _comment(text: str) -> str:
    """`text` as YAML comment lines of at most COMMENT_WIDTH characters (a path is never broken: no spaces in it)."""
    lines = textwrap.wrap(" ".join(text.split()), COMMENT_WIDTH - 2, break_long_words=False, break_on_hyphens=False)
    return "\n".join(("# " if index == 0 else "#   ") + line for index, line in enumerate(lines))


def document_text(out: Output) -> str:
    """One document: where it comes from, what was not converted and why, remarks, then the YAML (commented out
    when its model refuses it)."""
    lines = [_comment(f"from {out.source}" if out.obj is not None or not out.notes else out.source)]
    lines += [_comment(f"not converted: {note.path or '(the whole document)'}: {note.reason}") for note in out.notes]
    lines += [_comment(f"note: {remark}") for remark in out.remarks]
    body = yamltext.dump(out.obj) if out.obj is not None else ""
    if out.disabled:
        body = "".join(f"# {line}\n" for line in body.splitlines())
    return "\n".join(lines) + "\n" + body


def to_yaml(conversion: Conversion) -> str:
    """The conversion as multi-document YAML, for `kubectl apply -f -`."""
    return "---\n".join(document_text(out) for out in conversion.outputs)
