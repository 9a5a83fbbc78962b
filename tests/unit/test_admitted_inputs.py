"""Every spec the API server admits gets an answer (issue 20, part 5): the next round ends with a status at the
spec's generation, with a Degraded condition naming the field when something is wrong; the planner never raises.

Each bad case below made a round raise before (decimal.Overflow, Python's 4,300-digit limit, an unhashable name
in the pod builder) or planned objects the API server refuses (a duplicate Service port, a name too long for the
Services named after the cluster), so the cluster had no status at all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from serveplane.operator import conditions, planner
from serveplane.operator.actions import WriteStatus
from serveplane.operator.api import crdgen, quantity
from serveplane.operator.api.cluster import (
    MAX_WORKER_GROUPS,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    QUANTITY_RULE,
    ServeClusterSpec,
)
from serveplane.operator.api.kinds import SERVE_CLUSTER
from serveplane.operator.manifests import autoscaler, common, pods
from serveplane.operator.snapshot import Snapshot
from serveplane.operator.stages import nocluster
from serveplane.operator.stages.context import Settings

NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)
GENERATION = 7
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def ray(**fields: Any) -> dict[str, Any]:
    """A head podTemplate whose Ray container has these fields."""
    return {"head": {"podTemplate": {"spec": {"containers": [{"name": "ray", **fields}]}}}}


def template(**fields: Any) -> dict[str, Any]:
    return {"head": {"podTemplate": {"spec": fields}}}


def limits(**values: Any) -> dict[str, Any]:
    return {"head": {"resources": {"limits": values}}}


BAD_SPECS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("httpPort == grpcPort", {"serve": {"httpPort": 9000, "grpcPort": 9000}},
     ["spec.serve", "httpPort and grpcPort must differ (both are 9000)"]),
    ("grpcPort == the default httpPort", {"serve": {"grpcPort": 8000}}, ["spec.serve", "httpPort and grpcPort"]),
    ("cpu 1e1000000 (decimal.Overflow)", limits(cpu="1e1000000"),
     ["spec.head.resources", "limits.cpu: '1e1000000' is out of range"]),
    ("cpu 1e5000 (Python's 4,300-digit limit)", limits(cpu="1e5000"), ["limits.cpu: '1e5000' is out of range"]),
    ("cpu 1e5000 in a group's requests",
     {"workerGroups": [{"name": "g", "resources": {"requests": {"cpu": "1e5000"}}}]},
     ["spec.workerGroups.0.resources", "requests.cpu", "out of range"]),
    ("cpu 1e5000 in the podTemplate's Ray container", ray(resources={"limits": {"cpu": "1e5000"}}),
     ["spec.head.podTemplate.spec", "containers[ray].resources: limits.cpu", "out of range"]),
    ("an exponent of 5,000 digits", limits(cpu="1e" + "9" * 60), ["limits.cpu", "out of range"]),
    ("memory 8Ei, which Kubernetes caps", limits(memory="8Ei"), ["limits.memory: '8Ei' is out of range"]),
    ("a negative cpu", limits(cpu="-1"), ["limits.cpu: '-1' is negative"]),
    ("a negative integer gpu", limits(**{"nvidia.com/gpu": -1}), ["limits.nvidia.com/gpu: -1 is negative"]),
    ("a quantity longer than the CRD allows", limits(cpu="1" * 5000), ["limits.cpu: at most 64 characters"]),
    ("no quantity at all", limits(cpu="2 cores"), ["limits.cpu: '2 cores' is not a Kubernetes quantity"]),
    ("an env name that is an object", {"head": {"env": [{"name": {"a": 1}, "value": "x"}]}},
     ["spec.head.env.0.name"]),
    ("an env name that is a list", {"workerGroups": [{"name": "g", "env": [{"name": ["A"]}]}]},
     ["spec.workerGroups.0.env.0.name"]),
    ("an env value that is a number", {"head": {"env": [{"name": "A", "value": 1}]}}, ["spec.head.env.0.value"]),
    ("an env entry with a typo", {"head": {"env": [{"name": "A", "valeu": "1"}]}}, ["spec.head.env.0.valeu"]),
    ("an empty env name", {"head": {"env": [{"name": ""}]}}, ["spec.head.env.0.name"]),
    ("a volume whose name is a list", template(volumes=[{"name": ["x"], "emptyDir": {}}]),
     ["spec.head.podTemplate.spec", "volumes[0].name must be a non-empty string"]),
    ("a volume without a name", template(volumes=[{"emptyDir": {}}]), ["volumes[0].name"]),
    ("an init container whose name is an object", template(initContainers=[{"name": {"x": 1}, "image": "i"}]),
     ["initContainers[0].name"]),
    ("a sidecar whose name is a list", template(containers=[{"name": ["log"], "image": "i"}]),
     ["containers[0].name"]),
    ("a Ray container env name that is an object", ray(env=[{"name": {"a": 1}}]), ["containers[ray].env[0].name"]),
    ("a Ray container mount whose mountPath is a list", ray(volumeMounts=[{"name": "v", "mountPath": ["/x"]}]),
     ["containers[ray].volumeMounts[0].mountPath"]),
    ("a Ray container port whose name is an object", ray(ports=[{"name": {"a": 1}, "containerPort": 1}]),
     ["containers[ray].ports[0].name"]),
    ("more worker groups than the CRD allows",
     {"workerGroups": [{"name": f"g{i}"} for i in range(MAX_WORKER_GROUPS + 1)]}, ["spec.workerGroups"]),
]


def plan_for(k8s: Any, spec: dict[str, Any], name: str = "demo") -> Any:
    cluster = k8s.cluster(name, spec, generation=GENERATION)
    snap = Snapshot(namespace=k8s.namespace, name=name, cluster=cluster, now=NOW)
    return planner.plan_round(snap, Settings(image="ray:1"))


def cluster_status(plan: Any, name: str = "demo") -> dict[str, Any]:
    (patch,) = [a.patch for a in plan.actions if isinstance(a, WriteStatus) and a.name == name]
    return dict(patch)


@pytest.mark.parametrize(("spec", "fragments"), [(s, f) for _, s, f in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS])
def test_a_bad_spec_gets_a_status_at_its_generation_naming_the_field(k8s, spec, fragments):
    plan = plan_for(k8s, spec)
    assert [type(a).__name__ for a in plan.actions] == ["WriteStatus"], "nothing but the status is written"
    patch = cluster_status(plan)
    assert patch["observedGeneration"] == GENERATION
    degraded = conditions.find(patch["conditions"], conditions.DEGRADED)
    assert degraded is not None
    assert (degraded["status"], degraded["reason"], degraded["observedGeneration"]) == (
        "True", "InvalidSpec", GENERATION)
    for fragment in fragments:
        assert fragment in degraded["message"], degraded["message"]
    assert len(degraded["message"]) < 1000, "an error message quotes a value only up to a bound"
    ready = conditions.find(patch["conditions"], conditions.READY)
    assert ready is not None and ready["status"] == "False"


GOOD_NEIGHBOURS: list[tuple[str, dict[str, Any]]] = [
    ("other ports", {"serve": {"httpPort": 8080, "grpcPort": 9090}}),
    ("quantities in every form", limits(cpu="500m", memory="4Gi", **{"nvidia.com/gpu": 1, "x/y": "1e9"})),
    ("the largest quantity below the cap", limits(memory="7Ei")),
    ("an env entry from a field", {"head": {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}}),
    ("template lists with names, a port without one",
     ray(ports=[{"containerPort": 7000}], env=[{"name": "A", "value": "1"}],
         volumeMounts=[{"name": "v", "mountPath": "/v"}])),
    ("a volume and a sidecar", template(volumes=[{"name": "v", "emptyDir": {}}], containers=[{"name": "log"}])),
    ("as many worker groups as the CRD allows", {"workerGroups": [{"name": f"g{i}", "replicas": 0}
                                                                  for i in range(MAX_WORKER_GROUPS)]}),
]


@pytest.mark.parametrize(("spec",), [(s,) for _, s in GOOD_NEIGHBOURS], ids=[i for i, _ in GOOD_NEIGHBOURS])
def test_their_good_neighbours_are_planned_as_usual(k8s, spec):
    plan = plan_for(k8s, spec)
    assert len(plan.actions) > 1, "a valid spec gets its objects made"
    degraded = conditions.find(cluster_status(plan)["conditions"], conditions.DEGRADED)
    assert degraded is not None and degraded["reason"] != "InvalidSpec", degraded


def test_an_env_entry_reaches_the_pod_as_written(k8s):
    env = [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    spec = ServeClusterSpec.model_validate({"head": {"env": env}})
    pod = pods.head_pod(cluster="demo", namespace="ns", uid="u", spec=spec, image="ray:1", generation="abcde")
    assert pod["spec"]["containers"][0]["env"][-2:] == env


# --- names: refused by the API server when the cluster is created, since only the root sees metadata.name -------


def _root_rules() -> list[dict[str, Any]]:
    (version,) = crdgen.crd_for(SERVE_CLUSTER)["spec"]["versions"]
    return list(version["schema"]["openAPIV3Schema"]["x-kubernetes-validations"])


def test_the_crd_refuses_a_name_too_long_or_of_the_wrong_form_when_the_cluster_is_created():
    size, form = _root_rules()
    for rule in (size, form):
        assert rule["optionalOldSelf"] is True and rule["rule"].startswith("oldSelf.hasValue() || ("), (
            "checked on create only: a cluster made before the rule can still be updated and deleted")
        assert rule["message"].startswith("metadata.name: ")
    assert f"self.metadata.name.size() <= {NAME_MAX_LENGTH})" in size["rule"]
    quoted = re.search(r"self\.metadata\.name\.matches\('(.*)'\)", form["rule"])
    assert quoted is not None and quoted.group(1) == NAME_PATTERN


@pytest.mark.parametrize("name", ["a.b", "1abc", "-ab", "ab-", "Demo", "a_b", ""])
def test_the_name_pattern_refuses_what_a_service_name_cannot_hold(name):
    assert not re.fullmatch(NAME_PATTERN, name)


def derived_names(name: str, generation: str) -> dict[str, tuple[str, re.Pattern[str], int]]:
    """Every object name the operator derives from a cluster's name, with the form and length its kind needs."""
    service = (DNS_1035, 63)
    subdomain = (DNS_1123_SUBDOMAIN, 253)
    return {
        "head Service": (common.head_service_name(name), *service),
        "serve Service": (common.serve_service_name(name), *service),
        "generation head Service": (common.generation_head_service_name(name, generation), *service),
        "Ingress": (common.serve_service_name(name), *subdomain),
        "token Secret": (common.token_secret_name(name), *subdomain),
        "NetworkPolicy": (common.network_policy_name(name), *subdomain),
        "autoscaler ServiceAccount": (autoscaler.account_name(name), *subdomain),
        "head pod": (common.head_pod_name(name, generation), *subdomain),
        "worker pod": (common.worker_pod_name(name, generation, "g" * 30, 999), *subdomain),
        "cluster label": (name, LABEL_VALUE, 63),
    }


def test_every_name_derived_from_the_longest_admitted_name_fits_its_kind():
    name = "a" + "-b1" * ((NAME_MAX_LENGTH - 1) // 3)
    name += "c" * (NAME_MAX_LENGTH - len(name))
    assert len(name) == NAME_MAX_LENGTH and re.fullmatch(NAME_PATTERN, name)
    spec = ServeClusterSpec.model_validate({})
    generation = pods.generation_name(cluster=name, namespace="ns", uid="u", spec=spec, image="ray:1")
    for kind, (derived, form, most) in derived_names(name, generation).items():
        assert form.fullmatch(derived) and len(derived) <= most, f"{kind}: {derived!r}"


def test_one_character_more_and_a_service_name_would_not_fit():
    name = "a" * (NAME_MAX_LENGTH + 1)
    assert len(common.generation_head_service_name(name, "abcde")) == 64


# --- quantities: nothing but ValueError, whatever the text -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["1e1000000", "1e5000", "1e" + "9" * 5000, "9" * 5000, "1" + "0" * 5000 + "Ei", "-1e999999999", "8Ei",
     9223372036854775807, 1e308, float("inf"), float("nan"), "nan", "Infinity", "1e", "", " 1", "0x10"],
)
def test_a_quantity_parse_raises_only_value_error(text):
    with pytest.raises(ValueError) as error:
        quantity.parse(text)
    assert len(str(error.value)) < 200, "the value is quoted only up to a bound"


@pytest.mark.parametrize(("text", "value"), [("0e5000", 0), ("1e-5000", 0), ("7Ei", 7 * 2**60),
                                             ("9223372036854775806", 2**63 - 2)])
def test_extreme_quantities_within_range(text, value):
    assert quantity.parse(text) == pytest.approx(value)


def test_the_crd_quantity_rule_caps_where_the_models_do():
    assert f"quantity('{quantity.LIMIT}')" in QUANTITY_RULE and quantity.LIMIT == 2**63 - 1
    assert "isQuantity(self)" in QUANTITY_RULE and "isLessThan(quantity('0'))" in QUANTITY_RULE


# --- an exception in a round: what the cluster says (nocluster.round_failed, written by the loop) -------------


def failed(cluster: dict[str, Any], error: BaseException) -> dict[str, Any] | None:
    actions = nocluster.round_failed(cluster, error, NOW)
    assert len(actions) <= 1
    return dict(actions[0].patch) if actions else None  # type: ignore[attr-defined]


def test_a_failed_round_says_so_with_the_exception_type_at_the_spec_generation(k8s):
    cluster = k8s.cluster("demo", {}, generation=GENERATION)
    patch = failed(cluster, TypeError("unhashable type: 'dict'"))
    assert patch is not None and patch["observedGeneration"] == GENERATION
    degraded = conditions.find(patch["conditions"], conditions.DEGRADED)
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("True", nocluster.RECONCILE_ERROR)
    assert degraded["message"].startswith("TypeError: unhashable type: 'dict'")
    assert degraded["observedGeneration"] == GENERATION
    ready = conditions.find(patch["conditions"], conditions.READY)
    assert ready is not None and (ready["status"], ready["reason"]) == ("Unknown", nocluster.RECONCILE_ERROR)


def test_a_failed_round_keeps_ready_and_progressing_as_the_last_round_left_them(k8s):
    before = [
        {"type": "Ready", "status": "True", "reason": "Running", "message": "", "observedGeneration": 6,
         "lastTransitionTime": "2024-05-01T10:00:00Z"},
        {"type": "Progressing", "status": "False", "reason": "Running", "message": "", "observedGeneration": 6,
         "lastTransitionTime": "2024-05-01T10:00:00Z"},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "observedGeneration": 6,
         "lastTransitionTime": "2024-05-01T10:00:00Z"},
    ]
    cluster = k8s.cluster("demo", {}, generation=GENERATION,
                          status={"observedGeneration": 6, "conditions": before, "headPod": "demo-abcde-head"})
    patch = failed(cluster, RuntimeError("boom"))
    assert patch is not None and patch["observedGeneration"] == GENERATION
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["Ready"] == before[0] and by_type["Progressing"] == before[1]
    degraded = by_type["Degraded"]
    assert (degraded["status"], degraded["lastTransitionTime"]) == ("True", "2024-05-03T12:00:00Z")
    assert "headPod" not in patch, "the rest of the status is left as it is"


def test_a_failed_round_writes_nothing_when_the_status_says_so_already(k8s):
    cluster = k8s.cluster("demo", {}, generation=GENERATION)
    patch = failed(cluster, KeyError("x"))
    assert patch is not None
    cluster["status"] = patch
    assert failed(cluster, KeyError("x")) is None
    assert failed(cluster, KeyError("y")) is not None, "a different failure is a different message"


def test_a_failed_round_message_is_one_bounded_line(k8s):
    cluster = k8s.cluster("demo", {}, generation=GENERATION)
    patch = failed(cluster, ValueError("line one\nline two " + "x" * 100_000))
    assert patch is not None
    degraded = conditions.find(patch["conditions"], conditions.DEGRADED)
    assert degraded is not None
    message = degraded["message"]
    assert len(message) <= nocluster.FAILURE_MESSAGE_LIMIT and "\n" not in message
    assert message.startswith("ValueError: line one line two xxx") and message.endswith("retries with backoff)")


def test_a_failed_round_with_an_exception_that_has_no_text(k8s):
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    cluster = k8s.cluster("demo", {}, generation=GENERATION, )
    for error in (AssertionError(), Broken()):
        patch = failed(cluster, error)
        assert patch is not None
        degraded = conditions.find(patch["conditions"], conditions.DEGRADED)
        assert degraded is not None and degraded["message"].startswith(type(error).__name__ + " (")


@pytest.mark.parametrize("name", ["x" * 53, "1st-cluster", "my.cluster"])
def test_a_name_admitted_before_the_crds_rule_gets_invalid_spec_naming_metadata_name(k8s: Any, name: str) -> None:
    """A ServeCluster created before the name rule existed (the rule is on create only) still gets an answer."""
    snap = Snapshot(namespace=k8s.namespace, name=name, cluster=k8s.cluster(name, {}), now=NOW)
    plan = planner.plan_round(snap, Settings(image="ray:1"))
    (write,) = plan.actions
    assert isinstance(write, WriteStatus) and write.patch["observedGeneration"] == 1
    degraded = next(c for c in write.patch["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec" and degraded["message"].startswith("metadata.name:")
