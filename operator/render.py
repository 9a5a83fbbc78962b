"""PURE: a dry run. For resources in YAML, the Kubernetes objects and Serve config the operator would create.

Nothing is contacted: objects get placeholder UIDs, and no Serve status is known, so ServeDeployments wait
for their application's first build exactly as they would on a new cluster. No auth token exists either: the
token Secret is listed without data (the operator generates the token when it creates it), and pods only
reference it.
"""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from . import objects
from .api.cluster import AuthMode, ServeClusterSpec
from .compose import Composition, compose, start_key, validation_message
from .manifests import auth, autoscaler, netpol, network, pods
from .objects import Obj

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def _with_defaults(doc: Obj) -> Obj:
    meta = {"namespace": "default", "uid": PLACEHOLDER_UID, "creationTimestamp": "", **(doc.get("metadata") or {})}
    return {**doc, "metadata": meta}


def _of_kind(docs: list[Obj], kind: str) -> list[Obj]:
    return [_with_defaults(d) for d in docs if d and d.get("kind") == kind]


def render(
    docs: list[Obj],
    default_image: str,
    access: netpol.Access | None = None,
    autoscaler_role: str = autoscaler.DEFAULT_CLUSTER_ROLE,
) -> list[tuple[str, Any]]:
    """(title, content) sections: per ServeCluster its objects, then its Serve config and the verdicts."""
    sections: list[tuple[str, Any]] = []
    apps, sdeps = _of_kind(docs, "ServeApplication"), _of_kind(docs, "ServeDeployment")
    for cluster in _of_kind(docs, "ServeCluster"):
        name, namespace = objects.name(cluster), objects.namespace(cluster)
        try:
            spec = ServeClusterSpec.model_validate(objects.spec(cluster))
        except ValidationError as error:
            sections.append((f"ServeCluster {namespace}/{name} is invalid", validation_message(error)))
            continue
        mine = [
            a for a in apps if objects.namespace(a) == namespace and objects.spec(a).get("cluster", "default") == name
        ]
        composition = compose(spec, mine, [d for d in sdeps if objects.namespace(d) == namespace])
        args = {"cluster": name, "namespace": namespace, "uid": PLACEHOLDER_UID}
        generation = pods.generation_name(**args, spec=spec, image=default_image, serve_start=start_key(spec, mine))
        built = pods.ray_pods(
            cluster=name, namespace=namespace, uid=PLACEHOLDER_UID, spec=spec, image=default_image,
            generation=generation,
        )
        built += [
            network.head_service(**args, generation=generation),
            network.generation_head_service(**args, generation=generation),
            network.serve_service(**args, spec=spec),
        ]
        routes = [a["route_prefix"] for a in composition.config["applications"]]
        ingress = network.ingress(**args, spec=spec, routes=routes)
        built += [ingress] if ingress else []
        if spec.network_policy.enabled:
            built.append(netpol.network_policy(**args, spec=spec, access=access or netpol.Access()))
        if spec.auth.mode is AuthMode.TOKEN:
            built.append(auth.token_secret(**args))
        if spec.autoscaling.enabled:
            built += [autoscaler.service_account(**args), autoscaler.role_binding(**args, cluster_role=autoscaler_role)]
        sections.append((f"Kubernetes objects of ServeCluster {namespace}/{name}", built))
        serve_title = f"Serve config (PUT /api/serve/applications/, hash {composition.config_hash})"
        sections.append((serve_title, composition.config))
        sections.append(("Verdicts", _verdicts(composition)))
    return sections


def _verdicts(composition: Composition) -> dict[str, Any]:
    def table(verdicts: dict[str, Any]) -> dict[str, str]:
        return {name: f"{'ok' if v.ok else 'DEGRADED'} {v.reason}: {v.message}" for name, v in verdicts.items()}

    return {"applications": table(composition.applications), "deployments": table(composition.deployments)}
