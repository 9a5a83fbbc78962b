"""The code's shape, as the house style asks: no function in the operator or the runtime over about 60 lines, and
the round's stages in one place."""

from __future__ import annotations

import ast
from pathlib import Path

from serveplane.operator import planner

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60


def long_functions(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LIMIT:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_of_the_operator_or_the_runtime_is_over_60_lines() -> None:
    assert long_functions(ROOT / "operator") + long_functions(ROOT / "runtime") == []


def test_the_stage_order_is_written_once_and_every_stage_is_a_function_of_the_stages_package() -> None:
    names = [stage.name for stage in planner.STAGES]
    assert len(names) == len(set(names))
    for stage in planner.STAGES:
        module = stage.run.__module__
        assert module.startswith("serveplane.operator.stages.") or module == planner.__name__, (stage.name, module)
    order = [s.name for s in planner.STAGES]
    # The documented semantics: the submissions come after everything that moves pods and before the statuses.
    assert order.index("submission to the active head") < order.index("upgrade: old pods") < order.index(
        "cluster status"
    )
