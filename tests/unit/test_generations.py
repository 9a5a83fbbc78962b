"""Table tests of the generations' pure decisions: which generation is which, and each one's capacity."""

from __future__ import annotations

from typing import Any

import pytest

from serveplane.operator import generations
from serveplane.operator.manifests import common


def pod(generation: str | None, *, serving: bool = True, ready: bool = True, head: bool = False) -> dict[str, Any]:
    labels = {common.NODE_TYPE_LABEL: "head" if head else "worker"}
    if generation is not None:
        labels[common.GENERATION_LABEL] = generation
    if serving:
        labels[common.PROXY_LABEL] = common.PROXY_HEALTHY
    return {
        "metadata": {"name": f"p-{generation}-{id(labels)}", "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


@pytest.mark.parametrize(
    ("target", "stored", "present", "expected"),
    [
        ("new", None, [], ("new", None, ())),  # a new cluster
        ("a", "a", ["a"], ("a", None, ())),  # steady
        ("b", "a", ["a"], ("a", "b", ())),  # an upgrade starts
        ("b", "a", ["a", "b"], ("a", "b", ())),  # under way
        ("c", "a", ["a", "b"], ("a", "c", ("b",))),  # the spec changed again: b is superseded
        ("a", "a", ["a", "b"], ("a", None, ("b",))),  # reverted: b goes
        ("b", "a", ["b"], ("b", None, ())),  # the old generation is gone (Recreate): the new one is active
        ("b", None, [None], ("", "b", ())),  # pods from before generations: upgraded like any other
        ("b", "b", ["a", "b"], ("b", None, ("a",))),  # switched: the old one retires
    ],
)
def test_roles(target: str, stored: str | None, present: list[str | None], expected: tuple[Any, ...]) -> None:
    roles = generations.roles(target=target, stored_active=stored, pods=[pod(g) for g in present])
    assert (roles.active, roles.pending, roles.retiring) == expected


def gen(serving: int, idle: int = 0) -> generations.Generation:
    pods = [pod("g") for _ in range(serving)] + [pod("g", serving=False) for _ in range(idle)]
    return generations.Generation(pods=pods, report=None, applied=True)


@pytest.mark.parametrize(
    ("active", "pending", "released", "expected"),
    [
        (gen(3), gen(0, 1), False, {"active": None, "pending": 25.0}),  # its head's share once it serves
        (gen(3), gen(1), True, {"active": 75.0, "pending": 25.0}),
        (gen(2, 1), gen(2), True, {"active": 50.0, "pending": 50.0}),  # a drained proxy takes no traffic
        (gen(1), gen(2), True, {"active": 33.33, "pending": 66.67}),
        (gen(0), gen(3), True, {"active": None, "pending": None}),
    ],
)
def test_capacity_is_the_share_of_serving_endpoints(
    active: generations.Generation, pending: generations.Generation, released: bool, expected: dict[str, Any]
) -> None:
    assert generations.capacities(active, pending, released) == expected
