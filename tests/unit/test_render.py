"""The dry run: examples/*.yaml -> the objects and the Serve config the operator would create."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.operator import cli, planner
from serveplane.operator.actions import Apply, Create, CreatePod, CreateSecret
from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.manifests import common, pods
from serveplane.operator.render import PLACEHOLDER_DIGEST, PLACEHOLDER_UID, render
from serveplane.operator.render import with_defaults as render_defaults
from serveplane.operator.snapshot import Snapshot, TokenSecret
from serveplane.operator.stages.context import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray.serve.schema import ServeDeploySchema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GPU_EXAMPLE = EXAMPLES / "gpu-cluster.yaml"
# The demo `serveplane dev up` applies: every example but the GPU cluster, which needs GPU nodes.
# What `dev up` applies (serveplane.localcluster.trial.EXAMPLE_FILES); grpc.yaml is applied by hand (README: gRPC).
DEMO_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if p not in (GPU_EXAMPLE, EXAMPLES / "grpc.yaml"))
IMAGE = "operator-default:1"


def load(*paths: Path) -> list[dict[str, Any]]:
    return [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]


def example_docs() -> list[dict[str, Any]]:
    return load(*DEMO_EXAMPLES)


def generation(doc: dict[str, Any], image: str = IMAGE) -> str:
    """The generation a ServeCluster document asks for, as the operator names it on a cluster of the placeholder
    UID in `default`."""
    meta = doc["metadata"]
    name = pods.generation_name(
        cluster=meta["name"], namespace=meta.get("namespace", "default"), uid=PLACEHOLDER_UID,
        spec=ServeClusterSpec.model_validate(doc.get("spec") or {}), image=image,
    )
    assert len(name) == 5 and all(c in "0123456789abcdef" for c in name)
    return name


def demo_generation() -> str:
    (cluster,) = [d for d in example_docs() if d["kind"] == "ServeCluster"]
    return generation(cluster)


def sections_by_title(sections: list[tuple[str, Any]]) -> dict[str, Any]:
    out = {}
    for title, content in sections:
        key = title.split(" (")[0].split(" of ")[0]
        assert key not in out, f"two sections titled {key!r}"
        out[key] = content
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    sections = render(example_docs(), IMAGE)
    titles = [t for t, _ in sections]
    assert titles[0] == "Kubernetes objects of ServeCluster default/demo"
    assert titles[1].startswith("Serve config (PUT /api/serve/applications/, hash ")
    assert titles[2] == "Verdicts"
    return sections_by_title(sections)


def test_examples_exist():
    kinds = sorted(d["kind"] for d in example_docs())
    assert kinds == ["ServeApplication", "ServeApplication", "ServeCluster", "ServeDeployment"]


def test_objects_are_pods_services_and_an_ingress(rendered):
    objs = rendered["Kubernetes objects"]
    gen = demo_generation()
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Pod", f"demo-{gen}-head"), ("Pod", f"demo-{gen}-worker-cpu-0"), ("Pod", f"demo-{gen}-worker-cpu-1"),
        ("Service", "demo-head"), ("Service", f"demo-{gen}-head"), ("Service", "demo-serve"),
        ("Ingress", "demo-serve"), ("NetworkPolicy", "demo-ray"), ("Secret", "demo-ray-token"),
    ]
    for obj in objs:
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["labels"][common.CLUSTER_LABEL] == "demo"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == PLACEHOLDER_UID


def test_pods_are_one_generation_and_both_head_services_select_its_head(rendered):
    objs = rendered["Kubernetes objects"]
    gen = demo_generation()
    ray = [o for o in objs if o["kind"] == "Pod"]
    assert {p["metadata"]["labels"][common.GENERATION_LABEL] for p in ray} == {gen}
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    head, *workers = ray
    for name in ("demo-head", f"demo-{gen}-head"):
        selector = services[name]["spec"]["selector"]
        assert selector[common.GENERATION_LABEL] == gen
        assert selector.items() <= head["metadata"]["labels"].items(), name
        assert not any(selector.items() <= w["metadata"]["labels"].items() for w in workers), name
    for worker in workers:
        address = f"--address=demo-{gen}-head.default.svc.cluster.local:{common.GCS_PORT}"
        assert address in worker["spec"]["containers"][0]["args"]


def test_pods_use_the_image_of_the_example(rendered):
    pods = [o for o in rendered["Kubernetes objects"] if o["kind"] == "Pod"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"serveplane/runtime:0.1.0"}
    head_args = pods[0]["spec"]["containers"][0]["args"]
    assert "--ray-param=num-cpus=2" in head_args


def test_ingress_routes_both_example_applications(rendered):
    ingress = next(o for o in rendered["Kubernetes objects"] if o["kind"] == "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "demo.example.com"
    assert [p["path"] for p in rule["http"]["paths"]] == ["/composed", "/hello"]


def test_the_grpc_example_adds_its_servicer_and_names_a_new_generation_of_demo():
    sections = sections_by_title(render(load(*DEMO_EXAMPLES, EXAMPLES / "grpc.yaml"), IMAGE))
    config = sections["Serve config"]
    ServeDeploySchema.model_validate(config)
    assert config["grpc_options"]["grpc_servicer_functions"] == [
        "serveplane.examples.greeter_pb2_grpc.add_GreeterServicer_to_server"
    ]
    assert {"greeter-en", "greeter-fr"} <= {a["name"] for a in config["applications"]}
    objs = sections["Kubernetes objects"]
    heads = [o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-head")]
    assert heads and all(demo_generation() not in h["metadata"]["name"] for h in heads), (
        "Serve reads its gRPC servicers only at start: demo must roll to a new generation"
    )


def test_serve_config_has_both_example_apps_and_serve_accepts_it(rendered):
    config = rendered["Serve config"]
    ServeDeploySchema.model_validate(config)
    apps = {a["name"]: a for a in config["applications"]}
    assert sorted(apps) == ["composed", "hello"]
    assert apps["hello"]["import_path"] == "serveplane.examples.hello:app"
    assert apps["hello"]["route_prefix"] == "/hello"
    assert apps["hello"]["args"] == {"greeting": "Hello from serveplane"}
    assert apps["hello"]["deployments"] == [
        {"name": "Hello", "num_replicas": 2, "ray_actor_options": {"num_cpus": 0.1}, "max_replicas_per_node": 1},
    ]
    assert apps["composed"]["import_path"] == "serveplane.examples.composed:app"
    assert apps["composed"]["args"] == {"factor": 2}
    assert config["http_options"]["port"] == 8000
    assert config["proxy_location"] == "EveryNode"


def test_servedeployment_waits_for_the_first_build(rendered):
    verdicts = rendered["Verdicts"]
    assert verdicts["applications"]["hello"].startswith("ok Composed")
    assert verdicts["applications"]["composed"].startswith("ok Composed")
    assert "WaitingForApplication" in verdicts["deployments"]["composed-model"]
    composed = next(a for a in rendered["Serve config"]["applications"] if a["name"] == "composed")
    assert composed["deployments"] == []


def test_rendering_does_not_change_the_input():
    docs = example_docs()
    render(docs, IMAGE)
    assert docs == example_docs()


def test_default_image_is_used_when_the_cluster_names_none():
    docs = [{"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "metadata": {"name": "c"},
             "spec": {}}]
    objs = sections_by_title(render(docs, IMAGE))["Kubernetes objects"]
    assert objs[0]["spec"]["containers"][0]["image"] == IMAGE
    # Two head Services (the cluster's and the generation's), the serve Service, and no Ingress.
    assert [o["kind"] for o in objs] == ["Pod", "Service", "Service", "Service", "NetworkPolicy", "Secret"]


def test_no_token_is_rendered_only_a_reference_to_the_secret(rendered):
    """render has no cluster, so no token exists: the Secret comes without data, pods reference it."""
    objs = rendered["Kubernetes objects"]
    secret = next(o for o in objs if o["kind"] == "Secret")
    assert "data" not in secret and "stringData" not in secret and secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "auth"
    for pod in (o for o in objs if o["kind"] == "Pod"):
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"] == {"name": "RAY_AUTH_MODE", "value": "token"}
        assert env["RAY_AUTH_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "demo-ray-token", "key": "token"}}


def test_disabled_auth_and_network_policy_render_neither():
    spec = {"auth": {"mode": "Disabled"}, "networkPolicy": {"enabled": False}}
    docs = [{"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "metadata": {"name": "c"}, "spec": spec}]
    objs = sections_by_title(render(docs, IMAGE))["Kubernetes objects"]
    assert [o["kind"] for o in objs] == ["Pod", "Service", "Service", "Service"]
    assert not [e for e in objs[0]["spec"]["containers"][0]["env"] if e["name"].startswith("RAY_AUTH_")]


def test_only_applications_of_the_cluster_and_namespace(k8s):
    cluster = k8s.cluster("c", namespace="ns1")
    mine = k8s.app("mine", {"cluster": "c"}, namespace="ns1")
    other_cluster = k8s.app("other", {"cluster": "d"}, namespace="ns1")
    other_namespace = k8s.app("far", {"cluster": "c"}, namespace="ns2")
    default_cluster = k8s.app("dflt", namespace="ns1")
    del default_cluster["spec"]["cluster"]
    config = sections_by_title(render([cluster, mine, other_cluster, other_namespace, default_cluster], IMAGE))
    assert [a["name"] for a in config["Serve config"]["applications"]] == ["mine"]


def test_invalid_cluster_is_reported_not_rendered():
    docs = [{"kind": "ServeCluster", "metadata": {"name": "c"}, "spec": {"workerGroups": [{"name": "BAD"}]}}]
    (section,) = render(docs, IMAGE)
    assert section[0] == "ServeCluster default/c is invalid"
    assert "spec.workerGroups.0.name" in section[1]


def test_nothing_without_a_cluster():
    assert render([d for d in example_docs() if d["kind"] != "ServeCluster"], IMAGE) == []


def test_cli_render_prints_yaml_that_reads_back(capsys, monkeypatch):
    monkeypatch.setenv("SERVEPLANE_DEFAULT_IMAGE", IMAGE)
    with pytest.raises(SystemExit) as done:
        cli.main(["render", *map(str, DEMO_EXAMPLES)])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "&id" not in out and "*id" not in out, "YAML anchors/aliases in kubectl-bound output"
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d.get("kind") for d in docs if isinstance(d, dict)]
    assert kinds.count("Pod") == 3 and kinds.count("Service") == 3 and kinds.count("Ingress") == 1
    configs = [d for d in docs if isinstance(d, dict) and "applications" in d and "proxy_location" in d]
    assert [sorted(a["name"] for a in c["applications"]) for c in configs] == [["composed", "hello"]]


def test_cli_render_fails_without_a_cluster(tmp_path, capsys):
    only_app = tmp_path / "app.yaml"
    only_app.write_text((EXAMPLES / "hello.yaml").read_text())
    with pytest.raises(SystemExit) as done:
        cli.main(["render", str(only_app)])
    assert done.value.code == 1
    assert "no ServeCluster" in capsys.readouterr().err


def test_cli_crds_writes_what_crd_files_generates(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["crds", "--output", str(tmp_path / "out")])
    assert done.value.code == 0
    written = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert written == cli.crd_files()


# --- examples/gpu-cluster.yaml --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_gpu_pods() -> list[dict[str, Any]]:
    """The pods `serveplane render examples/gpu-cluster.yaml` prints."""
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
        cli.main(["render", str(GPU_EXAMPLE)])
    assert done.value.code == 0
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if isinstance(d, dict)]
    return [d for d in docs if d.get("kind") == "Pod"]


@pytest.fixture(scope="module")
def gpu_pods(rendered_gpu_pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The same pods by their name without the generation (`gpu-head`, `gpu-worker-gpu-0`)."""
    gen = rendered_gpu_pods[0]["metadata"]["labels"][common.GENERATION_LABEL]
    return {d["metadata"]["name"].replace(f"gpu-{gen}-", "gpu-", 1): d for d in rendered_gpu_pods}


def _ray(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "ray")


def test_gpu_example_is_a_cluster_of_its_own():
    (cluster,) = load(GPU_EXAMPLE)
    assert (cluster["kind"], cluster["metadata"]["name"]) == ("ServeCluster", "gpu")
    assert GPU_EXAMPLE not in DEMO_EXAMPLES


def test_gpu_example_pods(rendered_gpu_pods):
    (cluster,) = load(GPU_EXAMPLE)
    gen = generation(cluster)  # its spec names its image: the default is no input
    assert {p["metadata"]["labels"][common.GENERATION_LABEL] for p in rendered_gpu_pods} == {gen}
    assert sorted(p["metadata"]["name"] for p in rendered_gpu_pods) == [
        f"gpu-{gen}-head", f"gpu-{gen}-worker-cpu-0", f"gpu-{gen}-worker-cpu-1", f"gpu-{gen}-worker-gpu-0",
    ]


def test_gpu_example_head_offers_no_cpu_to_replicas(gpu_pods):
    args = _ray(gpu_pods["gpu-head"])["args"]
    assert "--ray-param=num-cpus=0" in args
    assert not any(a.startswith("--ray-param=num-gpus") for a in args)


def test_gpu_example_gpu_group_gets_its_template_and_gpu_from_its_limit(gpu_pods):
    pod = gpu_pods["gpu-worker-gpu-0"]
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert pod["metadata"]["labels"][common.GROUP_LABEL] == "gpu"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["spec"]["priorityClassName"] == "serving"
    ray = _ray(pod)
    assert ray["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"--ray-param=num-gpus=1", "--ray-param=num-cpus=4", f"--ray-param=memory={16 * 2**30}"} <= set(
        ray["args"]
    )
    for other in ("gpu-head", "gpu-worker-cpu-0"):
        assert "nodeSelector" not in gpu_pods[other]["spec"] and "tolerations" not in gpu_pods[other]["spec"]
        assert not any(a.startswith("--ray-param=num-gpus") for a in _ray(gpu_pods[other])["args"])


def test_gpu_example_pods_have_a_memory_backed_dev_shm_and_no_privileges(gpu_pods):
    for name, pod in gpu_pods.items():
        ray = _ray(pod)
        assert {"name": "dshm", "mountPath": "/dev/shm"} in ray["volumeMounts"], name
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "dshm"]
        memory_limit = 16 * 2**30 if name == "gpu-worker-gpu-0" else 4 * 2**30
        assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": str(math.ceil(memory_limit * 0.3))}
        assert ray["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                          "seccompProfile": {"type": "RuntimeDefault"}}


def test_gpu_example_token_comes_from_its_secret(gpu_pods):
    for name, pod in gpu_pods.items():
        env = {e["name"]: e for e in _ray(pod)["env"]}
        assert env["RAY_AUTH_TOKEN"] == {
            "name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "gpu-ray-token", "key": "token"}},
        }, name


def test_an_autoscaling_cluster_renders_the_autoscalers_account_binding_and_container():
    docs = [{"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "metadata": {"name": "c"},
             "spec": {"autoscaling": {"enabled": True},
                      "workerGroups": [{"name": "cpu", "replicas": 1, "maxReplicas": 3}]}}]
    objs = sections_by_title(render(docs, IMAGE, autoscaler_role="rel-autoscaler"))["Kubernetes objects"]
    kinds = [o["kind"] for o in objs]
    assert kinds[-2:] == ["ServiceAccount", "RoleBinding"]
    assert objs[-1]["roleRef"]["name"] == "rel-autoscaler"
    assert objs[-1]["subjects"] == [{"kind": "ServiceAccount", "name": "c-autoscaler", "namespace": "default"}]
    head = objs[0]
    assert [c["name"] for c in head["spec"]["containers"]] == ["ray", "autoscaler"]


@pytest.mark.parametrize("text", ["8403e57", "1e5", "0o17", "-2E3"])
def test_strings_kubectl_would_read_as_numbers_are_quoted(text):
    from serveplane.operator import yamltext

    dumped = yamltext.dump({"generation": text, "plain": "demo-8403e"})
    assert dumped == f"generation: '{text}'\nplain: demo-8403e\n"
    assert yaml.safe_load(dumped) == {"generation": text, "plain": "demo-8403e"}


def test_render_shows_exactly_what_the_operators_rounds_create_on_an_empty_namespace() -> None:
    """The operator's own rounds, from nothing: the first makes the token Secret, the next the pods that carry its
    digest; every object they create or apply is what `render` lists, field for field, and nothing else."""
    docs = example_docs()
    (cluster,) = [render_defaults(d) for d in docs if d["kind"] == "ServeCluster"]
    apps = tuple(render_defaults(d) for d in docs if d["kind"] == "ServeApplication")
    sdeps = tuple(render_defaults(d) for d in docs if d["kind"] == "ServeDeployment")
    snap = Snapshot(namespace="default", name=cluster["metadata"]["name"], cluster=cluster, apps=apps,
                    deployments=sdeps, now=datetime(2026, 1, 1, tzinfo=UTC))
    made: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(3):  # a few rounds on a world where nothing the operator makes ever appears but the Secret
        for action in planner.plan_round(snap, Settings(image=IMAGE)).actions:
            match action:
                case CreatePod(pod=obj) | Apply(obj=obj) | Create(obj=obj) | CreateSecret(secret=obj):
                    made.setdefault((obj["kind"], obj["metadata"]["name"]), obj)
            if isinstance(action, CreateSecret):
                secret = TokenSecret(action.secret["metadata"]["name"], digest=PLACEHOLDER_DIGEST)
                snap = dataclasses.replace(snap, token_secret=secret)
    rendered = sections_by_title(render(docs, IMAGE))["Kubernetes objects"]
    assert {(o["kind"], o["metadata"]["name"]): o for o in rendered} == made
    assert any(o["kind"] == "Pod" for o in rendered), "the pods are among them once the Secret exists"
