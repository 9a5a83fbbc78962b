"""The builders of a ServeCluster's security objects: the token Secret, the pods' auth env, the NetworkPolicy."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.manifests import auth, common, netpol, pods, rayenv

UID = "cluster-uid"


def spec(**fields: Any) -> ServeClusterSpec:
    return ServeClusterSpec.model_validate(fields)


# --- the token Secret -------------------------------------------------------------------------------------------


def test_the_token_secret_is_owned_labelled_and_has_no_data() -> None:
    secret = auth.token_secret(cluster="demo", namespace="ns", uid=UID)
    assert secret["metadata"]["name"] == common.token_secret_name("demo") == "demo-ray-token"
    assert secret["type"] == "Opaque" and "data" not in secret and "stringData" not in secret
    assert secret["metadata"]["labels"] == common.labels("demo", "auth")
    assert secret["metadata"]["ownerReferences"] == [common.owner_reference("demo", UID)]


@pytest.mark.parametrize(
    ("data", "token"),
    [
        ({"token": base64.b64encode(b"abc123").decode()}, "abc123"),
        ({"token": base64.b64encode(b"  abc123\n").decode()}, "abc123"),
        ({"token": ""}, None),
        ({"token": "not base64!"}, None),
        ({"other": base64.b64encode(b"abc").decode()}, None),
        (None, None),
    ],
)
def test_the_token_is_read_from_the_secrets_data(data: dict[str, str] | None, token: str | None) -> None:
    secret = {"metadata": {"name": "demo-ray-token"}, **({"data": data} if data is not None else {})}
    assert auth.token_of(secret) == token


def test_the_digest_is_short_stable_and_not_the_token() -> None:
    token = "f" * 64
    assert auth.digest(token) == auth.digest(token) != auth.digest("e" * 64)
    assert len(auth.digest(token)) == 16 and token not in auth.digest(token)


# --- the pods' auth env -----------------------------------------------------------------------------------------


def env_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("mode", ["Token", "Disabled"])
def test_every_ray_pod_references_the_token_secret_under_token_auth(mode: str) -> None:
    s = spec(auth={"mode": mode}, workerGroups=[{"name": "cpu", "replicas": 1}])
    args = {"cluster": "demo", "namespace": "ns", "uid": UID, "spec": s, "image": "ray:1"}
    built = pods.ray_pods(**args, generation="abcde")
    assert len(built) == 2
    for pod in built:
        env = env_of(pod)
        if mode == "Token":
            assert env["RAY_AUTH_MODE"] == {"name": "RAY_AUTH_MODE", "value": "token"}
            assert env["RAY_AUTH_TOKEN"] == {
                "name": "RAY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "demo-ray-token", "key": "token"}},
            }
        else:
            assert not [name for name in env if name.startswith("RAY_AUTH_")]
    assert rayenv.auth_env(spec(auth={"mode": "Disabled"}), "demo") == []


def test_token_auth_is_the_default() -> None:
    assert [e["name"] for e in rayenv.auth_env(spec(), "demo")] == ["RAY_AUTH_MODE", "RAY_AUTH_TOKEN"]


# --- the NetworkPolicy ------------------------------------------------------------------------------------------

ACCESS = netpol.Access(operator_namespace="ops", operator_pod_labels={"app": "op"})
OPERATOR_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                 "podSelector": {"matchLabels": {"app": "op"}}}
OWN_PODS = {"podSelector": {"matchLabels": {common.CLUSTER_LABEL: "demo"}}}
RAY_PORTS = [{"protocol": "TCP", "port": p} for p in (6379, 8265, 10001, 8471, 8080)]
PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

# spec fields, access -> the ingress rules expected
NETPOL_CASES: dict[str, tuple[dict[str, Any], netpol.Access, list[dict[str, Any]]]] = {
    "defaults": ({}, ACCESS, [
        {"ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 9000}]},
        {"from": [OWN_PODS]},
        {"from": [OPERATOR_PEER], "ports": RAY_PORTS},
    ]),
    "the spec's Serve ports": ({"serve": {"httpPort": 8888, "grpcPort": 9999}}, ACCESS, [
        {"ports": [{"protocol": "TCP", "port": 8888}, {"protocol": "TCP", "port": 9999}]},
        {"from": [OWN_PODS]},
        {"from": [OPERATOR_PEER], "ports": RAY_PORTS},
    ]),
    "Prometheus may scrape the metrics port": ({}, netpol.Access("ops", {"app": "op"}, (PROMETHEUS,)), [
        {"ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 9000}]},
        {"from": [OWN_PODS]},
        {"from": [OPERATOR_PEER], "ports": RAY_PORTS},
        {"from": [PROMETHEUS], "ports": [{"protocol": "TCP", "port": 8080}]},
    ]),
}


@pytest.mark.parametrize("case", sorted(NETPOL_CASES))
def test_the_network_policy(case: str) -> None:
    fields, access, rules = NETPOL_CASES[case]
    policy = netpol.network_policy(cluster="demo", namespace="ns", uid=UID, spec=spec(**fields), access=access)
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["kind"] == "NetworkPolicy"
    assert policy["metadata"]["name"] == "demo-ray"
    assert policy["metadata"]["ownerReferences"] == [common.owner_reference("demo", UID)]
    assert policy["metadata"]["labels"] == common.labels("demo", "network")
    assert policy["spec"]["podSelector"] == {"matchLabels": common.selector("demo")}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == rules


def test_only_the_serve_ports_are_open_to_everyone() -> None:
    policy = netpol.network_policy(cluster="demo", namespace="ns", uid=UID, spec=spec(), access=ACCESS)
    open_rules = [r for r in policy["spec"]["ingress"] if "from" not in r]
    assert [p["port"] for r in open_rules for p in r["ports"]] == [8000, 9000]
    # Every port a Ray pod declares is covered for the operator.
    pod = pods.head_pod(cluster="demo", namespace="ns", uid=UID, spec=spec(), image="ray:1", generation="abcde")
    declared = {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert declared == {p["port"] for p in RAY_PORTS}


def test_the_network_policy_lets_every_generation_reach_the_others() -> None:
    """During an upgrade two generations run: the policy selects, and lets in, the pods of both (a new worker
    joins its own head; the operator reaches both heads)."""
    policy = netpol.network_policy(cluster="demo", namespace="ns", uid=UID, spec=spec(), access=ACCESS)
    s = spec(workerGroups=[{"name": "cpu"}])
    both = [
        pod for gen in ("aaaaa", "bbbbb")
        for pod in pods.ray_pods(cluster="demo", namespace="ns", uid=UID, spec=s, image="ray:1", generation=gen)
    ]
    assert len(both) == 4
    for pod in both:
        labels = pod["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        assert OWN_PODS["podSelector"]["matchLabels"].items() <= labels.items()
    other = pods.head_pod(cluster="other", namespace="ns", uid=UID, spec=s, image="ray:1", generation="aaaaa")
    assert not policy["spec"]["podSelector"]["matchLabels"].items() <= other["metadata"]["labels"].items()


def test_the_default_operator_labels_are_the_charts_selector_labels() -> None:
    assert netpol.Access().operator_pod_labels == {
        "app.kubernetes.io/name": "serveplane", "app.kubernetes.io/component": "operator"}
