"""PURE: the stages of a round that talk to Serve: the applications' finalizers, and the submission of the composed
config to the active head (or its adoption, when Serve came back from the GCS by itself) and to an upgrade's
pending head. What the status records once a head accepts a config is decided here too, as data of the action."""

from __future__ import annotations

from typing import Any

from .. import objects, status, submission
from ..actions import Action, AdoptHead, SetFinalizers, Submit, WriteStatus
from ..api.kinds import APPS, CLUSTERS
from ..compose import config_hash as compose_hash
from ..compose import with_capacity
from ..finalizers import finalizers_to_set
from ..gcsft import HeadChange
from .context import Round
from .statuses import write
from .upgrading import apps_hash, upgrade_record


def finalizers(r: Round) -> list[Action]:
    serve_apps = submission.serve_app_names(r.serve)
    actions: list[Action] = []
    for app in r.base.snap.apps:
        wanted = finalizers_to_set(app, serve_apps)
        if wanted is not None:
            actions.append(SetFinalizers(APPS, objects.name(app), tuple(wanted), app["metadata"]["resourceVersion"]))
    return actions


def _recovered(r: Round, how: str, head_uid: str) -> dict[str, Any]:
    return {"headUid": head_uid, "time": status.wire_time(r.base.now), "how": how}


def submission_to_active(r: Round) -> list[Action]:
    """Adopt a head Serve came back on, or PUT the config where the head does not run it. A Submit ends the
    round: the statuses wait for the next one, which sees what Serve made of the new config."""
    head, b = r.head, r.base
    if head is None or not r.head_ip:
        return []
    head_uid = objects.uid(head)
    if r.recovery is HeadChange.ADOPT:
        patch = {"appliedHeadUid": head_uid, "lastHeadRecovery": _recovered(r, "RecoveredFromGcs", head_uid)}
        return [AdoptHead(head_uid, WriteStatus(CLUSTERS, b.name, patch))]
    if r.recovery is not None:
        return []
    reason = submission.submit_reason(
        config_hash=r.config_digest, head_uid=head_uid, applied=r.applied,
        composed_apps=set(r.composition.app_names), serve_apps=submission.serve_app_names(r.serve),
        rejected_hash=r.rejected,
    )
    if reason is None:
        return []
    record: dict[str, Any] = {"appliedConfigHash": r.config_digest, "appliedHeadUid": head_uid}
    if reason == "HeadReplaced":
        record["lastHeadRecovery"] = _recovered(r, "Resubmitted", head_uid)
    # Record at once once Serve accepts: if the operator stops right there, its successor must not submit again.
    submit = Submit(
        r.config, r.config_digest, reason, str(r.head_ip), head_uid, generation=b.roles.active,
        record=WriteStatus(CLUSTERS, b.name, record),
    )
    return [*_known_deployments(r), submit]


def _known_deployments(r: Round) -> list[Action]:
    """The applications' knownDeployments alone, where Serve's report adds to them: the deployments Serve built,
    which the new config may name (ServeDeployments) while Serve rebuilds."""
    actions: list[Action] = []
    for app in r.base.snap.apps:
        if objects.is_deleting(app):
            continue
        serve_app = r.serve.app(objects.name(app)) if r.serve else None
        known = status.known_deployments(app, serve_app)
        if known != (objects.status(app).get("knownDeployments") or []):
            actions += write(r.base, APPS, app, {**objects.status(app), "knownDeployments": known})
    return actions


def submission_to_pending(r: Round) -> list[Action]:
    """The composed config, with the pending generation's capacity, for its head, when that head does not run
    it; what it accepted goes into status.upgrade (the active generation's record stays as it is)."""
    b, view = r.base, r.upgrade
    step, head, pending = view.step, view.pending_head, b.roles.pending
    if step is None or step.failure or head is None or pending is None:
        return []
    head_ip = (head.get("status") or {}).get("podIP")
    report = b.snap.reports.get(pending)
    if not head_ip or report is None:
        return []
    config = with_capacity(r.composition.config, step.capacity.get("pending"))
    digest = compose_hash(config)
    stored = b.stored.upgrade
    applied = {
        "appliedConfigHash": stored.applied_config_hash if stored else None,
        "appliedHeadUid": stored.applied_head_uid if stored else None,
    }
    reason = submission.submit_reason(
        config_hash=digest, head_uid=objects.uid(head), applied=applied,
        composed_apps=set(r.composition.app_names), serve_apps=submission.serve_app_names(report),
        rejected_hash=r.rejected,
    )
    if reason is None:
        return []
    # The whole upgrade record, not its applied part alone: this round writes no status, and a record without the
    # upgrade's generation is no record (the CRD requires it).
    record = {
        **upgrade_record(b, view), "appliedConfigHash": digest, "appliedHeadUid": objects.uid(head),
        "appliedApps": apps_hash(r.composition),
    }
    submit = Submit(
        config, digest, reason, str(head_ip), objects.uid(head), generation=pending,
        record=WriteStatus(CLUSTERS, b.name, {"upgrade": record}),
    )
    return [submit]
