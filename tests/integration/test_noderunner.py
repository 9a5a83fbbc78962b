"""The node runner plays a real kubelet: pods run as processes in their own netns, with probes,
restarts, hooks, status, headless-Service DNS, and nothing left behind when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.noderunner import NodeRunnerProcess, envvars, network, procs, status
from serveplane.localcluster.noderunner.dns import ClusterDns, PodEntry
from serveplane.localcluster.noderunner.instance import ETC_NETNS, Instance

PY = sys.executable


# -- helpers -------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Api:
    """Plain-dict access to the few API calls the tests make."""

    def __init__(self, kubeconfig: Path) -> None:
        self.core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

    @staticmethod
    def _json(resp: Any) -> dict[str, Any]:
        return json.loads(resp.data)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}}, _preload_content=False)

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.core.create_namespaced_pod(namespace, pod, _preload_content=False))

    def create_service(self, namespace: str, svc: dict[str, Any]) -> None:
        self.core.create_namespaced_service(namespace, svc, _preload_content=False)

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.core.read_namespaced_pod(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return self._json(self.core.list_namespaced_pod(namespace, _preload_content=False))["items"]

    def delete_pod(self, namespace: str, name: str, grace: int | None = None) -> None:
        body = {"gracePeriodSeconds": grace} if grace is not None else None
        self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)


def condition(pod: dict[str, Any] | None, kind: str) -> str | None:
    for cond in ((pod or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond["status"]
    return None


def container_status(pod: dict[str, Any] | None, name: str) -> dict[str, Any]:
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if container["name"] == name:
            return container
    return {}


def pod_manifest(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": spec.pop("container_name", "main"), "image": "ignored:latest", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **spec},
    }


def http_server(name: str, port: int = 8080, **spec: Any) -> dict[str, Any]:
    container = {
        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
        **spec.pop("container", {}),
    }
    return pod_manifest(name, ["python", "-m", "http.server", str(port)], container=container, **spec)


def get(url: str, timeout: float = 3.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status


def wait_ready(api: Api, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(lambda: (p := api.pod(namespace, name)) and condition(p, "Ready") == "True" and p,
                    timeout, f"pod {name} Ready")


def host_resources(instance: Instance) -> dict[str, list[Any]]:
    """Everything of ``instance`` on the host: a clean host has only empty lists."""
    etc = sorted(p.name for p in ETC_NETNS.glob(f"{instance.netns_prefix}*")) if ETC_NETNS.exists() else []
    return {
        "processes": procs.marked_pids(instance.marker_prefix),
        "netns": network.list_netns(instance.netns_prefix),
        "links": network.list_links(instance.veth_prefix)
        + [n for n in network.list_links(instance.bridge) if n == instance.bridge],
        "etc_netns": etc,
    }


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(controlplane: ControlPlane) -> Api:
    return Api(controlplane.kubeconfig)


@pytest.fixture(scope="module")
def runner(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRunnerProcess]:
    with NodeRunnerProcess(controlplane.kubeconfig, ["node-1"], tmp_path_factory.mktemp("noderunner")) as r:
        yield r
    # Pod logs and the runner's own log are in r.state_dir (a pytest temp dir) for debugging.


@pytest.fixture
def namespace(api: Api, runner: NodeRunnerProcess) -> Iterator[str]:
    name = f"nr-{uuid.uuid4().hex[:8]}"
    api.create_namespace(name)
    yield name
    # Deleting the namespace deletes its pods gracefully; the runner completes
    # each deletion. Wait, so the next test starts on a quiet node.
    api.delete_namespace(name)
    wait_for(lambda: not api.pods(name), 60, f"pods of {name} gone")


# -- tests -------------------------------------------------------------------------------


def test_pod_becomes_ready_and_is_reachable_from_the_host(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    started = time.monotonic()
    api.create_pod(namespace, http_server("web"))
    pod = wait_ready(api, namespace, "web")
    elapsed = time.monotonic() - started
    print(f"pod create -> Ready in {elapsed:.2f}s")

    status = pod["status"]
    instance = Instance(runner.info["instance"])
    assert status["phase"] == "Running"
    assert status["podIP"].startswith(f"10.{instance.second_octet}.")
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == instance.gateway
    assert status["startTime"]
    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert condition(pod, kind) == "True", kind
        assert next(c for c in status["conditions"] if c["type"] == kind)["lastTransitionTime"]
    main = container_status(pod, "main")
    assert main["ready"] is True and main["started"] is True
    assert main["restartCount"] == 0
    assert main["image"] == "ignored:latest"
    assert "startedAt" in main["state"]["running"]
    assert get(f"http://{status['podIP']}:8080/") == 200
    assert runner.pod_log(namespace, "web", "main").exists()


def test_pods_share_a_port_on_different_ips(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    for name in ("a", "b"):
        api.create_pod(namespace, http_server(name, 8080))
    ips = {name: wait_ready(api, namespace, name)["status"]["podIP"] for name in ("a", "b")}
    assert ips["a"] != ips["b"]
    for ip in ips.values():
        assert get(f"http://{ip}:8080/") == 200


def test_headless_service_resolves_to_pod_ips_inside_pods(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    # Never ready, but the Service publishes not-ready addresses, like the Ray head's.
    target = http_server("target", labels={"app": "target"},
                         container={"readinessProbe": {"httpGet": {"path": "/", "port": 9}, "periodSeconds": 1}})
    api.create_pod(namespace, target)
    api.create_service(namespace, {
        "metadata": {"name": "head"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "target"},
                 "ports": [{"name": "http", "port": 8080}]},
    })
    target_ip = wait_for(lambda: (api.pod(namespace, "target") or {}).get("status", {}).get("podIP"), 30, "target IP")

    fqdn = f"head.{namespace}.svc.cluster.local"
    # Resolves (the EndpointSlice may take a moment), then talks to the target pod to prove pod-to-pod traffic.
    script = (
        "import os, socket, time, urllib.request\n"
        "for _ in range(300):\n"
        "    try:\n"
        f"        ip = socket.gethostbyname({fqdn!r}); break\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
        "else:\n"
        "    raise SystemExit('never resolved')\n"
        "print('RESOLVED', ip, socket.gethostbyname('head'), flush=True)\n"
        "print('HTTP', urllib.request.urlopen(f'http://{ip}:8080/', timeout=5).status, flush=True)\n"
        "print('ENV', os.environ['MY_NAME'], os.environ['MY_NS'], os.environ['MY_IP'], os.environ['MY_NODE'],"
        " os.environ['GREETING'], socket.gethostname(), flush=True)\n"
    )
    env = [
        {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "GREETING", "value": "hello-$(MY_NAME)"},
    ]
    api.create_pod(namespace, pod_manifest("client", ["python", "-c", script], restartPolicy="Never",
                                           container={"env": env}))
    pod = wait_for(
        lambda: (p := api.pod(namespace, "client")) and p["status"].get("phase") in ("Succeeded", "Failed") and p,
        60, "client pod to finish",
    )
    log = runner.pod_log(namespace, "client", "main").read_text()
    assert pod["status"]["phase"] == "Succeeded", log
    assert f"RESOLVED {target_ip} {target_ip}" in log
    assert "HTTP 200" in log
    client_ip = pod["status"]["podIP"]
    assert f"ENV client {namespace} {client_ip} node-1 hello-client client" in log
    terminated = container_status(pod, "main")["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert condition(pod, "Ready") == "False"


def test_failing_container_is_restarted_with_backoff(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    api.create_pod(namespace, pod_manifest("crash", ["python", "-c", "print('boom'); raise SystemExit(1)"]))
    pod = wait_for(
        lambda: (p := api.pod(namespace, "crash")) and container_status(p, "main").get("restartCount", 0) >= 3 and p,
        30, "three restarts",
    )
    main = container_status(pod, "main")
    assert main["lastState"]["terminated"]["exitCode"] == 1
    assert pod["status"]["phase"] == "Running"
    assert runner.pod_log(namespace, "crash", "main").read_text().count("boom") >= 3


def test_run_to_completion_phases(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    api.create_pod(namespace, pod_manifest("ok", ["python", "-c", "pass"], restartPolicy="Never"))
    api.create_pod(namespace, pod_manifest("bad", ["python", "-c", "raise SystemExit(3)"], restartPolicy="Never"))
    api.create_pod(namespace, pod_manifest("missing", ["no-such-binary"], restartPolicy="Never"))
    phases = {"ok": "Succeeded", "bad": "Failed", "missing": "Failed"}
    for name, phase in phases.items():
        wait_for(
            lambda name=name, phase=phase: (api.pod(namespace, name) or {}).get("status", {}).get("phase") == phase,
            30, f"{name} {phase}",
        )
    assert container_status(api.pod(namespace, "bad"), "main")["state"]["terminated"]["exitCode"] == 3
    missing = container_status(api.pod(namespace, "missing"), "main")["state"]["terminated"]
    assert missing["reason"] == "StartError" and "not found" in missing["message"]


def test_failing_liveness_probe_restarts_the_container(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    liveness = {"httpGet": {"path": "/", "port": 8081}, "periodSeconds": 1, "failureThreshold": 2}
    api.create_pod(namespace, http_server("sick", container={"livenessProbe": liveness}))
    started = time.monotonic()
    pod = wait_for(
        lambda: (p := api.pod(namespace, "sick")) and container_status(p, "main").get("restartCount", 0) >= 1 and p,
        30, "a liveness restart",
    )
    print(f"liveness failure -> restart in {time.monotonic() - started:.2f}s")
    last = container_status(pod, "main")["lastState"]["terminated"]
    assert last["exitCode"] in (143, 137)


def test_init_containers_then_startup_probe(api: Api, runner: NodeRunnerProcess, namespace: str) -> None:
    # Containers of a pod share its work dir (the cwd), so the init container can leave a file behind.
    pod = http_server("staged", container={
        "command": ["sh", "-c", "cat from-init; sleep 2; touch started; exec python -m http.server 8080"],
        "startupProbe": {"exec": {"command": ["test", "-f", "started"]}, "periodSeconds": 1, "failureThreshold": 10},
    })
    pod["spec"]["initContainers"] = [
        {"name": "first", "image": "ignored", "command": ["sh", "-c", "sleep 1; echo INIT-$HOSTNAME > from-init"]},
    ]
    api.create_pod(namespace, pod)
    early = wait_for(lambda: (p := api.pod(namespace, "staged")) and p["status"].get("initContainerStatuses") and p,
                     30, "init status")
    assert early["status"]["phase"] == "Pending"
    assert condition(early, "Initialized") == "False"
    running = wait_for(
        lambda: (p := api.pod(namespace, "staged")) and "running" in container_status(p, "main").get("state", {}) and p,
        30, "main running",
    )
    assert container_status(running, "main")["started"] is False, "the startup probe has not passed yet"
    ready = wait_ready(api, namespace, "staged")
    init = ready["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0 and init["ready"] is True
    assert condition(ready, "Initialized") == "True"
    assert container_status(ready, "main")["started"] is True
    assert "INIT-staged" in runner.pod_log(namespace, "staged", "main").read_text()


def test_deletion_runs_prestop_kills_processes_and_removes_the_pod(
    api: Api, runner: NodeRunnerProcess, namespace: str, tmp_path: Path
) -> None:
    hook_file = tmp_path / "exec-hook-ran"
    pod = http_server("doomed", container={
        "lifecycle": {"preStop": {"httpGet": {"path": "/prestop-called", "port": 8080}}},
    })
    # A second container whose children outlive a plain SIGTERM to its main pid.
    pod["spec"]["containers"].append({
        "name": "sleeper",
        "image": "ignored",
        "command": ["sh", "-c", "sleep 1000 & sleep 1000 & wait"],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", f"echo $HOSTNAME > {hook_file}"]}}},
    })
    created = api.create_pod(namespace, pod)
    uid = created["metadata"]["uid"]
    wait_ready(api, namespace, "doomed")
    instance = Instance(runner.info["instance"])
    netns = instance.netns_name(uid)
    assert len(procs.marked_pids(instance.pod_marker_prefix(uid))) >= 3
    assert netns in network.list_netns(instance.netns_prefix)

    started = time.monotonic()
    api.delete_pod(namespace, "doomed")
    wait_for(lambda: api.pod(namespace, "doomed") is None, 30, "pod object gone")
    print(f"delete -> pod object gone in {time.monotonic() - started:.2f}s")

    assert "GET /prestop-called" in runner.pod_log(namespace, "doomed", "main").read_text()
    assert hook_file.read_text().strip() == "doomed"
    assert procs.marked_pids(instance.pod_marker_prefix(uid)) == []
    assert netns not in network.list_netns(instance.netns_prefix)
    assert not (ETC_NETNS / netns).exists()


# -- a runner of its own: stop and crash -----------------------------------------------------


@pytest.fixture
def spare_node(api: Api) -> Iterator[str]:
    """A Node that only explicit nodeName pods land on (the taint keeps the scheduler away)."""
    name = f"nr-spare-{uuid.uuid4().hex[:6]}"
    api.core.create_node({"metadata": {"name": name}, "spec": {
        "taints": [{"key": "serveplane.dev/test-only", "effect": "NoSchedule"}],
    }}, _preload_content=False)
    yield name
    api.core.delete_node(name, _preload_content=False)


def bound_pod(name: str, node: str) -> dict[str, Any]:
    pod = http_server(name)
    pod["spec"]["nodeName"] = node
    # SIGTERM is ignored: only the SIGKILL after the grace period ends it.
    pod["spec"]["containers"].append({
        "name": "stubborn", "image": "ignored",
        "command": [
            "python", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"
        ],
    })
    pod["spec"]["terminationGracePeriodSeconds"] = 2
    return pod


def test_stopped_runner_leaves_nothing_behind(
    api: Api, controlplane: ControlPlane, namespace: str, spare_node: str, tmp_path: Path
) -> None:
    try:
        with NodeRunnerProcess(controlplane.kubeconfig, [spare_node], tmp_path / "state") as spare:
            instance = Instance(spare.info["instance"])
            for name in ("x", "y"):
                api.create_pod(namespace, bound_pod(name, spare_node))
            for name in ("x", "y"):
                wait_ready(api, namespace, name)
            assert host_resources(instance)["processes"]
            node = api.core.read_node(spare_node, _preload_content=False)
            addresses = json.loads(node.data)["status"]["addresses"]
            assert {"type": "InternalIP", "address": instance.gateway} in addresses
            stopping = time.monotonic()
        print(f"runner stop with two pods (2s grace, one ignores SIGTERM) took {time.monotonic() - stopping:.2f}s")
        assert host_resources(instance) == {"processes": [], "netns": [], "links": [], "etc_netns": []}
        # The pods stay, but nothing claims they are ready any more.
        for name in ("x", "y"):
            assert condition(api.pod(namespace, name), "Ready") == "False"
    finally:
        _force_delete(api, namespace, ("x", "y"))


def test_crashed_runner_is_cleaned_up_and_its_pods_rerun(
    api: Api, controlplane: ControlPlane, namespace: str, spare_node: str, tmp_path: Path
) -> None:
    first = NodeRunnerProcess(controlplane.kubeconfig, [spare_node], tmp_path / "first").start()
    instance = Instance(first.info["instance"])
    try:
        for name in ("keep", "drop"):
            api.create_pod(namespace, bound_pod(name, spare_node))
        for name in ("keep", "drop"):
            wait_ready(api, namespace, name)
        old_pids = host_resources(instance)["processes"]
    finally:
        # A crash: no chance to clean up.
        assert first._proc is not None
        os.kill(first._proc.pid, signal.SIGKILL)
        first._proc.wait()
        first._proc = None
    assert host_resources(instance)["netns"], "a killed runner leaves its pods running"
    # Deleted while no runner runs the node: the object waits for a kubelet to confirm.
    api.delete_pod(namespace, "drop")

    try:
        second_runner = NodeRunnerProcess(
            controlplane.kubeconfig, [spare_node], tmp_path / "second", instance=instance.index
        )
        with second_runner as second:
            wait_for(lambda: api.pod(namespace, "drop") is None, 30, "pod deleted during the outage to go")
            # The status the dead runner left says Ready; wait for the re-run's.
            pod = wait_for(lambda: (p := api.pod(namespace, "keep")) and condition(p, "Ready") == "True"
                           and container_status(p, "main").get("restartCount") == 1 and p, 30, "keep re-run and Ready")
            assert not set(old_pids) & set(host_resources(instance)["processes"])
            assert get(f"http://{pod['status']['podIP']}:8080/") == 200
            assert second.info["instance"] == instance.index
        assert host_resources(instance) == {"processes": [], "netns": [], "links": [], "etc_netns": []}
    finally:
        _force_delete(api, namespace, ("keep", "drop"))


def _force_delete(api: Api, namespace: str, names: tuple[str, ...]) -> None:
    # No runner serves the spare node any more, so nobody would confirm a graceful deletion.
    for name in names:
        try:
            api.delete_pod(namespace, name, grace=0)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_cleanup_cli_removes_leftovers() -> None:
    # Leftovers by hand, in a free instance: what a crashed runner would leave.
    lock_free = [i for i in range(12) if not _in_use(i)]
    instance = Instance(lock_free[-1])
    network.ensure_bridge(instance)
    netns, veth = instance.netns_name("feedface-0000"), instance.veth_name("feedface-0000")
    network.create_sandbox(instance, netns, veth, instance.pod_ip(1, 1))
    (ETC_NETNS / netns).mkdir(parents=True, exist_ok=True)
    sleeper = subprocess.Popen(procs.in_netns(netns, ["sleep", "1000"]), start_new_session=True)
    try:
        result = subprocess.run([PY, "-m", "serveplane.localcluster.noderunner", "cleanup", "--instance",
                                 str(instance.index)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert host_resources(instance) == {"processes": [], "netns": [], "links": [], "etc_netns": []}
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def _in_use(index: int) -> bool:
    from serveplane.localcluster.noderunner.instance import InstanceLock

    lock = InstanceLock.try_acquire(index)
    if lock is None:
        return True
    lock.release()
    return False


# -- the pure parts, no control plane needed ------------------------------------------------


def _slice(namespace: str, service: str, *endpoints: tuple[str, bool | None, str | None]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace, "name": f"{service}-abc", "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, **({"hostname": host} if host else {})}
                      for ip, ready, host in endpoints],
    }


def test_hosts_files_follow_headless_services(tmp_path: Path) -> None:
    dns = ClusterDns(tmp_path)
    dns.sync_services([
        {
            "metadata": {"namespace": "ns", "name": "head"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True},
        },
        {"metadata": {"namespace": "ns", "name": "strict"}, "spec": {"clusterIP": "None"}},
        {"metadata": {"namespace": "ns", "name": "plain"}, "spec": {"clusterIP": "10.96.0.10"}},
    ])
    dns.sync_slices([
        _slice("ns", "head", ("10.244.1.5", False, None)),
        _slice("ns", "strict", ("10.244.1.6", True, "w0"), ("10.244.1.7", False, None)),
        _slice("ns", "plain", ("10.244.1.8", True, None)),
    ])
    dns.add_pod(PodEntry("sp0-x", "ns", "10.244.1.9", "me", "strict"))
    dns.add_pod(PodEntry("sp0-y", "other", "10.244.1.10", "you"))
    mine = (tmp_path / "sp0-x" / "hosts").read_text()
    assert "10.244.1.9\tme.strict.ns.svc.cluster.local me" in mine
    assert "10.244.1.5\thead.ns.svc.cluster.local head.ns.svc head.ns head\n" in mine
    assert "10.244.1.6\tstrict.ns.svc.cluster.local" in mine
    assert "10.244.1.6\tw0.strict.ns.svc.cluster.local" in mine
    assert "10.244.1.7" not in mine, "not ready and the Service does not publish not-ready addresses"
    assert "plain" not in mine, "only headless Services resolve"
    theirs = (tmp_path / "sp0-y" / "hosts").read_text()
    assert "10.244.1.5\thead.ns.svc.cluster.local head.ns.svc head.ns\n" in theirs
    assert "nameserver 127.0.0.1" in (tmp_path / "sp0-x" / "resolv.conf").read_text()

    inode = (tmp_path / "sp0-x" / "hosts").stat().st_ino
    dns.slice_event("DELETED", _slice("ns", "strict"))
    after = (tmp_path / "sp0-x" / "hosts").read_text()
    assert (tmp_path / "sp0-x" / "hosts").stat().st_ino == inode, "bind mounts pin the inode"
    assert "10.244.1.6" not in after and "head.ns" in after
    dns.remove_pod("sp0-x")
    assert not (tmp_path / "sp0-x").exists()


def test_phase_follows_the_kubelet() -> None:
    running = {"state": {"running": {}}}
    ok = {"state": {"terminated": {"exitCode": 0}}}
    failed = {"state": {"terminated": {"exitCode": 1}}}
    backoff = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}
    creating = {"state": {"waiting": {"reason": "ContainerCreating"}}}

    def phase(policy: str, *statuses: dict[str, Any], will_restart: bool = False) -> str:
        return status.phase(policy, statuses, initialized=True, init_failed=False, will_restart=will_restart)

    assert phase("Always", creating, running) == "Pending"
    assert phase("Always", running, backoff) == "Running"
    assert phase("Always", ok) == "Running"
    assert phase("Never", ok, ok) == "Succeeded"
    assert phase("Never", ok, failed) == "Failed"
    assert phase("OnFailure", backoff, will_restart=True) == "Running"
    assert status.phase("Always", [creating], initialized=False, init_failed=False, will_restart=True) == "Pending"
    assert status.phase("Never", [creating], initialized=False, init_failed=True, will_restart=False) == "Failed"


def test_env_is_resolved_like_the_kubelet() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x"}},
           "spec": {"nodeName": "node-1"}}
    container = {"name": "c", "command": ["echo", "$(A)", "$$(A)", "$(UNSET)"], "env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-b"},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]}
    env = envvars.container_env(container, envvars.PodFacts(pod, "10.244.1.2", "10.244.0.1"), "p", None)
    assert (env["A"], env["B"], env["IP"], env["NODE"], env["APP"], env["HOSTNAME"]) == (
        "a", "a-b", "10.244.1.2", "node-1", "x", "p")
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert envvars.container_argv(container, env) == ["echo", "a", "$(A)", "$(UNSET)"]
