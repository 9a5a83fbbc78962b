"""Every admitted input gets an answer (issue 20, part 5), against the real API server: what the CRD refuses when a
ServeCluster is created (CEL rules and bounds), and the status the operator writes on what it admits but cannot
act on: a spec the models refuse (InvalidSpec), and a round that fails (pods Pod Security admission refuses)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from serveplane.localcluster.controlplane import ControlPlane, KubectlError
from serveplane.localcluster.operatorproc import OperatorProcess
from serveplane.localcluster.testkit import condition, wait_for
from serveplane.localcluster.testkit import get_object as get


def cluster(name: str = "adm", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "metadata": {"name": name},
            "spec": spec or {}}


def apply(cp: ControlPlane, doc: dict[str, Any], namespace: str, *extra: str) -> str:
    return cp.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=yaml.safe_dump(doc)).stdout


def limits(**values: Any) -> dict[str, Any]:
    return {"head": {"resources": {"limits": values}}}


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "a name of 53 characters": (cluster("a" * 53), "metadata.name: at most 52 characters"),
    "a name with a dot": (cluster("a.b"), "metadata.name: lowercase letters, digits and dashes"),
    "a name with a leading digit": (cluster("1abc"), "metadata.name: lowercase letters, digits and dashes"),
    "httpPort == grpcPort": (cluster(spec={"serve": {"httpPort": 9000, "grpcPort": 9000}}),
                             "httpPort and grpcPort must differ"),
    "grpcPort == the default httpPort": (cluster(spec={"serve": {"grpcPort": 8000}}),
                                         "httpPort and grpcPort must differ"),
    "cpu 1e1000000": (cluster(spec=limits(cpu="1e1000000")),
                      'spec.head.resources.limits[cpu]: Invalid value: "1e1000000": a Kubernetes quantity'),
    "cpu 1e5000": (cluster(spec=limits(cpu="1e5000")), "a Kubernetes quantity from 0 to below 2^63-1"),
    "memory 8Ei": (cluster(spec=limits(memory="8Ei")), "a Kubernetes quantity from 0 to below 2^63-1"),
    "a negative cpu": (cluster(spec=limits(cpu="-1")), "a Kubernetes quantity from 0 to below 2^63-1"),
    "no quantity": (cluster(spec=limits(cpu="2 cores")), "a Kubernetes quantity from 0 to below 2^63-1"),
    "an env name that is an object": (cluster(spec={"head": {"env": [{"name": {"a": 1}}]}}),
                                      "spec.head.env[0].name"),
    "an env value that is a number": (cluster(spec={"head": {"env": [{"name": "A", "value": 1}]}}),
                                      "spec.head.env[0].value in body must be of type string"),
    "65 worker groups": (cluster(spec={"workerGroups": [{"name": f"g{i}"} for i in range(65)]}),
                         "must have at most 64 items"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_crd_refuses_on_create(controlplane: ControlPlane, operator: OperatorProcess, case: str) -> None:
    doc, message = REFUSED[case]
    with pytest.raises(KubectlError) as failure:
        apply(controlplane, doc, "default", "--dry-run=server")
    assert message in failure.value.stderr, failure.value.stderr


@pytest.mark.parametrize(
    "doc",
    [cluster("a" * 52), cluster(spec={"serve": {"httpPort": 8080, "grpcPort": 9090}}),
     cluster(spec=limits(cpu="500m", memory="7Ei", **{"nvidia.com/gpu": 1})),
     cluster(spec={"head": {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}})],
    ids=["52 characters", "distinct ports", "quantities in range", "env from a field"],
)
def test_their_good_neighbours_are_admitted(controlplane: ControlPlane, operator: OperatorProcess,
                                            doc: dict[str, Any]) -> None:
    assert "created (server dry run)" in apply(controlplane, doc, "default", "--dry-run=server")


def test_an_admitted_spec_the_models_refuse_gets_a_status_naming_the_field(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    """podTemplate is free-form, so the API server admits a volume named by a list; the merge by name would have
    raised TypeError (unhashable) every round, with no status at all."""
    apply(controlplane, cluster(spec={"head": {"podTemplate": {"spec": {"volumes": [{"name": ["x"]}]}}}}), namespace)

    def answered() -> dict[str, Any] | None:
        obj = get(controlplane, "scl", "adm", namespace)
        status = (obj or {}).get("status") or {}
        return obj if obj and status.get("observedGeneration") == obj["metadata"]["generation"] else None

    obj = wait_for("the ServeCluster's status at its generation", answered, timeout=30)
    degraded = condition(obj, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec"), degraded
    assert "volumes[0].name must be a non-empty string" in degraded["message"]
    assert controlplane.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_a_failing_round_becomes_a_degraded_condition_with_the_api_servers_answer(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    """Pod Security admission (restricted) refuses the Ray pods: each round fails at the pod's creation, and the
    cluster says why, instead of only the operator's log."""
    start = operator.log_path.stat().st_size
    controlplane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply(controlplane, cluster(), namespace)

    def degraded() -> dict[str, Any] | None:
        obj = get(controlplane, "scl", "adm", namespace)
        found = condition(obj, "Degraded")
        return obj if found.get("status") == "True" and "PodSecurity" in found.get("message", "") else None

    try:
        obj = wait_for("a Degraded condition quoting Pod Security admission", degraded, timeout=60)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert "violates PodSecurity" in condition(obj, "Degraded")["message"]
    finally:
        controlplane.kubectl("delete", "scl", "adm", "-n", namespace, "--wait=true", "--timeout=60s")
        _wait_for_a_quiet_log(operator)
        operator.excuse(start, operator.log_path.stat().st_size)  # the refused pods are this test's doing


def _wait_for_a_quiet_log(operator: OperatorProcess, quiet_s: float = 3.0, timeout: float = 60.0) -> None:
    """Until the operator's log has not grown for `quiet_s`: the cluster's loop has ended."""
    deadline = time.monotonic() + timeout
    size, since = operator.log_path.stat().st_size, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = operator.log_path.stat().st_size
        if now != size:
            size, since = now, time.monotonic()
