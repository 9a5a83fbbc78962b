"""Shared pytest fixtures: a real local Kubernetes control plane for integration tests.

And CI's rule: under `CI=true` (`.ci/run` sets it), a test that needs a part of the machine (Ray, the control
plane, the node: markers `ray`, `controlplane`, `e2e`) or a module (`pytest.importorskip`) and skips for want of it
fails instead, with the skip's reason, so a missing part can never pass as a quiet skip.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from serveplane.localcluster.controlplane import ControlPlane

# tests/unit/test_ci_skips.py runs the hooks below in a pytest of its own.
pytest_plugins = ("pytester",)

PART_MARKERS = ("ray", "controlplane", "e2e")
"""Markers of tests that need a part of the machine: under CI such a test may not skip."""


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    """One control plane (etcd, apiserver, controller-manager, scheduler) per test session.

    Builds or reuses the cached binary, runs in a temp state dir that is
    removed afterwards, and is always stopped, even when tests fail. Set
    SERVEPLANE_CONTROLPLANE_STATE_DIR to keep its logs and data for a look.
    """
    keep = os.environ.get("SERVEPLANE_CONTROLPLANE_STATE_DIR")
    cp = ControlPlane(keep) if keep else ControlPlane()
    with cp:
        yield cp


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Anything that uses the fixture is a control-plane test, so
    # `-m "not controlplane"` skips them without each test remembering the mark.
    for item in items:
        if "controlplane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.controlplane)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _missing_module(reason: str) -> bool:
    """The reasons `pytest.importorskip` gives."""
    return reason.startswith("could not import ") or ", required is: " in reason


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # tryfirst: the outermost wrapper, so it sees the report after pytest's own xfail handling.
    report = yield
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return report
    reason = _skip_reason(report)
    parts = [name for name in PART_MARKERS if item.get_closest_marker(name)]
    if parts or _missing_module(reason):
        needs = f"needs {', '.join(parts)}" if parts else "needs a module"
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may be missing ({needs}): {reason}"
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # A whole module skipped at import (a module-level importorskip or skip) is never what CI means to run.
    report = yield
    if report.skipped and in_ci():
        report.outcome = "failed"
        report.longrepr = f"skipped whole under CI, where nothing may be missing: {_skip_reason(report)}"
    return report
