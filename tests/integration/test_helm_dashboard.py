"""The chart's Grafana dashboard ConfigMap (templates/grafana-dashboard.yaml), with the real helm of test_helm.py.

Off by default; on, one ConfigMap that Grafana's dashboard sidecar (kube-prometheus-stack) picks up by its label
grafana_dashboard: "1", holding files/grafana-dashboard.json byte for byte, accepted by the API server; its
namespace, labels and annotations from the values; bad values refused by values.schema.json. What the dashboard
queries is checked in tests/unit/test_grafana_dashboard.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.localcluster import helm as localhelm
from serveplane.localcluster import promql
from serveplane.localcluster.controlplane import ControlPlane

CHART = Path(__file__).resolve().parents[2] / "helm" / "serveplane"
RELEASE = "serveplane"
NAMESPACE = "serveplane-system"
DATA_KEY = "serveplane.json"


@pytest.fixture(scope="module")
def helm(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> localhelm.Helm:
    return localhelm.Helm(controlplane, tmp_path_factory.mktemp("helm-dashboard-home"))


def template(helm: localhelm.Helm, *values: str) -> list[dict[str, Any]]:
    out = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def config_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == "ConfigMap"]


def test_no_dashboard_by_default(helm: localhelm.Helm) -> None:
    assert config_maps(template(helm)) == []
    assert config_maps(template(helm, "--set", "grafanaDashboard.labels.team=platform")) == []


def test_the_dashboard_config_map(helm: localhelm.Helm, controlplane: ControlPlane) -> None:
    (config_map,) = config_maps(template(helm, "--set", "grafanaDashboard.enabled=true"))
    meta = config_map["metadata"]
    assert (meta["name"], meta["namespace"]) == (f"{RELEASE}-grafana-dashboard", NAMESPACE)
    assert meta["labels"]["grafana_dashboard"] == "1", "the sidecar's label, a string"
    assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert "annotations" not in meta
    # The JSON is the chart's file, byte for byte, under one key.
    assert list(config_map["data"]) == [DATA_KEY]
    assert config_map["data"][DATA_KEY] == promql.DASHBOARD.read_text()
    assert json.loads(config_map["data"][DATA_KEY])["uid"] == "serveplane"
    controlplane.kubectl("create", "namespace", NAMESPACE, check=False)
    out = controlplane.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(config_map)).stdout
    assert f"configmap/{RELEASE}-grafana-dashboard created (server dry run)" in out


def test_namespace_labels_and_annotations(helm: localhelm.Helm, controlplane: ControlPlane) -> None:
    (config_map,) = config_maps(template(
        helm, "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring",
        "--set", "grafanaDashboard.labels.release=prometheus",
        "--set", "grafanaDashboard.annotations.grafana_folder=ML",
    ))
    meta = config_map["metadata"]
    assert meta["namespace"] == "monitoring", "where Grafana's sidecar looks"
    assert meta["labels"]["release"] == "prometheus" and meta["labels"]["grafana_dashboard"] == "1"
    assert meta["annotations"] == {"grafana_folder": "ML"}
    # A sidecar configured with another label value.
    (config_map,) = config_maps(template(
        helm, "--set", "grafanaDashboard.enabled=true", "--set-string", "grafanaDashboard.labels.grafana_dashboard=yes",
    ))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "yes"


def test_lint_with_the_dashboard(helm: localhelm.Helm) -> None:
    helm("lint", "--strict", str(CHART), "--set", "grafanaDashboard.enabled=true",
         "--set", "grafanaDashboard.namespace=monitoring")


BAD_VALUES = {
    "a typo": (["--set", "grafanaDashboard.enable=true"], "additional properties 'enable' not allowed"),
    "enabled: yes please": (["--set", "grafanaDashboard.enabled=please"], "/grafanaDashboard/enabled"),
    "not a namespace": (["--set", "grafanaDashboard.namespace=Monitoring_NS"], "/grafanaDashboard/namespace"),
    "a label that is not a string": (["--set-json", 'grafanaDashboard.labels={"a":{"b":1}}'],
                                     "/grafanaDashboard/labels/a"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused(helm: localhelm.Helm, case: str) -> None:
    args, message = BAD_VALUES[case]
    result = helm("template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
