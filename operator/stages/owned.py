"""PURE: the stages of a round that keep the cluster's owned objects as the spec wants them: its Services, its
NetworkPolicy, the autoscaler's ServiceAccount and RoleBinding, the token Secret and the Ingress."""

from __future__ import annotations

from .. import objects
from ..actions import Action, Apply, Create, CreateSecret, DeleteOwned
from ..api.cluster import AuthMode
from ..api.kinds import INGRESSES, NETWORKPOLICIES, ROLEBINDINGS, SECRETS, SERVICEACCOUNTS, SERVICES
from ..manifests import auth, autoscaler, common, netpol, network
from ..objects import Obj
from ..ownership import covers
from .context import Round


def owned(r: Round, kind: str, wanted: Obj, live: dict[str, Obj]) -> list[Action]:
    """Create it when missing, apply it when it differs; a namesake that is not this cluster's stays untouched."""
    name = objects.name(wanted)
    if (kind, name) in r.base.snap.foreign:
        return []
    current = live.get(name)
    if current is None:
        return [Create(kind, wanted)]
    return [] if covers(current, wanted) else [Apply(kind, wanted)]


def services(r: Round) -> list[Action]:
    """The head Service (the active generation's head), one head Service per generation with pods (its workers
    join by it), and the serve Service; a generation's head Service goes with its last pod."""
    b = r.base
    args = {"cluster": b.name, "namespace": b.namespace, "uid": b.uid}
    live = r.live_generations - {""}  # the legacy generation has no head Service of its own
    wanted = [network.head_service(**args, generation=b.roles.active)]
    wanted += [network.generation_head_service(**args, generation=g) for g in sorted(live)]
    wanted.append(network.serve_service(**args, spec=b.spec))
    actions: list[Action] = [a for w in wanted for a in owned(r, SERVICES, w, b.snap.services)]
    keep = {objects.name(w) for w in wanted}
    for svc_name, svc in sorted(b.snap.services.items()):
        if svc_name not in keep and common.GENERATION_LABEL in (svc["metadata"].get("labels") or {}):
            actions.append(DeleteOwned(SERVICES, svc_name, objects.uid(svc)))
    return actions


def network_policy(r: Round) -> list[Action]:
    b = r.base
    if b.spec.network_policy.enabled:
        wanted = netpol.network_policy(
            cluster=b.name, namespace=b.namespace, uid=b.uid, spec=b.spec, access=b.settings.access
        )
        return owned(r, NETWORKPOLICIES, wanted, b.snap.network_policies)
    live = b.snap.network_policies.get(common.network_policy_name(b.name))
    return [DeleteOwned(NETWORKPOLICIES, objects.name(live), objects.uid(live))] if live else []


def autoscaler_access(r: Round) -> list[Action]:
    """The autoscaler's ServiceAccount and RoleBinding while autoscaling is on; they go when it is off."""
    b = r.base
    if not b.spec.autoscaling.enabled:
        live = b.snap.autoscaler_access
        return [DeleteOwned(kind, name, objects.uid(live[(kind, name)])) for kind, name in sorted(live)]
    args = {"cluster": b.name, "namespace": b.namespace, "uid": b.uid}
    wanted = [
        (SERVICEACCOUNTS, autoscaler.service_account(**args)),
        (ROLEBINDINGS, autoscaler.role_binding(**args, cluster_role=b.settings.autoscaler_role)),
    ]
    return [
        action
        for kind, obj in wanted
        for action in owned(r, kind, obj, {n: o for (k, n), o in b.snap.autoscaler_access.items() if k == kind})
    ]


def token(r: Round) -> list[Action]:
    """The token Secret: made while auth is on and it is missing, gone when auth is off or it holds no token."""
    b = r.base
    secret = b.snap.token_secret
    if b.spec.auth.mode is not AuthMode.TOKEN:
        return [DeleteOwned(SECRETS, secret.name, secret.uid)] if secret else []
    if secret is None:
        if (SECRETS, common.token_secret_name(b.name)) in b.snap.foreign:
            return []  # someone else's Secret by that name: reported on the cluster, never read or replaced
        return [CreateSecret(auth.token_secret(cluster=b.name, namespace=b.namespace, uid=b.uid))]
    if secret.digest is None:
        # Someone emptied it: it goes, and the next round makes a new one (a rotation).
        return [DeleteOwned(SECRETS, secret.name, secret.uid)]
    return []


def ingress(r: Round) -> list[Action]:
    """The Ingress to the serve Service, routing every application's prefix; it goes when disabled."""
    b = r.base
    routes = [app["route_prefix"] for app in r.composition.config["applications"]]
    wanted = network.ingress(cluster=b.name, namespace=b.namespace, uid=b.uid, spec=b.spec, routes=routes)
    if wanted is not None:
        return owned(r, INGRESSES, wanted, b.snap.ingresses)
    live = b.snap.ingresses.get(common.serve_service_name(b.name))
    return [DeleteOwned(INGRESSES, objects.name(live), objects.uid(live))] if live else []
