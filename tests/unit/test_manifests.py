"""The Kubernetes objects a ServeCluster owns: Ray pods, the head and serve Services, the Ingress."""
from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any

import pytest

from serveplane.operator.api import quantity
from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.manifests import common, network, pods, rayresources

UID = "8b0a3a51-6d0e-4c4e-9a0b-0d1c2e3f4a5b"
NS = "team-a"
IMAGE = "registry.example/serveplane-ray:1"
GEN = "3c4d5"
"""The generation the pods of these tests belong to."""
APP_LABELS = (
    "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
    "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
)


def spec(**wire: Any) -> ServeClusterSpec:
    return ServeClusterSpec.model_validate(wire)


def build_pods(
    s: ServeClusterSpec, cluster: str = "demo", image: str = IMAGE, generation: str = GEN
) -> list[dict[str, Any]]:
    return pods.ray_pods(cluster=cluster, namespace=NS, uid=UID, spec=s, image=image, generation=generation)


def generation_of(s: ServeClusterSpec, image: str = IMAGE, uid: str = UID) -> str:
    return pods.generation_name(cluster="demo", namespace=NS, uid=uid, spec=s, image=image)


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["spec"]["containers"]
    return only


def ray_container(pod: dict[str, Any]) -> dict[str, Any]:
    (ray,) = [c for c in pod["spec"]["containers"] if c["name"] == "ray"]
    return ray


def ray_params(pod: dict[str, Any]) -> dict[str, str]:
    prefix = "--ray-param="
    return dict(a[len(prefix):].split("=", 1) for a in ray_container(pod)["args"] if a.startswith(prefix))


def shm_volume(pod: dict[str, Any]) -> dict[str, Any] | None:
    mount = next((m for m in ray_container(pod).get("volumeMounts", []) if m["mountPath"] == "/dev/shm"), None)
    if mount is None:
        return None
    return next(v for v in pod["spec"].get("volumes", []) if v["name"] == mount["name"])


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(pod)["env"]}


def assert_owned(obj: dict[str, Any], cluster: str = "demo", component: str | None = None) -> None:
    meta = obj["metadata"]
    assert meta["namespace"] == NS
    labels = meta["labels"]
    for key in APP_LABELS:
        assert labels.get(key), f"{meta['name']} lacks label {key}"
    assert labels["app.kubernetes.io/instance"] == cluster
    assert labels["app.kubernetes.io/part-of"] == "serveplane"
    assert labels[common.CLUSTER_LABEL] == cluster
    if component:
        assert labels["app.kubernetes.io/component"] == component
    assert meta["ownerReferences"] == [{
        "apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "name": cluster, "uid": UID,
        "controller": True, "blockOwnerDeletion": True,
    }]


# --- pods ----------------------------------------------------------------------------------------------------


def test_one_head_and_one_pod_per_replica_per_group():
    built = build_pods(spec(workerGroups=[{"name": "cpu", "replicas": 2}, {"name": "gpu", "replicas": 1},
                                          {"name": "idle", "replicas": 0}]))
    assert [p["metadata"]["name"] for p in built] == [
        "demo-3c4d5-head", "demo-3c4d5-worker-cpu-0", "demo-3c4d5-worker-cpu-1", "demo-3c4d5-worker-gpu-0",
    ]
    assert all(p["apiVersion"] == "v1" and p["kind"] == "Pod" for p in built)
    head, *workers = built
    assert_owned(head, component="head")
    assert head["metadata"]["labels"][common.NODE_TYPE_LABEL] == "head"
    assert common.GROUP_LABEL not in head["metadata"]["labels"]
    for worker in workers:
        assert_owned(worker, component="worker")
        assert worker["metadata"]["labels"][common.NODE_TYPE_LABEL] == "worker"
    assert [w["metadata"]["labels"][common.GROUP_LABEL] for w in workers] == ["cpu", "cpu", "gpu"]


def test_no_worker_groups_means_only_the_head():
    assert [p["metadata"]["name"] for p in build_pods(spec())] == ["demo-3c4d5-head"]


def test_pods_carry_no_proxy_label_the_operator_sets_it_from_serves_report():
    for pod in build_pods(spec(workerGroups=[{"name": "cpu"}])):
        assert common.PROXY_LABEL not in pod["metadata"]["labels"]


def test_container_command_and_args_of_the_head():
    head = build_pods(spec(serve={"httpPort": 8100},
                           head={"rayStartParams": {"num-cpus": "2", "object-store-memory": "100"}}))[0]
    c = container(head)
    assert c["name"] == "ray"
    assert c["image"] == IMAGE
    assert c["command"] == ["python", "-m", "serveplane.runtime"]
    assert c["args"] == [
        "head", "--agent-port=8471", "--http-port=8100", "--metrics-port=8080", "--port=6379",
        "--dashboard-port=8265", "--ray-param=num-cpus=2", "--ray-param=object-store-memory=100",
    ]


def test_container_args_of_a_worker_point_at_its_generations_head_service():
    worker = build_pods(spec(workerGroups=[{"name": "cpu", "rayStartParams": {"num-gpus": "0"}}]))[1]
    assert container(worker)["args"] == [
        "worker", "--agent-port=8471", "--http-port=8000", "--metrics-port=8080",
        f"--address=demo-3c4d5-head.{NS}.svc.cluster.local:6379", "--ray-param=num-gpus=0",
    ]
    assert container(worker)["command"] == ["python", "-m", "serveplane.runtime"]


def test_spec_image_wins_over_the_operator_default():
    for pod in build_pods(spec(image="mine:2", workerGroups=[{"name": "cpu"}])):
        assert container(pod)["image"] == "mine:2"
    for pod in build_pods(spec(workerGroups=[{"name": "cpu"}])):
        assert container(pod)["image"] == IMAGE


def test_env_has_the_downward_api_and_user_values_win():
    s = spec(head={"env": [{"name": "EXTRA", "value": "1"}, {"name": "RAY_USAGE_STATS_ENABLED", "value": "1"}]},
             workerGroups=[{"name": "cpu", "env": [{"name": "W", "value": "w"}]}])
    head, worker = build_pods(s)
    for pod in (head, worker):
        values = env(pod)
        assert values["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert values["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert values["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert values["SERVEPLANE_CLUSTER"] == "demo"
    assert env(head)["EXTRA"] == "1"
    assert env(head)["RAY_USAGE_STATS_ENABLED"] == "1"
    names = [e["name"] for e in container(head)["env"]]
    assert len(names) == len(set(names)), "an env var may appear only once"
    assert env(worker)["W"] == "w" and "EXTRA" not in env(worker)
    assert env(worker)["RAY_USAGE_STATS_ENABLED"] == "0"


def test_probes_and_drain_use_the_agent_port():
    for pod in build_pods(spec(workerGroups=[{"name": "cpu"}])):
        c = container(pod)
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": common.AGENT_PORT}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": common.AGENT_PORT}
        assert c["lifecycle"]["preStop"] == {"exec": {"command": [
            "python", "-m", "serveplane.runtime", "drain", f"--agent-port={common.AGENT_PORT}"]}}
        # Liveness must be more patient than readiness: a slow Ray start is not a dead pod.
        live, ready = c["livenessProbe"], c["readinessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["agent"] == common.AGENT_PORT == 8471
        assert ports["gcs"] == 6379 and ports["dashboard"] == 8265 and ports["metrics"] == 8080
        assert pod["spec"]["restartPolicy"] == "Always"
        assert pod["spec"]["terminationGracePeriodSeconds"] >= 30


def test_resources_per_kind_of_pod():
    s = spec(head={"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}},
             workerGroups=[{"name": "gpu", "resources": {"limits": {"nvidia.com/gpu": 1}}}, {"name": "plain"}])
    head, gpu, plain = build_pods(s)
    assert container(head)["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}
    assert container(gpu)["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    assert "resources" not in container(plain)


def test_pod_template_is_merged_into_the_head_pod_only():
    template = {
        "metadata": {"labels": {"team": "ml"}, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {"nodeSelector": {"pool": "ray-head"}, "serviceAccountName": "ray",
                 "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
    }
    head, worker = build_pods(spec(head={"podTemplate": template}, workerGroups=[{"name": "cpu"}]))
    assert head["metadata"]["labels"]["team"] == "ml"
    assert_owned(head, component="head")  # operator labels survive the merge
    assert head["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert common.POD_HASH_ANNOTATION in head["metadata"]["annotations"]
    assert head["spec"]["nodeSelector"] == {"pool": "ray-head"}
    assert head["spec"]["serviceAccountName"] == "ray"
    assert head["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert container(head)["command"] == ["python", "-m", "serveplane.runtime"]
    assert "status" not in head
    assert "team" not in worker["metadata"]["labels"]
    assert "nodeSelector" not in worker["spec"]


def test_pod_template_changes_the_head_hash():
    plain = build_pods(spec())[0]
    placed = build_pods(spec(head={"podTemplate": {"spec": {"nodeSelector": {"pool": "a"}}}}))[0]
    assert pods.pod_spec_hash(plain) != pods.pod_spec_hash(placed)


def test_builders_do_not_share_or_modify_the_spec():
    s = spec(head={"podTemplate": {"metadata": {"labels": {"team": "ml"}}}, "env": [{"name": "A", "value": "1"}]},
             workerGroups=[{"name": "cpu", "replicas": 2}])
    before = copy.deepcopy(s.model_dump())
    head, w0, _ = build_pods(s)
    head["metadata"]["labels"]["x"] = "y"
    w0["metadata"]["labels"]["x"] = "y"
    assert s.model_dump() == before
    assert "x" not in build_pods(s)[0]["metadata"]["labels"]


# --- the podTemplate: one merge for the head and every worker group -------------------------------------------

SIDECAR = {"name": "log-shipper", "image": "fluent-bit:3"}


def template_pods(template: dict[str, Any], **node: Any) -> list[dict[str, Any]]:
    """The head and a worker built with the same template: the merge must not depend on the kind of pod."""
    return build_pods(spec(head={"podTemplate": template, **node},
                           workerGroups=[{"name": "gpu", "podTemplate": template, **node}]))


@pytest.mark.parametrize(
    ("template_spec", "check"),
    [
        pytest.param({"nodeSelector": {"pool": "gpu"}, "priorityClassName": "serving", "serviceAccountName": "ray"},
                     lambda p: (p["spec"]["nodeSelector"], p["spec"]["priorityClassName"],
                                p["spec"]["serviceAccountName"]) == ({"pool": "gpu"}, "serving", "ray"),
                     id="scalars-and-objects-set"),
        pytest.param({"affinity": {"nodeAffinity": {"x": 1}}},
                     lambda p: p["spec"]["affinity"] == {"nodeAffinity": {"x": 1}}, id="affinity"),
        pytest.param({"terminationGracePeriodSeconds": 300},
                     lambda p: p["spec"]["terminationGracePeriodSeconds"] == 300, id="operator-scalar-replaced"),
        pytest.param({"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                     lambda p: p["spec"]["tolerations"] == [
                         {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     id="tolerations-appended"),
        pytest.param({"volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "m"}}]},
                     lambda p: [v["name"] for v in p["spec"]["volumes"]] == ["models", "dshm"],
                     id="volume-added-beside-dshm"),
        pytest.param({"initContainers": [{"name": "fetch", "image": "busybox"}]},
                     lambda p: p["spec"]["initContainers"] == [{"name": "fetch", "image": "busybox"}],
                     id="init-containers"),
        pytest.param({"containers": [SIDECAR]},
                     lambda p: [c["name"] for c in p["spec"]["containers"]] == ["ray", "log-shipper"]
                     and p["spec"]["containers"][1] == SIDECAR, id="sidecar-appended-ray-kept-first"),
        pytest.param({"containers": [{"name": "ray", "imagePullPolicy": "Always"}]},
                     lambda p: [c["name"] for c in p["spec"]["containers"]] == ["ray"]
                     and ray_container(p)["imagePullPolicy"] == "Always"
                     and ray_container(p)["command"] == ["python", "-m", "serveplane.runtime"],
                     id="ray-entry-merges-not-replaces"),
        pytest.param({"containers": [{"name": "ray", "command": ["sh"], "args": ["-c", "sleep 1"], "image": "x:1"}]},
                     lambda p: ray_container(p)["command"] == ["python", "-m", "serveplane.runtime"]
                     and ray_container(p)["args"][0] in ("head", "worker") and ray_container(p)["image"] == "x:1",
                     id="ray-command-and-args-stay-the-operators"),
        pytest.param({"containers": [{"name": "ray", "volumeMounts": [{"name": "models", "mountPath": "/models"}]}]},
                     lambda p: [m["mountPath"] for m in ray_container(p)["volumeMounts"]] == ["/models", "/dev/shm"],
                     id="volume-mounts-into-ray"),
        pytest.param({"containers": [{"name": "ray", "env": [{"name": "POD_IP", "value": "x"},
                                                             {"name": "HF_HOME", "value": "/models"}]}]},
                     lambda p: env(p)["POD_IP"] == "x" and env(p)["HF_HOME"] == "/models"
                     and [e["name"] for e in ray_container(p)["env"]].count("POD_IP") == 1,
                     id="env-by-name"),
        pytest.param({"containers": [{"name": "ray", "ports": [{"name": "metrics", "containerPort": 9090},
                                                               {"name": "debug", "containerPort": 5678}]}]},
                     lambda p: {x["name"]: x["containerPort"] for x in ray_container(p)["ports"]}["metrics"] == 9090
                     and len(ray_container(p)["ports"]) == 6, id="ports-by-name"),
        pytest.param({"containers": [{"name": "ray", "readinessProbe": {"exec": {"command": ["true"]}}}]},
                     lambda p: ray_container(p)["readinessProbe"] == {"exec": {"command": ["true"]}},
                     id="probe-replaced-whole"),
        pytest.param({"containers": [{"name": "ray", "resources": {"limits": {"memory": "8Gi"}}}]},
                     lambda p: ray_container(p)["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "8Gi"}},
                     id="resources-key-by-key"),
    ],
)
def test_pod_template_merge_rules_are_the_same_for_head_and_workers(template_spec, check):
    head, worker = template_pods({"spec": template_spec}, resources={"requests": {"cpu": "1"}})
    assert check(head), head
    assert check(worker), worker


def test_pod_template_labels_and_annotations_but_the_operators_labels_win():
    theirs = {
        "team": "ml", common.CLUSTER_LABEL: "other", common.NODE_TYPE_LABEL: "head", common.GROUP_LABEL: "x",
        common.PROXY_LABEL: common.PROXY_HEALTHY, "app.kubernetes.io/managed-by": "helm",
        "app.kubernetes.io/version": "7",
    }
    template = {"metadata": {"labels": theirs, "annotations": {common.POD_HASH_ANNOTATION: "0", "a": "b"}}}
    head, worker = template_pods(template)
    for pod, node_type in ((head, "head"), (worker, "worker")):
        labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
        assert labels["team"] == "ml" and labels["app.kubernetes.io/version"] == "7"
        assert labels[common.CLUSTER_LABEL] == "demo"
        assert labels[common.NODE_TYPE_LABEL] == node_type
        assert labels["app.kubernetes.io/managed-by"] == "serveplane"
        assert common.PROXY_LABEL not in labels, "only Serve's report may put a pod behind the serve Service"
        assert annotations["a"] == "b"
        assert annotations[common.POD_HASH_ANNOTATION] == pods.pod_spec_hash(pod)
    assert worker["metadata"]["labels"][common.GROUP_LABEL] == "gpu"
    assert common.GROUP_LABEL not in head["metadata"]["labels"]


def test_pod_template_of_one_group_stays_in_that_group():
    built = build_pods(spec(workerGroups=[{"name": "gpu", "podTemplate": {"spec": {"nodeSelector": {"a": "b"}}}},
                                          {"name": "cpu"}]))
    head, gpu, cpu = built
    assert gpu["spec"]["nodeSelector"] == {"a": "b"}
    assert "nodeSelector" not in head["spec"] and "nodeSelector" not in cpu["spec"]
    assert pods.pod_spec_hash(gpu) != pods.pod_spec_hash(cpu)


# --- rayStartParams implied by the Ray container's resources ---------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "params", "implied"),
    [
        ({}, {}, {}),
        ({"limits": {"cpu": "2"}}, {}, {"num-cpus": "2"}),
        ({"limits": {"cpu": "500m"}}, {}, {"num-cpus": "1"}),  # rounded up, as KubeRay's Quantity.Value()
        ({"limits": {"cpu": "1500m"}}, {}, {"num-cpus": "2"}),
        ({"limits": {"cpu": 3}}, {}, {"num-cpus": "3"}),
        ({"limits": {"cpu": 0.5}}, {}, {"num-cpus": "1"}),
        ({"requests": {"cpu": "4"}}, {}, {"num-cpus": "4"}),
        ({"requests": {"cpu": "4"}, "limits": {"cpu": "6"}}, {}, {"num-cpus": "6"}),  # the limit wins
        ({"requests": {"cpu": "4"}, "limits": {"cpu": "0"}}, {}, {"num-cpus": "4"}),  # a zero limit implies nothing
        ({"limits": {"nvidia.com/gpu": 1}}, {}, {"num-gpus": "1"}),
        ({"limits": {"nvidia.com/gpu": "2"}}, {}, {"num-gpus": "2"}),
        ({"limits": {"amd.com/gpu": "1"}}, {}, {"num-gpus": "1"}),
        ({"limits": {"nvidia.com/gpu": "0"}}, {}, {}),
        ({"requests": {"nvidia.com/gpu": "1"}}, {}, {}),  # only a limit: Kubernetes needs one for extended resources
        ({"limits": {"memory": "4Gi"}}, {}, {"memory": str(4 * 2**30)}),
        ({"limits": {"memory": "1500M"}}, {}, {"memory": "1500000000"}),
        ({"limits": {"memory": "1e9"}}, {}, {"memory": "1000000000"}),
        ({"requests": {"memory": "4Gi"}}, {}, {}),  # Ray's memory is what the pod may use, not what it is promised
        ({"limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": 1}}, {},
         {"num-cpus": "2", "num-gpus": "1", "memory": str(4 * 2**30)}),
        ({"limits": {"cpu": "8", "nvidia.com/gpu": 1}}, {"num-cpus": "0"}, {"num-cpus": "0", "num-gpus": "1"}),
        ({"limits": {"cpu": "8"}}, {"num_cpus": "1"}, {"num_cpus": "1"}),  # the runtime's spellings count as set
        ({"limits": {"nvidia.com/gpu": 4}}, {"--num-gpus": "0"}, {"--num-gpus": "0"}),
        ({"limits": {"memory": "2Gi"}}, {"memory": "1000"}, {"memory": "1000"}),
    ],
)
def test_ray_start_params_implied_by_resources(resources, params, implied):
    assert rayresources.ray_start_params(params, resources) == implied


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", Decimal("0.5")), ("2", 2), ("4Gi", 4 * 2**30), ("1e9", 10**9), ("1500M", 1_500_000_000),
     ("1E3", 1000), ("1E", 10**18), ("100Ki", 102400), ("1.5Gi", 3 * 2**29), (".5", Decimal("0.5")),
     ("250u", Decimal("0.00025")), ("1e-3", Decimal("0.001")), (2, 2), (0.25, Decimal("0.25"))],
)
def test_kubernetes_quantities(text, value):
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "2 cores", "1.5.5", "4GB", "Gi", "1e", "0x10", "1Ki5"])
def test_not_kubernetes_quantities(text):
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        quantity.parse(text)


def test_implied_params_reach_the_ray_start_flags_of_head_and_workers():
    s = spec(head={"rayStartParams": {"num-cpus": "0"}, "resources": {"limits": {"cpu": "2", "memory": "4Gi"}}},
             workerGroups=[{"name": "gpu", "resources": {"limits": {"cpu": "4", "nvidia.com/gpu": 1}}},
                           {"name": "cpu", "resources": {"requests": {"cpu": "250m"}}}])
    head, gpu, cpu = build_pods(s)
    assert ray_params(head) == {"num-cpus": "0", "memory": str(4 * 2**30)}
    assert ray_params(gpu) == {"num-cpus": "4", "num-gpus": "1"}
    assert ray_params(cpu) == {"num-cpus": "1"}
    assert container(head)["args"][-2:] == ["--ray-param=memory=4294967296", "--ray-param=num-cpus=0"]


def test_resources_from_the_template_imply_params_too():
    template = {"spec": {"containers": [{"name": "ray", "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}
    for pod in template_pods(template):
        assert ray_params(pod) == {"num-gpus": "2"}


# --- /dev/shm ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "size_limit"),
    [
        ({}, None),
        ({"resources": {"requests": {"memory": "4Gi"}}}, None),
        ({"resources": {"limits": {"memory": "10Gi"}}}, str(math.ceil(10 * 2**30 * 0.3))),
        ({"resources": {"limits": {"memory": "1000"}}}, "300"),
        ({"resources": {"limits": {"memory": "1001"}}}, "301"),  # rounded up: Ray must fit its whole store
        ({"rayStartParams": {"object-store-memory": "200000000"}}, "200000000"),
        ({"rayStartParams": {"object_store_memory": "2000000000"}, "resources": {"limits": {"memory": "10Gi"}}},
         "2000000000"),
        # `ray start --object-store-memory` takes an integer only, and refuses the rest: no size to give.
        ({"rayStartParams": {"object-store-memory": "2e9"}, "resources": {"limits": {"memory": "10Gi"}}}, None),
    ],
)
def test_dev_shm_is_memory_backed_and_sized_for_the_object_store(node, size_limit):
    for pod in build_pods(spec(head=node, workerGroups=[{"name": "cpu", **node}])):
        volume = shm_volume(pod)
        assert volume["name"] == "dshm"
        assert volume["emptyDir"].get("medium") == "Memory"
        assert volume["emptyDir"].get("sizeLimit") == size_limit
        assert {"name": "dshm", "mountPath": "/dev/shm"} in ray_container(pod)["volumeMounts"]


def test_object_store_share_is_rays_default():
    ray_constants = pytest.importorskip("ray._private.ray_constants")
    assert float(rayresources.OBJECT_STORE_SHARE) == ray_constants.DEFAULT_OBJECT_STORE_MEMORY_PROPORTION


def test_a_template_volume_named_dshm_replaces_the_operators():
    mine = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
    for pod in template_pods({"spec": {"volumes": [mine]}}, resources={"limits": {"memory": "8Gi"}}):
        assert shm_volume(pod) == mine
        assert [v["name"] for v in pod["spec"]["volumes"]] == ["dshm"]


def test_a_template_mount_at_dev_shm_replaces_the_operators_volume():
    template = {"spec": {"volumes": [{"name": "hugepages", "emptyDir": {"medium": "HugePages"}}],
                         "containers": [{"name": "ray", "volumeMounts": [{"name": "hugepages",
                                                                          "mountPath": "/dev/shm"}]}]}}
    for pod in template_pods(template):
        assert [v["name"] for v in pod["spec"]["volumes"]] == ["hugepages"]
        assert ray_container(pod)["volumeMounts"] == [{"name": "hugepages", "mountPath": "/dev/shm"}]


# --- the Ray container's securityContext ------------------------------------------------------------------------


def test_default_security_context_drops_every_privilege_but_lets_ray_write_tmp():
    for pod in build_pods(spec(workerGroups=[{"name": "cpu"}])):
        context = ray_container(pod)["securityContext"]
        assert context == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                           "seccompProfile": {"type": "RuntimeDefault"}}
        assert "readOnlyRootFilesystem" not in context and "runAsNonRoot" not in context


def test_template_security_context_overrides_key_by_key():
    override = {"capabilities": {"add": ["SYS_PTRACE"]}, "seccompProfile": {"type": "Unconfined"},
                "runAsUser": 1000, "runAsNonRoot": True}
    for pod in template_pods({"spec": {"containers": [{"name": "ray", "securityContext": override}]}}):
        assert ray_container(pod)["securityContext"] == {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]},
            "seccompProfile": {"type": "Unconfined"}, "runAsUser": 1000, "runAsNonRoot": True,
        }


def test_builders_do_not_share_the_default_security_context():
    head, worker = build_pods(spec(workerGroups=[{"name": "cpu"}]))
    ray_container(head)["securityContext"]["capabilities"]["drop"].append("x")
    assert pods.SECURITY_CONTEXT["capabilities"]["drop"] == ["ALL"]
    assert ray_container(worker)["securityContext"]["capabilities"]["drop"] == ["ALL"]


# --- generations ------------------------------------------------------------------------------------------


def test_every_pod_carries_its_generation_label():
    s = spec(workerGroups=[{"name": "cpu", "replicas": 2}, {"name": "gpu"}])
    for generation in ("aaaaa", "bbbbb"):
        built = build_pods(s, generation=generation)
        assert len(built) == 4
        assert [p["metadata"]["labels"][common.GENERATION_LABEL] for p in built] == [generation] * 4


def test_the_generation_label_is_the_operators_not_the_templates():
    template = {"metadata": {"labels": {common.GENERATION_LABEL: "fake0"}}}
    for pod in template_pods(template):
        assert pod["metadata"]["labels"][common.GENERATION_LABEL] == GEN


def test_pod_names_carry_the_generation():
    s = spec(workerGroups=[{"name": "cpu", "replicas": 2}, {"name": "gpu"}])
    head, *workers = build_pods(s, generation="bbbbb")
    assert head["metadata"]["name"] == common.head_pod_name("demo", "bbbbb") == "demo-bbbbb-head"
    assert [w["metadata"]["name"] for w in workers] == [
        common.worker_pod_name("demo", "bbbbb", "cpu", 0), common.worker_pod_name("demo", "bbbbb", "cpu", 1),
        common.worker_pod_name("demo", "bbbbb", "gpu", 0),
    ] == ["demo-bbbbb-worker-cpu-0", "demo-bbbbb-worker-cpu-1", "demo-bbbbb-worker-gpu-0"]
    other = {p["metadata"]["name"] for p in build_pods(s, generation="aaaaa")}
    assert not other & {p["metadata"]["name"] for p in [head, *workers]}, "two generations' pods never collide"


def test_ray_pods_head_first_is_head_pod():
    s = spec(workerGroups=[{"name": "cpu"}])
    head = pods.head_pod(cluster="demo", namespace=NS, uid=UID, spec=s, image=IMAGE, generation=GEN)
    assert build_pods(s)[0] == head
    assert common.is_head(head) and not any(common.is_head(p) for p in build_pods(s)[1:])


def test_generation_name_is_a_short_stable_hash():
    s = spec(workerGroups=[{"name": "cpu"}])
    name = generation_of(s)
    assert len(name) == 5 and all(c in "0123456789abcdef" for c in name)
    assert generation_of(spec(workerGroups=[{"name": "cpu"}])) == name
    # The name is made from the head built without a generation: what the pods are labelled with is no input.
    head = pods.head_pod(cluster="demo", namespace=NS, uid=UID, spec=s, image=IMAGE, generation="")
    assert name == pods.pod_spec_hash(head)[:5]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"workerGroups": [{"name": "cpu", "replicas": 5}]}, id="replicas"),
        pytest.param({"workerGroups": [{"name": "cpu"}, {"name": "gpu"}]}, id="group-added"),
        pytest.param({"workerGroups": []}, id="groups-removed"),
        pytest.param({"workerGroups": [{"name": "cpu", "rayStartParams": {"num-cpus": "3"}}]}, id="worker-params"),
        pytest.param({"workerGroups": [{"name": "cpu", "env": [{"name": "X", "value": "1"}]}]}, id="worker-env"),
        pytest.param({"workerGroups": [{"name": "cpu", "resources": {"limits": {"cpu": "4"}}}]}, id="worker-resources"),
        pytest.param({"workerGroups": [{"name": "cpu", "podTemplate": {"spec": {"nodeSelector": {"a": "b"}}}}]},
                     id="worker-template"),
        pytest.param({"workerGroups": [{"name": "cpu"}], "service": {"type": "NodePort"},
                      "ingress": {"enabled": True, "host": "h"}}, id="service-and-ingress"),
        pytest.param({"workerGroups": [{"name": "cpu"}], "upgradeStrategy": {"type": "BlueGreen"}}, id="strategy"),
    ],
)
def test_generation_name_is_unchanged_by_changes_rolled_in_place(change):
    assert generation_of(spec(**change)) == generation_of(spec(workerGroups=[{"name": "cpu"}]))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"image": "mine:2"}, id="spec-image"),
        pytest.param({"head": {"rayStartParams": {"num-cpus": "3"}}}, id="head-params"),
        pytest.param({"head": {"env": [{"name": "X", "value": "1"}]}}, id="head-env"),
        pytest.param({"head": {"resources": {"limits": {"cpu": "4"}}}}, id="head-resources"),
        pytest.param({"head": {"podTemplate": {"spec": {"nodeSelector": {"a": "b"}}}}}, id="head-template"),
        pytest.param({"serve": {"httpPort": 8001}}, id="http-port"),
        pytest.param({"auth": {"mode": "Disabled"}}, id="auth"),
        pytest.param({"gcsFaultTolerance": {"redisAddress": "redis:6379"}}, id="gcs-fault-tolerance"),
    ],
)
def test_generation_name_changes_with_what_every_node_runs_alike(change):
    base = spec(workerGroups=[{"name": "cpu"}])
    assert generation_of(spec(workerGroups=[{"name": "cpu"}], **change)) != generation_of(base)


def test_generation_name_changes_with_the_operators_default_image():
    s = spec(workerGroups=[{"name": "cpu"}])
    assert generation_of(s, image="ray:1") != generation_of(s, image="ray:2")
    pinned = spec(image="mine:1")
    assert generation_of(pinned, image="ray:1") == generation_of(pinned, image="ray:2"), "the spec's image wins"


# --- the pod spec hash ------------------------------------------------------------------------------------


def test_hash_annotation_matches_the_pod_spec():
    for pod in build_pods(spec(workerGroups=[{"name": "cpu", "replicas": 2}])):
        assert pod["metadata"]["annotations"][common.POD_HASH_ANNOTATION] == pods.pod_spec_hash(pod)
        assert len(pods.pod_spec_hash(pod)) == 16


def test_hash_stable_when_nothing_changes():
    s = {"workerGroups": [{"name": "cpu", "replicas": 2, "rayStartParams": {"a": "1", "b": "2"}}]}
    first = [p["metadata"]["annotations"] for p in build_pods(spec(**s))]
    s2 = {"workerGroups": [{"name": "cpu", "replicas": 2, "rayStartParams": {"b": "2", "a": "1"}}]}
    assert first == [p["metadata"]["annotations"] for p in build_pods(spec(**s2))]


def test_hash_changes_with_the_image():
    old = build_pods(spec(workerGroups=[{"name": "cpu"}]), image="ray:1")
    new = build_pods(spec(workerGroups=[{"name": "cpu"}]), image="ray:2")
    for a, b in zip(old, new, strict=True):
        assert pods.pod_spec_hash(a) != pods.pod_spec_hash(b)


@pytest.mark.parametrize(
    "change",
    [
        {"head": {"rayStartParams": {"num-cpus": "3"}}},
        {"head": {"env": [{"name": "X", "value": "1"}]}},
        {"head": {"resources": {"limits": {"cpu": "4"}}}},
        {"serve": {"httpPort": 8001}},
    ],
)
def test_hash_of_the_head_changes_with_its_spec(change):
    assert pods.pod_spec_hash(build_pods(spec(**change))[0]) != pods.pod_spec_hash(build_pods(spec())[0])


def test_scaling_a_group_does_not_change_existing_pods():
    two = build_pods(spec(workerGroups=[{"name": "cpu", "replicas": 2}]))
    three = build_pods(spec(workerGroups=[{"name": "cpu", "replicas": 3}]))
    assert three[:3] == two


def test_service_and_ingress_settings_do_not_replace_pods():
    base = build_pods(spec(workerGroups=[{"name": "cpu"}]))
    other = build_pods(spec(workerGroups=[{"name": "cpu"}], service={"type": "NodePort"},
                            ingress={"enabled": True, "host": "h"}, serve={"proxyLocation": "HeadOnly"}))
    assert [pods.pod_spec_hash(p) for p in base] == [pods.pod_spec_hash(p) for p in other]


# --- Services -------------------------------------------------------------------------------------------


def labels_of(pod: dict[str, Any]) -> dict[str, str]:
    return dict(pod["metadata"]["labels"])


def selects(service: dict[str, Any], pod: dict[str, Any]) -> bool:
    return bool(service["spec"]["selector"].items() <= labels_of(pod).items())


def legacy(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod as made before generations: no generation label."""
    out = copy.deepcopy(pod)
    del out["metadata"]["labels"][common.GENERATION_LABEL]
    return out


@pytest.mark.parametrize("which", ["head", "generation"])
def test_head_services_are_headless_and_publish_not_ready_addresses(which):
    if which == "head":
        svc = network.head_service(cluster="demo", namespace=NS, uid=UID, generation=GEN)
        assert svc["metadata"]["name"] == "demo-head"
    else:
        svc = network.generation_head_service(cluster="demo", namespace=NS, uid=UID, generation=GEN)
        assert svc["metadata"]["name"] == "demo-3c4d5-head" == common.generation_head_service_name("demo", GEN)
    assert (svc["apiVersion"], svc["kind"]) == ("v1", "Service")
    assert_owned(svc, component="head")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {
        common.CLUSTER_LABEL: "demo", common.NODE_TYPE_LABEL: "head", common.GENERATION_LABEL: GEN,
    }
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"gcs": (6379, 6379), "dashboard": (8265, 8265), "client": (10001, 10001)}


def test_the_head_service_selects_the_active_generations_head_only():
    s = spec(workerGroups=[{"name": "cpu"}])
    active_head, active_worker = build_pods(s, generation="aaaaa")
    pending_head, _ = build_pods(s, generation="bbbbb")
    svc = network.head_service(cluster="demo", namespace=NS, uid=UID, generation="aaaaa")
    assert selects(svc, active_head)
    assert not selects(svc, pending_head), "users reach the active generation's dashboard, not an upgrade's"
    assert not selects(svc, active_worker)
    switched = network.head_service(cluster="demo", namespace=NS, uid=UID, generation="bbbbb")
    assert switched["metadata"]["name"] == "demo-head", "the same Service follows the active generation"
    assert selects(switched, pending_head) and not selects(switched, active_head)
    other = build_pods(s, cluster="other", generation="aaaaa")[0]
    assert not selects(svc, other)


def test_each_generations_head_service_selects_its_own_head_whatever_is_active():
    s = spec(workerGroups=[{"name": "cpu"}])
    old_head, old_worker = build_pods(s, generation="aaaaa")
    new_head, new_worker = build_pods(s, generation="bbbbb")
    old = network.generation_head_service(cluster="demo", namespace=NS, uid=UID, generation="aaaaa")
    new = network.generation_head_service(cluster="demo", namespace=NS, uid=UID, generation="bbbbb")
    assert old["metadata"]["name"] != new["metadata"]["name"]
    assert selects(old, old_head) and not selects(old, new_head)
    assert selects(new, new_head) and not selects(new, old_head)
    assert not selects(old, old_worker) and not selects(new, new_worker)


def test_a_workers_address_is_its_own_generations_head_service():
    s = spec(workerGroups=[{"name": "cpu"}])
    for generation in ("aaaaa", "bbbbb"):
        head, worker = build_pods(s, generation=generation)
        svc = network.generation_head_service(cluster="demo", namespace=NS, uid=UID, generation=generation)
        (address,) = [a for a in container(worker)["args"] if a.startswith("--address=")]
        assert address == f"--address={svc['metadata']['name']}.{NS}.svc.cluster.local:{common.GCS_PORT}"
        assert address == f"--address={common.head_address('demo', NS, generation)}"
        assert selects(svc, head)
        assert not any(a.startswith("--address=") for a in container(head)["args"])


def test_head_address_is_the_generations_head_service():
    assert common.head_address("demo", NS, GEN) == f"demo-3c4d5-head.{NS}.svc.cluster.local:6379"
    assert common.head_address("demo", NS, "bbbbb") != common.head_address("demo", NS, GEN)


def test_the_head_service_of_the_legacy_generation_selects_unlabelled_heads():
    """Pods made before generations carry no generation label: the head Service must still find their head."""
    head = legacy(build_pods(spec())[0])
    svc = network.head_service(cluster="demo", namespace=NS, uid=UID, generation="")
    assert common.GENERATION_LABEL not in svc["spec"]["selector"]
    assert selects(svc, head)
    assert not selects(network.head_service(cluster="demo", namespace=NS, uid=UID, generation=GEN), head)


def test_serve_service_selects_healthy_proxies_on_every_node():
    s = spec(serve={"httpPort": 8100, "grpcPort": 9100})
    svc = network.serve_service(cluster="demo", namespace=NS, uid=UID, spec=s)
    assert svc["metadata"]["name"] == "demo-serve"
    assert_owned(svc, component="serve")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {common.CLUSTER_LABEL: "demo", common.PROXY_LABEL: common.PROXY_HEALTHY}
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert set(ports) == {"http", "grpc"}
    assert (ports["http"]["port"], ports["http"]["targetPort"], ports["http"]["appProtocol"]) == (8100, 8100, "http")
    assert (ports["grpc"]["port"], ports["grpc"]["targetPort"], ports["grpc"]["appProtocol"]) == (9100, 9100, "grpc")
    assert "annotations" not in svc["metadata"]


def test_serve_service_selector_matches_a_pod_once_labelled_healthy():
    s = spec(workerGroups=[{"name": "cpu"}])
    selector = network.serve_service(cluster="demo", namespace=NS, uid=UID, spec=s)["spec"]["selector"]
    for pod in build_pods(s):
        labels = pod["metadata"]["labels"]
        assert not selector.items() <= labels.items()
        assert selector.items() <= {**labels, common.PROXY_LABEL: common.PROXY_HEALTHY}.items()


def test_serve_service_head_only_selects_only_the_head():
    s = spec(serve={"proxyLocation": "HeadOnly"}, workerGroups=[{"name": "cpu"}])
    svc = network.serve_service(cluster="demo", namespace=NS, uid=UID, spec=s)
    assert svc["spec"]["selector"] == {
        common.CLUSTER_LABEL: "demo", common.PROXY_LABEL: common.PROXY_HEALTHY, common.NODE_TYPE_LABEL: "head",
    }
    head, worker = build_pods(s)
    healthy = {common.PROXY_LABEL: common.PROXY_HEALTHY}
    assert svc["spec"]["selector"].items() <= {**head["metadata"]["labels"], **healthy}.items()
    assert not svc["spec"]["selector"].items() <= {**worker["metadata"]["labels"], **healthy}.items()


def test_serve_service_type_and_annotations():
    s = spec(service={"type": "LoadBalancer", "annotations": {"lb.example/internal": "true"}})
    svc = network.serve_service(cluster="demo", namespace=NS, uid=UID, spec=s)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {"lb.example/internal": "true"}


# --- Ingress ---------------------------------------------------------------------------------------------


def build_ingress(routes: list[str], **ingress: Any) -> dict[str, Any] | None:
    s = spec(ingress={"enabled": True, **ingress}, serve={"httpPort": 8100})
    return network.ingress(cluster="demo", namespace=NS, uid=UID, spec=s, routes=routes)


def test_ingress_one_prefix_path_per_route_to_the_serve_service():
    ing = build_ingress(["/summarize", "/", "/hello"])
    assert (ing["apiVersion"], ing["kind"]) == ("networking.k8s.io/v1", "Ingress")
    assert ing["metadata"]["name"] == "demo-serve"
    assert_owned(ing)
    (rule,) = ing["spec"]["rules"]
    assert "host" not in rule
    paths = rule["http"]["paths"]
    assert [p["path"] for p in paths] == ["/", "/hello", "/summarize"]
    for path in paths:
        assert path["pathType"] == "Prefix"
        assert path["backend"] == {"service": {"name": "demo-serve", "port": {"name": "http"}}}
    assert "tls" not in ing["spec"] and "ingressClassName" not in ing["spec"]
    assert "annotations" not in ing["metadata"]


def test_ingress_backend_port_exists_on_the_serve_service():
    svc = network.serve_service(cluster="demo", namespace=NS, uid=UID, spec=spec())
    ing = build_ingress(["/a"])
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}


def test_ingress_host_tls_class_and_annotations():
    ing = build_ingress(
        ["/a"], host="serve.example.com", className="nginx",
        tls=[{"hosts": ["serve.example.com"], "secretName": "serve-tls"}],
        annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "10m"},
    )
    assert ing["spec"]["rules"][0]["host"] == "serve.example.com"
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["serve.example.com"], "secretName": "serve-tls"}]
    assert ing["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "10m"}


def test_no_ingress_when_disabled_or_nothing_is_routed():
    disabled = spec(ingress={"enabled": False, "host": "h"})
    assert network.ingress(cluster="demo", namespace=NS, uid=UID, spec=disabled, routes=["/a"]) is None
    assert build_ingress([]) is None


# --- issue 20: a GCS storage namespace of the cluster's own ----------------------------------------------------


def test_an_explicit_storage_namespace_is_a_prefix_of_the_clusters_own_in_its_head_pod():
    from serveplane.operator.manifests import rayenv

    ft = {"redisAddress": "redis.shared:6379", "externalStorageNamespace": "from-kuberay",
          "redisPassword": {"secretKeyRef": {"name": "redis", "key": "password"}}}
    s = spec(gcsFaultTolerance=ft)
    head, *_ = build_pods(s)
    env = {e["name"]: e for e in ray_container(head)["env"]}
    digest = rayenv.uid_digest(UID)
    assert env["RAY_external_storage_namespace"]["value"] == f"from-kuberay-{digest}-{GEN}"
    assert env[rayenv.REDIS_PASSWORD_ENV] == {
        "name": rayenv.REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}},
    }
    # Another UID, same name, namespace and spec: another generation, another storage namespace.
    assert generation_of(s, uid="another-uid") != generation_of(s)
