"""PURE: a dry run. For resources in YAML, the Kubernetes objects and Serve config the operator would create.

It is the operator's own round (planner.STAGES) on a world with nothing in it, so it cannot drift from what the
operator does. Nothing is contacted: objects get placeholder UIDs, and no Serve status is known, so ServeDeployments
wait for their application's first build exactly as they would on a new cluster. No auth token exists either: the
token Secret is listed without data (the operator generates the token when it creates it), and pods carry a
placeholder digest of it.
"""
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from . import objects, planner
from .actions import Action, Apply, Create, CreatePod, CreateSecret
from .api.cluster import ServeClusterSpec
from .api.kinds import INGRESSES, NETWORKPOLICIES, PODS, ROLEBINDINGS, SECRETS, SERVICEACCOUNTS, SERVICES
from .compose import Composition, validation_message
from .manifests import autoscaler, common, netpol
from .objects import Obj
from .snapshot import Snapshot, TokenSecret
from .stages import context

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_DIGEST = "sha256-of-the-generated-token"
"""The token digest the pods carry: the operator generates the token when it creates the Secret."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""A dry run's clock: nothing it shows depends on the time."""
ORDER = (PODS, SERVICES, INGRESSES, NETWORKPOLICIES, SECRETS, SERVICEACCOUNTS, ROLEBINDINGS)
"""How the objects are listed: what runs first, then what routes to it, then access."""


def with_defaults(doc: Obj) -> Obj:
    meta = {
        "namespace": "default", "uid": PLACEHOLDER_UID, "creationTimestamp": "", "resourceVersion": "0",
        **(doc.get("metadata") or {}),
    }
    return {**doc, "metadata": meta}


def _of_kind(docs: list[Obj], kind: str) -> list[Obj]:
    return [with_defaults(d) for d in docs if d and d.get("kind") == kind]


def _objects(actions: tuple[Action, ...]) -> list[tuple[str, Obj]]:
    out: list[tuple[str, Obj]] = []
    for action in actions:
        match action:
            case CreatePod(pod=pod):
                out.append((PODS, pod))
            case Apply(kind=kind, obj=obj) | Create(kind=kind, obj=obj):
                out.append((kind, obj))
            case CreateSecret(secret=secret):
                out.append((SECRETS, secret))
    return out


def dry_round(snap: Snapshot, settings: context.Settings) -> tuple[list[Obj], Composition]:
    """The objects the operator creates for a cluster on a world with nothing in it, as its rounds would: the
    first makes the token Secret, the next (the Secret there) the pods that carry its digest."""
    r, made = _round(snap, settings)
    if any(kind == SECRETS for kind, _ in made):
        name = common.token_secret_name(snap.name)
        with_token = dataclasses.replace(snap, token_secret=TokenSecret(name, digest=PLACEHOLDER_DIGEST))
        seen = {(kind, objects.name(obj)) for kind, obj in made}
        r, then = _round(with_token, settings)
        made += [(kind, obj) for kind, obj in then if (kind, objects.name(obj)) not in seen]
    return [obj for kind in ORDER for k, obj in made if k == kind], r.composition


def _round(snap: Snapshot, settings: context.Settings) -> tuple[context.Round, list[tuple[str, Obj]]]:
    """One round of the operator's on the snapshot, and the objects it creates or applies."""
    cluster = snap.cluster or {}
    spec = ServeClusterSpec.model_validate(objects.spec(cluster))
    r = context.build(context.base(snap, settings, cluster, spec))
    return r, _objects(planner.run_stages(r, planner.STAGES).actions)


def render(
    docs: list[Obj],
    default_image: str,
    access: netpol.Access | None = None,
    autoscaler_role: str = autoscaler.DEFAULT_CLUSTER_ROLE,
) -> list[tuple[str, Any]]:
    """(title, content) sections: per ServeCluster its objects, then its Serve config and the verdicts."""
    settings = context.Settings(image=default_image, access=access or netpol.Access(), autoscaler_role=autoscaler_role)
    sections: list[tuple[str, Any]] = []
    apps, sdeps = _of_kind(docs, "ServeApplication"), _of_kind(docs, "ServeDeployment")
    for cluster in _of_kind(docs, "ServeCluster"):
        name, namespace = objects.name(cluster), objects.namespace(cluster)
        try:
            ServeClusterSpec.model_validate(objects.spec(cluster))
        except ValidationError as error:
            sections.append((f"ServeCluster {namespace}/{name} is invalid", validation_message(error)))
            continue
        mine = [
            a for a in apps if objects.namespace(a) == namespace and objects.spec(a).get("cluster", "default") == name
        ]
        names = {objects.name(a) for a in mine}
        theirs = [d for d in sdeps if objects.namespace(d) == namespace and objects.spec(d).get("application") in names]
        snap = Snapshot(
            namespace=namespace, name=name, cluster=cluster, apps=tuple(mine), deployments=tuple(theirs), now=EPOCH
        )
        built, composition = dry_round(snap, settings)
        sections.append((f"Kubernetes objects of ServeCluster {namespace}/{name}", built))
        serve_title = f"Serve config (PUT /api/serve/applications/, hash {composition.config_hash})"
        sections.append((serve_title, composition.config))
        sections.append(("Verdicts", _verdicts(composition)))
    return sections


def _verdicts(composition: Composition) -> dict[str, Any]:
    def table(verdicts: dict[str, Any]) -> dict[str, str]:
        return {name: f"{'ok' if v.ok else 'DEGRADED'} {v.reason}: {v.message}" for name, v in verdicts.items()}

    return {"applications": table(composition.applications), "deployments": table(composition.deployments)}
