"""The executor against the real API server and a real Ray head: it does a plan's actions in their order, stops at
the first that fails, and after Serve accepts a config writes exactly the record the plan carries, before the
rest of the round; a config Serve refuses is remembered and writes no record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlparse

import kopf
import pytest
import yaml

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import CRDS_DIR
from serveplane.operator.actions import Action, CreatePod, PostEvent, Submit, WriteStatus
from serveplane.operator.api.kinds import CLUSTERS, PODS
from serveplane.operator.cache import Store
from serveplane.operator.clients.dashboards import DashboardPool
from serveplane.operator.clients.kube import Kube, KubeError
from serveplane.operator.executor import ClusterMemory, Executor

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def crds(controlplane: ControlPlane) -> None:
    """The CRDs, for the ServeCluster the records go to (and the namespace fixture's clean-up of them)."""
    controlplane.kubectl("apply", "--server-side", "-f", str(CRDS_DIR))
    controlplane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))


@pytest.fixture
def kube(controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kube]:
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig))

    def login() -> kopf.ConnectionInfo:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        assert info is not None
        return info

    # Closed by `executor` below, inside the test's own event loop.
    yield Kube(login)


@pytest.fixture
async def executor(kube: Kube, ray_head: Any) -> AsyncIterator[Executor]:
    port = urlparse(ray_head.dashboard_url).port
    assert port is not None
    pool = DashboardPool(timeout_s=60.0, port=port)
    yield Executor(kube, Store(), pool)
    await pool.close()
    await kube.close()


def pod(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
    }


def cluster(controlplane: ControlPlane, namespace: str) -> None:
    doc = {"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster",
           "metadata": {"name": "demo", "namespace": namespace}, "spec": {}}
    controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def status_of(controlplane: ControlPlane, namespace: str) -> dict[str, Any]:
    out = controlplane.kubectl("get", "scl", "demo", "-n", namespace, "-o", "yaml").stdout
    return dict(yaml.safe_load(out).get("status") or {})


def pod_names(controlplane: ControlPlane, namespace: str) -> list[str]:
    out = controlplane.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout
    return sorted(line.split("/", 1)[1] for line in out.split())


def hello(serve_port: int, greeting: str) -> dict[str, Any]:
    return {
        "http_options": {"host": "0.0.0.0", "port": serve_port},
        "applications": [{
            "name": "hello", "route_prefix": "/hello", "import_path": "serveplane.examples.hello:app",
            "args": {"greeting": greeting},
        }],
    }


async def test_actions_run_in_order_and_the_first_failure_stops_the_round(
    controlplane: ControlPlane, namespace: str, executor: Executor
) -> None:
    bad = pod(namespace, "b")
    bad["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"  # the API server refuses it: 422
    actions: tuple[Action, ...] = (
        CreatePod(pod(namespace, "a")), CreatePod(bad), CreatePod(pod(namespace, "c")),
    )
    with pytest.raises(KubeError) as refused:
        await executor.run((namespace, "demo"), actions, ClusterMemory())
    assert refused.value.status == 422
    assert pod_names(controlplane, namespace) == ["a"], "the action after the failed one must not run"
    assert executor.store.get(PODS, namespace, "a") is not None, "a write's answer goes into the store at once"


async def test_an_accepted_submit_writes_the_plans_record_before_the_next_action(
    controlplane: ControlPlane, namespace: str, executor: Executor, ray_head: Any
) -> None:
    cluster(controlplane, namespace)
    record = {"appliedConfigHash": "h-accepted", "appliedHeadUid": "head-1",
              "lastHeadRecovery": {"headUid": "head-1", "time": "2026-01-01T00:00:00Z", "how": "Resubmitted"}}
    submit = Submit(hello(ray_head.serve_port, "executor"), "h-accepted", "HeadReplaced", "127.0.0.1", "head-1",
                    generation="g1", record=WriteStatus(CLUSTERS, "demo", record))
    memory = ClusterMemory()
    submitted = await executor.run((namespace, "demo"), (submit, CreatePod(pod(namespace, "after"))), memory)
    assert submitted
    stored = status_of(controlplane, namespace)
    assert {k: stored.get(k) for k in record} == record, stored
    assert memory.rejection is None
    assert pod_names(controlplane, namespace) == ["after"]


async def test_a_refused_config_is_remembered_writes_no_record_and_the_round_goes_on(
    controlplane: ControlPlane, namespace: str, executor: Executor
) -> None:
    cluster(controlplane, namespace)
    broken = {"applications": [{"name": "x", "route_prefix": "/x"}]}  # no import_path: Serve's schema refuses it
    submit = Submit(broken, "h-refused", "ConfigChanged", "127.0.0.1", "head-1", generation="g1",
                    record=WriteStatus(CLUSTERS, "demo", {"appliedConfigHash": "h-refused"}))
    memory = ClusterMemory()
    after = PostEvent("Normal", "Test", "after the refused submit")
    submitted = await executor.run((namespace, "demo"), (submit, CreatePod(pod(namespace, "after")), after), memory)
    assert submitted, "a refusal is Serve's answer too: the next round follows at once"
    assert memory.rejection is not None and memory.rejection.config_hash == "h-refused"
    assert "appliedConfigHash" not in status_of(controlplane, namespace)
    assert pod_names(controlplane, namespace) == ["after"]
