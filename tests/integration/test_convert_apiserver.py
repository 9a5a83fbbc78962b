"""`serveplane convert`'s output of every KubeRay v1.5.0 sample against the real API server with serveplane's CRDs.

A server-side dry run (`kubectl apply --dry-run=server`): the CRDs' schemas and CEL rules check the converted
ServeCluster, ServeApplications and ServeDeployments, and Kubernetes' own validation and admission check the
objects the operator would build from them (`serveplane render`): pods with the samples' pod templates merged in,
Services, the NetworkPolicy, the autoscaler's account. Nothing is created.

Not called test_convert.py like its unit test: the test folders are not packages, so pytest refuses two test modules
of one name in a run.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import install
from serveplane.operator import convert
from serveplane.operator.render import render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kuberay"
SAMPLES = sorted(FIXTURES.glob("ray-service.*.yaml")) + sorted(FIXTURES.glob("ray-cluster.*.yaml"))
SERVE_CONFIG = FIXTURES / "serve-config.yaml"
# The vLLM sample's placeholders, which its reader is told to replace; Kubernetes refuses `$KSA_NAME` as a name.
PLACEHOLDERS = {"$KSA_NAME": "ksa-name", "$VLLM_IMAGE": "vllm/vllm-tpu:latest", "$GSBUCKET": "bucket"}


def sample_id(path: Path) -> str:
    # Short, and without dots: the `namespace` fixture names the test's namespace after it.
    return path.stem.replace("ray-service.", "svc-").replace("ray-cluster.", "rc-").replace(".", "-")


@pytest.fixture(scope="module")
def crds(controlplane: ControlPlane) -> Iterator[ControlPlane]:
    """serveplane's CRDs (and the operator's RBAC) installed, as for the operator's own tests; no operator runs."""
    install(controlplane)
    yield controlplane


def converted(sample: Path) -> convert.Conversion:
    text = sample.read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    docs = [d for d in yaml.safe_load_all(text) if d]
    config = yaml.safe_load(SERVE_CONFIG.read_text()) if any(d["kind"] == "RayCluster" for d in docs) else None
    return convert.convert(docs, config)


def dry_run(cp: ControlPlane, namespace: str, text: str) -> list[str]:
    """The objects the API server accepted (created, or configured when they exist), as kubectl names them."""
    out = cp.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-", input=text).stdout
    return re.findall(r"^(\S+) (?:created|configured|unchanged) \(server dry run\)$", out, flags=re.MULTILINE)


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_dry_run(crds: ControlPlane, namespace: str, sample: Path) -> None:
    """The printed output as `kubectl apply -f -` takes it: every document accepted, none left out."""
    conversion = converted(sample)
    expected = [o.obj for o in conversion.outputs if o.obj is not None and not o.disabled]
    created = dry_run(crds, namespace, convert.to_yaml(conversion))
    assert len(created) == len(expected), created
    ours = [c for c in created if c.split("/")[0].endswith(".serveplane.dev")]
    assert len(ours) == sum(1 for d in expected if d["apiVersion"] == "serveplane.dev/v1alpha1") >= 1


def built_objects(conversion: convert.Conversion, namespace: str) -> list[dict[str, Any]]:
    """The Kubernetes objects `serveplane render` says the operator would create for the converted resources."""
    docs = [o.obj for o in conversion.outputs if o.obj is not None and not o.disabled]
    sections = render(docs, "serveplane/runtime:0.1.0")
    built = [o for _, content in sections if isinstance(content, list) for o in content]
    return [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in built]


@pytest.mark.parametrize("sample", SAMPLES, ids=sample_id)
def test_pods(crds: ControlPlane, namespace: str, sample: Path) -> None:
    """The operator's objects for the converted sample: its pods with the KubeRay pod templates merged in (volumes,
    tolerations, nodeSelectors, sidecars, GPU and TPU limits) pass the API server's validation and admission."""
    built = built_objects(converted(sample), namespace)
    accounts = {o["spec"].get("serviceAccountName") for o in built if o["kind"] == "Pod"} - {None}
    # The ServiceAccount admission plugin wants a pod's to exist (not merely in the same dry run): the sample's,
    # or the autoscaler's, which is then `configured` rather than `created`.
    for account in sorted(accounts):
        crds.kubectl("create", "serviceaccount", account, "-n", namespace)
    # As JSON: the objects hold hashes (the generation label) that a YAML reader could take for numbers.
    created = dry_run(crds, namespace, json.dumps({"apiVersion": "v1", "kind": "List", "items": built}))
    assert len(created) == len(built), created
    assert sum(1 for o in built if o["kind"] == "Pod") >= 1
