"""The scale benchmark's Serve dashboard simulator (bench/servesim.py) answers in Serve's own schema.

Only its fidelity is tested here: what it accepts and returns is checked against `ray.serve.schema`, and the
operator's own dashboard client talks to it. It is never used where real Ray can run.
"""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ray.serve.schema import ApplicationStatus, ServeDeploySchema, ServeInstanceDetails

from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.clients.dashboard import DashboardClient, DashboardRejected
from serveplane.operator.compose import ServeView, compose

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import servesim  # noqa: E402
from servesim import PodInfo, PodRegistry, ServeSim  # noqa: E402

HEAD, WORKER = "127.0.0.1", "127.0.0.2"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry() -> PodRegistry:
    pods = PodRegistry()
    pods.add(PodInfo("ns", "c-head", "u1", "c", "head", HEAD))
    pods.add(PodInfo("ns", "c-worker-cpu-0", "u2", "c", "worker", WORKER))
    pods.add(PodInfo("ns", "other-head", "u3", "other", "head", "127.0.0.9"))
    return pods


def composed(replicas: int = 2, *, apps: int = 2, proxy_location: str = "EveryNode") -> dict[str, Any]:
    """A body exactly as the operator composes it, with one ServeDeployment on the first application."""
    objs = [
        {
            "metadata": {"name": f"app{i}", "namespace": "ns", "uid": str(i), "generation": 1,
                         "creationTimestamp": f"2026-01-01T00:00:0{i}Z"},
            "spec": {"cluster": "c", "importPath": "pkg.mod:app", "args": {"i": i},
                     "deployments": [{"name": "Model", "numReplicas": 1, "rayActorOptions": {"numCpus": 0.1}}]},
        }
        for i in range(apps)
    ]
    sdep = {"metadata": {"name": "s0", "namespace": "ns", "uid": "s", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"application": "app0", "deploymentName": "Model", "numReplicas": replicas}}
    view = servesim_view(apps)
    spec = ServeClusterSpec.model_validate({"serve": {"proxyLocation": proxy_location}})
    return compose(spec, objs, [sdep], view).config


def servesim_view(apps: int) -> ServeView:
    return ServeView(deployments={f"app{i}": frozenset({"Model"}) for i in range(apps)})


def validated(details: dict[str, Any]) -> ServeInstanceDetails:
    return ServeInstanceDetails.model_validate(details)


def test_before_any_put_the_answer_is_serves_empty_schema() -> None:
    sim = ServeSim(registry())
    details = sim.details(HEAD)
    assert details == ServeInstanceDetails.get_empty_schema_dict()
    validated(details)


def test_a_put_deploys_then_runs_in_serves_schema() -> None:
    clock = Clock()
    sim = ServeSim(registry(), deploy_delay_s=3.0, clock=clock)
    body = composed(replicas=2)
    ServeDeploySchema.model_validate(body)  # what the operator sends is a valid Serve config
    assert sim.apply_put(HEAD, json.dumps(body)) == (200, "")

    deploying = validated(sim.details(HEAD))
    assert {n: a.status for n, a in deploying.applications.items()} == {
        "app0": ApplicationStatus.DEPLOYING, "app1": ApplicationStatus.DEPLOYING}
    model = deploying.applications["app0"].deployments["Model"]
    assert model.status == "UPDATING" and model.target_num_replicas == 2
    assert [r.state for r in model.replicas] == ["STARTING", "STARTING"]

    clock.now += 3.0
    raw = sim.details(HEAD)
    running = validated(raw)
    assert {a.status for a in running.applications.values()} == {ApplicationStatus.RUNNING}
    model = running.applications["app0"].deployments["Model"]
    assert model.status == "HEALTHY" and [r.state for r in model.replicas] == ["RUNNING", "RUNNING"]
    assert running.applications["app1"].deployments["Model"].target_num_replicas == 1
    # One HEALTHY proxy per pod of this cluster (not of the other one), keyed by node id, at the pod's IP.
    assert {p.node_ip: p.status for p in running.proxies.values()} == {HEAD: "HEALTHY", WORKER: "HEALTHY"}
    assert all(key == servesim.node_id(p.node_ip) for key, p in running.proxies.items())
    assert running.controller_info.node_ip == HEAD
    assert running.proxy_location == "EveryNode"
    assert running.http_options.port == 8000 and running.grpc_options.port == 9000
    # deployed_app_config is what was submitted, so the operator can keep it as an application's last good config.
    submitted = {a["name"]: a for a in body["applications"]}
    assert raw["applications"]["app0"]["deployed_app_config"] == submitted["app0"]
    assert raw["applications"]["app0"]["route_prefix"] == "/app0"


def test_serves_put_is_declarative_and_leaves_unchanged_applications_running() -> None:
    clock = Clock()
    sim = ServeSim(registry(), deploy_delay_s=1.0, clock=clock)
    sim.apply_put(HEAD, json.dumps(composed(replicas=2, apps=3)))
    clock.now += 1.0
    fewer = composed(replicas=3, apps=2)  # app2 left out, app0's Model scaled
    sim.apply_put(HEAD, json.dumps(fewer))
    details = validated(sim.details(HEAD))
    assert set(details.applications) == {"app0", "app1"}
    assert details.applications["app0"].status == ApplicationStatus.DEPLOYING
    assert details.applications["app1"].status == ApplicationStatus.RUNNING
    assert details.applications["app0"].deployments["Model"].target_num_replicas == 3
    [put] = sim.puts_since(clock.now)
    assert put.ip == HEAD and put.replicas[("app0", "Model")] == 3 and put.replicas[("app1", "Model")] == 1


def test_head_only_has_the_heads_proxy_alone() -> None:
    clock = Clock()
    sim = ServeSim(registry(), deploy_delay_s=0.0, clock=clock)
    sim.apply_put(HEAD, json.dumps(composed(proxy_location="HeadOnly")))
    details = validated(sim.details(HEAD))
    assert [p.node_ip for p in details.proxies.values()] == [HEAD]


def test_each_generations_head_reports_only_its_own_ray_cluster() -> None:
    """During an upgrade a ServeCluster runs two Ray clusters: a head's Serve has proxies and replicas only on the
    nodes of its own generation, and takes its own target_capacity."""
    old_head, old_worker, new_head, new_worker = "127.0.0.11", "127.0.0.12", "127.0.0.21", "127.0.0.22"
    pods = PodRegistry()
    pods.add(PodInfo("ns", "c-aaaaa-head", "u1", "c", "head", old_head, "aaaaa"))
    pods.add(PodInfo("ns", "c-aaaaa-worker-cpu-0", "u2", "c", "worker", old_worker, "aaaaa"))
    pods.add(PodInfo("ns", "c-bbbbb-head", "u3", "c", "head", new_head, "bbbbb"))
    pods.add(PodInfo("ns", "c-bbbbb-worker-cpu-0", "u4", "c", "worker", new_worker, "bbbbb"))
    sim = ServeSim(pods, deploy_delay_s=0.0, clock=Clock())
    sim.apply_put(old_head, json.dumps({**composed(replicas=4), "target_capacity": 75.0}))
    sim.apply_put(new_head, json.dumps({**composed(replicas=4), "target_capacity": 25.0}))
    for head, worker, capacity in ((old_head, old_worker, 75.0), (new_head, new_worker, 25.0)):
        details = validated(sim.details(head))
        assert {p.node_ip for p in details.proxies.values()} == {head, worker}
        replicas = details.applications["app0"].deployments["Model"].replicas
        assert {r.node_ip for r in replicas} == {head, worker}
        assert details.target_capacity == capacity
    assert [p.name for p in pods.cluster_pods("ns", "c", "bbbbb")] == ["c-bbbbb-head", "c-bbbbb-worker-cpu-0"]
    assert len(pods.cluster_pods("ns", "c")) == 4, "without a generation: every pod of the ServeCluster"


def test_a_body_serve_would_refuse_gets_400_with_pydantics_text() -> None:
    sim = ServeSim(registry())
    status, text = sim.apply_put(HEAD, '{"applications": [{"name": "a", "route_prefix": "/a"}]}')
    assert status == 400 and "import_path" in text
    assert sim.apply_put(HEAD, "not json")[0] == 400
    assert sim.details(HEAD) == ServeInstanceDetails.get_empty_schema_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_operators_dashboard_client_talks_to_it_over_http() -> None:
    sim = ServeSim(registry(), deploy_delay_s=0.0, port=_free_port())
    await sim.start()
    await sim.add_head(HEAD)
    try:
        async with DashboardClient(f"http://{HEAD}:{sim.port}", retries=0) as client:
            assert (await client.get_applications())["applications"] == {}
            await client.put_applications(composed())
            validated(await client.get_applications())
            assert (await client.get_version())["version"] == "4"
            with pytest.raises(DashboardRejected) as rejected:
                await client.put_applications({"applications": [{"name": "x"}]})
            assert rejected.value.status == 400 and "import_path" in rejected.value.message
        async with aiohttp.ClientSession() as session, session.get(sim.stats_url) as answer:
            stats = await answer.json()
        assert stats["requests"] == {
            "GET /api/serve/applications/": 2, "PUT /api/serve/applications/": 2, "GET /api/ray/version": 1}
        assert stats["by_head"][HEAD]["PUT /api/serve/applications/"] == 2
        assert stats["puts"] == 1  # only accepted PUTs are logged
        await sim.remove_head(HEAD)
        assert sim.details(HEAD) == ServeInstanceDetails.get_empty_schema_dict()  # a new head knows nothing
    finally:
        await sim.stop()
