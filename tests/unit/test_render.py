"""The dry run: examples/*.yaml -> the objects and the Serve config the operator would create."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.operator import cli
from serveplane.operator.manifests import common
from serveplane.operator.render import PLACEHOLDER_UID, render

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ray.serve.schema import ServeDeploySchema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IMAGE = "operator-default:1"


def example_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


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
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Pod", "demo-head"), ("Pod", "demo-worker-cpu-0"), ("Pod", "demo-worker-cpu-1"),
        ("Service", "demo-head"), ("Service", "demo-serve"), ("Ingress", "demo-serve"),
    ]
    for obj in objs:
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["labels"][common.CLUSTER_LABEL] == "demo"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == PLACEHOLDER_UID


def test_pods_use_the_image_of_the_example(rendered):
    pods = [o for o in rendered["Kubernetes objects"] if o["kind"] == "Pod"]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"serveplane/runtime:0.1.0"}
    head_args = pods[0]["spec"]["containers"][0]["args"]
    assert "--ray-param=num-cpus=2" in head_args


def test_ingress_routes_both_example_applications(rendered):
    ingress = rendered["Kubernetes objects"][-1]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "demo.example.com"
    assert [p["path"] for p in rule["http"]["paths"]] == ["/composed", "/hello"]


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
    assert [o["kind"] for o in objs] == ["Pod", "Service", "Service"]  # no Ingress unless enabled


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
        cli.main(["render", *map(str, sorted(EXAMPLES.glob("*.yaml")))])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "&id" not in out and "*id" not in out, "YAML anchors/aliases in kubectl-bound output"
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = [d.get("kind") for d in docs if isinstance(d, dict)]
    assert kinds.count("Pod") == 3 and kinds.count("Service") == 2 and kinds.count("Ingress") == 1
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
