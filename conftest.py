"""Shared pytest fixtures: a real local Kubernetes control plane for integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from serveplane.localcluster.controlplane import ControlPlane


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
