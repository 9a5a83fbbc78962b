"""PURE: KubeRay's RayService (or a RayCluster and a Serve config) -> ServeCluster, ServeApplications, ServeDeployments.

`serveplane convert` (cli.py) reads the files and prints `to_yaml(convert(...))`. Nothing is contacted.

- The Serve config (a RayService's serveConfigV2, or the file given with --serve-config) maps GENERICALLY: a
  snake_case key is looked up in the API model's `model_fields`, nested models key by key, each value validated
  by the field's own type, so a field added to the models is converted without a change here; the models then
  emit camelCase. One ServeApplication per application; a deployment's numReplicas/autoscalingConfig go to a
  ServeDeployment (so `kubectl scale` works on it), its other settings inline in the application's deployments[].
- The Ray cluster (head group, worker groups, autoscaler, GCS fault tolerance, RayService's upgrade strategy and
  serve Service) maps by the KubeRay v1.5.0 field names, onto what ServeCluster has.
- Whatever has no equivalent is named, with why, in a `# not converted: <path>: <why>` comment at the top of the
  document it belongs to; nothing is dropped silently. Every Output records which input paths it mapped and which
  it noted, so a test can check that each leaf of the input is one or the other.
- Every document is validated by its pydantic model. One the models refuse is printed commented out, with why, so
  it can be fixed by hand (an import path with a slash, for one).
- Other documents of the input (the Secrets, ConfigMaps, Services a sample ships with) are passed through.

The modules, each importing only those before it: outputs (paths, notes, Output), mapping (onto the models), names
(of the new documents), dispatch (a KubeRay object key by key), serveconfig (the Serve options), applications,
pods (head and worker groups), clusterwide (autoscaler, GCS fault tolerance), cluster (the whole ServeClusterSpec),
documents (`convert`), text (`to_yaml`).
"""
from __future__ import annotations

from .documents import SERVE_CONFIG_FILE, ConvertError, convert
from .mapping import map_onto
from .names import k8s_name
from .outputs import Conversion, Output, child, within
from .pods import RESERVED_RAY_PARAMS
from .serveconfig import serve_options
from .text import document_text, to_yaml

__all__ = [
    "RESERVED_RAY_PARAMS",
    "SERVE_CONFIG_FILE",
    "Conversion",
    "ConvertError",
    "Output",
    "child",
    "convert",
    "document_text",
    "k8s_name",
    "map_onto",
    "serve_options",
    "to_yaml",
    "within",
]
