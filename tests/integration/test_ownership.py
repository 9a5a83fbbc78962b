"""Never take what is not ours, on the real API server with the operator under the chart's RBAC: a team's Service
and NetworkPolicy that happen to have the names a new ServeCluster's own would have are left exactly as they were,
the ServeCluster says so, and deleting the ServeCluster leaves them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import OperatorProcess
from serveplane.localcluster.testkit import condition, wait_for
from serveplane.localcluster.testkit import get_object as get


def apply(cp: ControlPlane, docs: list[dict[str, Any]], namespace: str) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def team_objects(namespace: str) -> list[dict[str, Any]]:
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "x1-serve", "namespace": namespace},
        "spec": {"type": "ClusterIP", "selector": {"team": "theirs"}, "ports": [{"name": "web", "port": 80}]},
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "x1-ray", "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"team": "theirs"}}, "policyTypes": ["Ingress"]},
    }
    return [service, policy]


def cluster(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster",
            "metadata": {"name": "x1", "namespace": namespace}, "spec": {"workerGroups": []}}


def test_a_teams_namesakes_are_never_taken_over_or_deleted(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str, operator_rounds: Callable[..., None]
) -> None:
    apply(controlplane, team_objects(namespace), namespace)
    before = {kind: get(controlplane, kind, name, namespace) for kind, name in
              (("service", "x1-serve"), ("networkpolicy", "x1-ray"))}
    apply(controlplane, [cluster(namespace)], namespace)

    def degraded() -> dict[str, Any] | None:
        found = condition(get(controlplane, "scl", "x1", namespace), "Degraded")
        return found if found and found.get("reason") == "NameTaken" else None

    message = wait_for("the ServeCluster to report the names taken", degraded)["message"]
    print(f"ServeCluster x1 Degraded: {message}")
    assert "Service x1-serve" in message and "NetworkPolicy x1-ray" in message
    # Its own objects under free names are made all the same.
    wait_for("the cluster's own head Service", lambda: get(controlplane, "service", "x1-head", namespace))
    operator_rounds(3)
    for (kind, name), old in zip((("service", "x1-serve"), ("networkpolicy", "x1-ray")), before.values(), strict=True):
        now = get(controlplane, kind, name, namespace)
        assert now["spec"] == old["spec"], f"{kind} {name} was changed"
        assert not now["metadata"].get("ownerReferences"), f"{kind} {name} was adopted"
        assert now["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"]
    events = controlplane.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=NameTaken",
                                  "-o", "name").stdout.split()
    assert len(events) >= 1
    controlplane.kubectl("delete", "scl", "x1", "-n", namespace, "--wait=true", "--timeout=60s")
    for kind, name in (("service", "x1-serve"), ("networkpolicy", "x1-ray")):
        assert get(controlplane, kind, name, namespace)["spec"] == before[kind]["spec"], f"{kind} {name} went"
