"""PURE: the documents of a KubeRay file, converted: `convert`, the entry point of the conversion.

The only module that sees a whole KubeRay object (kind, metadata, status) and a whole file: a RayService or RayCluster
becomes a ServeCluster and its ServeApplications and ServeDeployments, other kinds are noted or passed through.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..api.cluster import ServeClusterSpec
from ..api.kinds import SERVE_CLUSTER
from .applications import applications, disable
from .cluster import ClusterParts, ray_cluster, ray_service_spec, set_serve
from .clusterwide import GCS_ANNOTATIONS
from .dispatch import dispatch
from .mapping import validated
from .names import Context, k8s_name
from .outputs import ROOT, Conversion, Output, child

RAY_GROUP = "ray.io/"
SERVE_CONFIG_FILE = "serveConfig"
"""The root of the paths into the Serve config given apart from a RayCluster (--serve-config)."""


class ConvertError(ValueError):
    """The input cannot be converted at all (not a part of it: those are noted in the output)."""


_ANNOTATION_REASONS = {
    "ray.io/initializing-timeout": "serveplane has no initializing timeout: an upgrade fails after "
    "spec.upgradeStrategy.timeoutSeconds",
    "ray.io/overwrite-container-cmd": "serveplane's runtime always starts Ray itself",
    "ray.io/enable-serve-service": "serveplane always creates the serve Service",
}


def _annotations(annotations: Any, path: str, out: Output) -> dict[str, Any]:
    """The annotations copied to the ServeCluster: all but Ray's own (ray.io/), which are settings."""
    copied: dict[str, Any] = {}

    def copy(name: str, text: Any, where: str) -> None:
        if name.startswith(RAY_GROUP):
            out.note(where, "a KubeRay setting serveplane has no equivalent for")
        else:
            copied[name] = text
            out.map(where)

    gcs = {name: lambda v, w: None for name in GCS_ANNOTATIONS}  # gcs_fault_tolerance's
    dispatch(annotations, path, out, gcs, _ANNOTATION_REASONS, "annotations", otherwise=copy)
    return copied


def _metadata(meta: Any, path: str, out: Output) -> dict[str, Any]:
    """The ServeCluster's annotations from the KubeRay object's metadata; its name, namespace and labels are the
    new documents' (Context)."""
    copied: dict[str, Any] = {}

    def annotations(value: Any, where: str) -> None:
        copied.update(_annotations(value, where, out))

    def labels(value: Any, where: str) -> None:
        if isinstance(value, dict):
            out.map(where)
        else:
            out.note(where, "labels must be a map")

    handlers = {"name": lambda v, w: out.map(w), "namespace": lambda v, w: out.map(w), "labels": labels,
                "annotations": annotations}
    server = "set by the API server for the KubeRay object; the new objects get their own"
    if meta is None:
        out.map(path)
    else:
        dispatch(meta, path, out, handlers, {}, "metadata", otherwise=lambda k, v, w: out.note(w, server))
    return copied


def _context(doc: Mapping[str, Any], image: str | None, taken: set[tuple[str, str]] | None) -> Context:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = str((meta or {}).get("name") or "converted")
    labels = (meta or {}).get("labels")
    return Context(
        source=f"{doc.get('kind')} {name}",
        cluster=k8s_name(name),
        namespace=(meta or {}).get("namespace"),
        labels=dict(labels) if isinstance(labels, dict) else {},
        image=image,
        taken=set() if taken is None else taken,
    )


def _cluster_document(parts: ClusterParts, annotations: dict[str, Any]) -> None:
    """Validate the assembled ServeClusterSpec and make the document of it."""
    ctx, out = parts.ctx, parts.out
    name = ctx.unique(SERVE_CLUSTER.kind, ctx.cluster)
    wire, error = validated(ServeClusterSpec, parts.spec)
    out.obj = ctx.document(SERVE_CLUSTER.kind, name, wire)
    if annotations:
        out.obj["metadata"]["annotations"] = annotations
    if error:
        disable(out, "spec", f"ServeClusterSpec refuses it: {error}", [])


def _kubernetes_object(doc: Mapping[str, Any], out: Output) -> tuple[Any, str, dict[str, Any]]:
    """The parts every KubeRay object has: (spec, its path, the annotations); apiVersion, kind and status noted."""
    out.map("apiVersion")
    out.map("kind")
    if "status" in doc:
        out.note("status", "the operator writes the new objects' status")
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            out.note(str(key), "not a field of a Kubernetes object serveplane knows")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    annotations = (meta or {}).get("annotations")
    return doc.get("spec"), "spec", annotations if isinstance(annotations, dict) else {}


def convert_ray_service(
    doc: Mapping[str, Any], image: str | None = None, taken: set[tuple[str, str]] | None = None
) -> list[Output]:
    """A RayService -> its ServeCluster, then each application's ServeApplication and ServeDeployments. `taken`:
    the (kind, name) of documents made before, shared by the documents of one file so that names stay unique."""
    ctx = _context(doc, image, taken)
    parts = ClusterParts(Output(None, ctx.source), ctx)
    spec, path, annotations = _kubernetes_object(doc, parts.out)
    copied = _metadata(doc.get("metadata"), "metadata", parts.out)
    config = ray_service_spec(spec, path, parts, annotations, child("metadata", "annotations"))
    _cluster_document(parts, copied)
    apps = applications(config, child(path, "serveConfigV2"), ctx, parts.out) if config is not None else []
    if config is None and "serveConfigV2" not in (spec if isinstance(spec, dict) else {}):
        parts.out.remark("the RayService has no serveConfigV2: no applications")
    return [parts.out, *apps]


def convert_ray_cluster(
    doc: Mapping[str, Any],
    serve_config: Mapping[str, Any] | None = None,
    image: str | None = None,
    taken: set[tuple[str, str]] | None = None,
) -> list[Output]:
    """A RayCluster (and the Serve config it would run, paths under `serveConfig`) -> a ServeCluster, and the
    ServeApplications and ServeDeployments of the Serve config; `taken` as for convert_ray_service."""
    ctx = _context(doc, image, taken)
    parts = ClusterParts(Output(None, ctx.source), ctx)
    spec, path, annotations = _kubernetes_object(doc, parts.out)
    copied = _metadata(doc.get("metadata"), "metadata", parts.out)
    if serve_config is not None:
        set_serve(parts, serve_config, SERVE_CONFIG_FILE)
    ray_cluster(spec, path, parts, annotations, child("metadata", "annotations"))
    _cluster_document(parts, copied)
    if serve_config is None:
        parts.out.remark("no Serve config given (--serve-config): no applications")
        return [parts.out]
    return [parts.out, *applications(serve_config, SERVE_CONFIG_FILE, ctx, parts.out)]


def _describe(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind')} {(meta or {}).get('name', '')}".strip()


def _is_ray(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("ray.io/")


def convert(
    docs: Sequence[Mapping[str, Any] | None], serve_config: Mapping[str, Any] | None = None, image: str | None = None
) -> Conversion:
    """Every document of a KubeRay YAML file, converted: RayServices, RayClusters (with `serve_config`, the Serve
    config the one RayCluster runs), other KubeRay kinds noted, any other object passed through unchanged.
    `image` replaces every Ray container's image. Raises ConvertError when nothing there is KubeRay's."""
    present = [d for d in docs if d]
    clusters = [d for d in present if _is_ray(d) and d.get("kind") == "RayCluster"]
    if not any(_is_ray(d) and d.get("kind") in ("RayService", "RayCluster") for d in present):
        raise ConvertError("no RayService or RayCluster (apiVersion ray.io/v1) in the input")
    if serve_config is not None and len(clusters) != 1:
        raise ConvertError(f"a Serve config goes with exactly one RayCluster; the input has {len(clusters)}")
    outputs: list[Output] = []
    sources: list[str] = []
    taken: set[tuple[str, str]] = set()
    for doc in present:
        if _is_ray(doc) and doc.get("kind") == "RayService":
            outputs += convert_ray_service(doc, image, taken)
        elif _is_ray(doc) and doc.get("kind") == "RayCluster":
            outputs += convert_ray_cluster(doc, serve_config, image, taken)
        elif _is_ray(doc):
            out = Output(None, _describe(doc))
            out.note(ROOT, f"{doc.get('kind')} is not converted: serveplane runs Serve applications (RayService, "
                     "or a RayCluster with --serve-config)")
            outputs.append(out)
        else:
            outputs.append(Output(dict(doc), f"passed through: {_describe(doc)}", mapped={ROOT}))
        sources.append(outputs[-1].source)
    return Conversion(outputs, sources)
