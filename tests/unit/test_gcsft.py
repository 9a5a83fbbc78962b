"""Table tests of GCS fault tolerance's decisions: adopting a new head, the Redis finalizer and the clean-up steps,
and the environment that wires Ray to Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from serveplane.operator import gcsft, planner
from serveplane.operator.actions import AdoptHead, CreatePod, DeletePod, SetFinalizers, Submit
from serveplane.operator.api.cluster import ServeClusterSpec
from serveplane.operator.manifests import cleanup, pods, rayenv
from serveplane.operator.servereport import parse
from serveplane.operator.snapshot import Snapshot, TokenSecret
from serveplane.operator.stages.context import Settings
from serveplane.runtime import args as runtime_args
from serveplane.runtime import redis_cleanup

NOW = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)
FT = {"redisAddress": "redis.infra:6379", "redisPassword": {"secretKeyRef": {"name": "redis", "key": "password"}}}
SPEC = {"gcsFaultTolerance": FT, "workerGroups": [{"name": "cpu", "replicas": 1}]}


def generation(namespace: str) -> str:
    """The generation SPEC asks for, in the cluster `demo` of UID c1 under the image `i`."""
    return pods.generation_name(
        cluster="demo", namespace=namespace, uid="c1", spec=ServeClusterSpec.model_validate(SPEC), image="i"
    )


def ray_pods(namespace: str, spec: dict[str, Any] = SPEC, gen: str | None = None) -> list[dict[str, Any]]:
    return pods.ray_pods(cluster="demo", namespace=namespace, uid="c1", spec=ServeClusterSpec.model_validate(spec),
                         image="i", generation=generation(namespace) if gen is None else gen)


def head(k8s: Any, *, uid: str, ready_for_s: float | None) -> dict[str, Any]:
    if ready_for_s is None:
        return k8s.observed(ray_pods(k8s.namespace)[0], uid=uid, ready=False)
    since = (NOW - timedelta(seconds=ready_for_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return k8s.observed(ray_pods(k8s.namespace)[0], uid=uid, ready_since=since)


APPLIED = {"appliedConfigHash": "h1", "appliedHeadUid": "old-head"}
C1_DIGEST = "d0f631ca"
"""The first 8 hex digits of SHA-256("c1"), the UID of the tests' cluster."""


@pytest.mark.parametrize(
    ("spec", "uid", "applied", "config_hash", "serve_apps", "ready_for_s", "expected"),
    [
        # Serve recovered every application from the GCS: adopt the head, PUT nothing.
        (SPEC, "new-head", APPLIED, "h1", {"hello", "other"}, 5, gcsft.HeadChange.ADOPT),
        # Serve's controller is not back yet: wait while the head is young...
        (SPEC, "new-head", APPLIED, "h1", set(), 5, gcsft.HeadChange.WAIT),
        (SPEC, "new-head", APPLIED, "h1", set(), None, gcsft.HeadChange.WAIT),
        # ...then give up waiting and let the usual rule resubmit.
        (SPEC, "new-head", APPLIED, "h1", set(), gcsft.SERVE_RECOVERY_S + 1, None),
        # The same head pod whose Ray crashed and restarted: wait for Serve too, and once back there is nothing to do.
        (SPEC, "old-head", APPLIED, "h1", set(), 5, gcsft.HeadChange.WAIT),
        (SPEC, "old-head", APPLIED, "h1", {"hello"}, 5, None),
        # The rule is only for the applied config, under fault tolerance.
        (SPEC, "new-head", APPLIED, "h2", {"hello"}, 5, None),
        (SPEC, "new-head", {}, "h1", {"hello"}, 5, None),
        ({"workerGroups": []}, "new-head", APPLIED, "h1", {"hello"}, 5, None),
    ],
)
def test_head_change(
    k8s: Any, spec: dict[str, Any], uid: str, applied: dict[str, Any], config_hash: str, serve_apps: set[str],
    ready_for_s: float | None, expected: gcsft.HeadChange | None,
) -> None:
    serve = parse({"applications": {name: {"status": "RUNNING"} for name in serve_apps}})
    got = gcsft.head_change(
        spec=ServeClusterSpec.model_validate(spec), head=head(k8s, uid=uid, ready_for_s=ready_for_s),
        applied=applied, config_hash=config_hash, composed_apps={"hello"}, serve=serve, now=NOW,
    )
    assert got is expected


@pytest.mark.parametrize(
    ("spec", "finalizers", "expected"),
    [
        (SPEC, [], ("serveplane.dev/redis-cleanup",)),
        (SPEC, ["other"], ("other", "serveplane.dev/redis-cleanup")),
        (SPEC, ["serveplane.dev/redis-cleanup"], None),
        ({}, ["other", "serveplane.dev/redis-cleanup"], ("other",)),
        ({}, [], None),
    ],
)
def test_the_redis_finalizer_follows_fault_tolerance(
    k8s: Any, spec: dict[str, Any], finalizers: list[str], expected: tuple[str, ...] | None
) -> None:
    cluster = k8s.cluster("demo", spec, finalizers=finalizers)
    actions = gcsft.finalizer(cluster, ServeClusterSpec.model_validate(spec))
    assert [a.finalizers for a in actions if isinstance(a, SetFinalizers)] == ([] if expected is None else [expected])


def deleting(k8s: Any) -> dict[str, Any]:
    return k8s.cluster("demo", SPEC, deleting=True, finalizers=[gcsft.REDIS_FINALIZER], uid="c1",
                       status={"redisNamespaces": ["c1-old"]})


def cleanup_pod(k8s: Any, phase: str, namespaces: list[str]) -> dict[str, Any]:
    ft = ServeClusterSpec.model_validate(SPEC).gcs_fault_tolerance
    assert ft is not None
    pod = cleanup.redis_cleanup_pod(
        cluster="demo", namespace=k8s.namespace, uid="c1", ft=ft, image="i", namespaces=namespaces
    )
    return k8s.observed(pod, phase=phase, ready=False)


def test_a_deleted_cluster_loses_its_ray_pods_first_then_its_redis_state(k8s: Any) -> None:
    cluster = deleting(k8s)
    ray = k8s.observed(ray_pods(k8s.namespace)[0])
    steps = gcsft.redis_cleanup(cluster, (ray,), "img")
    assert [type(a).__name__ for a in steps] == ["DeletePod"], "no clean-up while a head may still write"
    assert gcsft.redis_cleanup(cluster, (k8s.observed(ray, deleting=True),), "img") == []
    # Every generation's pods go first (an upgrade under way has two heads writing to Redis).
    two = (ray, k8s.observed(ray_pods(k8s.namespace, gen="bbbbb")[0]))
    assert sorted(a.name for a in gcsft.redis_cleanup(cluster, two, "img") if isinstance(a, DeletePod)) == sorted(
        p["metadata"]["name"] for p in two
    )

    create = gcsft.redis_cleanup(cluster, (), "img")
    assert len(create) == 1 and isinstance(create[0], CreatePod)
    container = create[0].pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "serveplane.runtime", "redis-cleanup"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_REDIS_ADDRESS"]["value"] == "redis.infra:6379"
    # Ray cleans one namespace (`RAY<ns>@*`) at a time: the cluster's UID alone would miss every generation's.
    current = pods.generation_name(cluster="demo", namespace=k8s.namespace, uid="c1",
                                   spec=ServeClusterSpec.model_validate(SPEC), image="img")
    wanted = ["c1", f"c1-{current}", "c1-old"]
    assert env[cleanup.NAMESPACES_ENV]["value"] == ",".join(wanted)
    assert cleanup.cleaned_namespaces(create[0].pod) == set(wanted)
    assert env[rayenv.REDIS_PASSWORD_ENV]["valueFrom"]["secretKeyRef"] == {"name": "redis", "key": "password"}
    assert "ownerReferences" not in create[0].pod["metadata"], "a foreground deletion would remove it with the rest"

    assert gcsft.redis_cleanup(cluster, (cleanup_pod(k8s, "Running", wanted),), "img") == []
    done = gcsft.redis_cleanup(cluster, (cleanup_pod(k8s, "Succeeded", wanted),), "img")
    assert [type(a).__name__ for a in done] == ["DeletePod", "SetFinalizers"]
    assert isinstance(done[1], SetFinalizers) and done[1].finalizers == ()
    # A retired generation's clean-up that finished just before is not the cluster's: it goes, the finalizer stays.
    earlier = gcsft.redis_cleanup(cluster, (cleanup_pod(k8s, "Succeeded", ["c1-old"]),), "img")
    assert [type(a).__name__ for a in earlier] == ["DeletePod"]


def test_a_retired_generations_state_is_cleaned_once_its_pods_are_gone(k8s: Any) -> None:
    spec = ServeClusterSpec.model_validate(SPEC)
    cluster = k8s.cluster("demo", SPEC, uid="c1", status={"redisNamespaces": ["c1-aaaaa", "c1-bbbbb"]})
    # Both generations run (an upgrade): nothing to clean, both recorded.
    assert gcsft.retired_cleanup(cluster, spec, (), {"aaaaa", "bbbbb"}, "img") == []
    assert gcsft.namespaces_record(cluster, spec, (), {"aaaaa", "bbbbb"}) == ["c1-aaaaa", "c1-bbbbb"]
    # aaaaa retired and its pods went: its namespace alone is cleaned, and stays recorded until that succeeded.
    create = gcsft.retired_cleanup(cluster, spec, (), {"bbbbb"}, "img")
    assert len(create) == 1 and isinstance(create[0], CreatePod)
    assert cleanup.cleaned_namespaces(create[0].pod) == {"c1-aaaaa"}
    running = (cleanup_pod(k8s, "Running", ["c1-aaaaa"]),)
    assert gcsft.retired_cleanup(cluster, spec, running, {"bbbbb"}, "img") == []
    assert gcsft.namespaces_record(cluster, spec, running, {"bbbbb"}) == ["c1-aaaaa", "c1-bbbbb"]
    done = (cleanup_pod(k8s, "Succeeded", ["c1-aaaaa"]),)
    assert [type(a).__name__ for a in gcsft.retired_cleanup(cluster, spec, done, {"bbbbb"}, "img")] == ["DeletePod"]
    assert gcsft.namespaces_record(cluster, spec, done, {"bbbbb"}) == ["c1-bbbbb"]
    # Without fault tolerance there is nothing to record or clean.
    plain = ServeClusterSpec.model_validate({})
    assert gcsft.namespaces_record(cluster, plain, (), set()) == []
    assert gcsft.retired_cleanup(cluster, plain, (), set(), "img") == []


def test_a_deleted_cluster_without_the_finalizer_or_a_usable_spec_cleans_nothing(k8s: Any) -> None:
    assert gcsft.redis_cleanup(k8s.cluster("demo", SPEC, deleting=True), (), "img") == []
    broken = k8s.cluster("demo", {"gcsFaultTolerance": {"redisAddress": "no port"}}, deleting=True,
                         finalizers=[gcsft.REDIS_FINALIZER])
    assert [type(a).__name__ for a in gcsft.redis_cleanup(broken, (), "img")] == ["SetFinalizers"]


def test_the_planner_adopts_a_recovered_head_instead_of_resubmitting(k8s: Any) -> None:
    """A round over a whole snapshot: the new head's Serve already runs hello, so no Submit, one AdoptHead."""
    cluster = k8s.cluster("demo", SPEC, uid="c1", finalizers=[gcsft.REDIS_FINALIZER])
    snap0 = Snapshot(namespace=k8s.namespace, name="demo", cluster=cluster, apps=(k8s.app("hello"),),
                     token_secret=TokenSecret("demo-ray-token", digest="d"), now=NOW)
    config_hash = planner.plan_round(snap0, Settings(image="i")).config_hash
    cluster["status"] = {"appliedConfigHash": config_hash, "appliedHeadUid": "old-head"}
    new_head = head(k8s, uid="new-head", ready_for_s=3)
    worker = k8s.observed(ray_pods(k8s.namespace)[1], ip="10.0.0.2")
    for pod in (new_head, worker):
        pod["metadata"].setdefault("annotations", {})["serveplane.dev/auth-token-digest"] = "d"
    serve = {"applications": {"hello": {"status": "RUNNING", "deployments": {}}}, "proxies": {}}
    snap = Snapshot(namespace=k8s.namespace, name="demo", cluster=cluster, apps=(k8s.app("hello"),),
                    pods=(new_head, worker), token_secret=TokenSecret("demo-ray-token", digest="d"),
                    reports={generation(k8s.namespace): parse(serve)}, now=NOW)
    actions = planner.plan_round(snap, Settings(image="i")).actions
    assert not [a for a in actions if isinstance(a, Submit)]
    (adopt,) = [a for a in actions if isinstance(a, AdoptHead)]
    assert adopt.head_uid == "new-head"
    # What the status records of it is the plan's: the head as the config's, recovered from the GCS, at `now`.
    assert adopt.record.patch == {
        "appliedHeadUid": "new-head",
        "lastHeadRecovery": {"headUid": "new-head", "time": "2024-05-03T12:00:00Z", "how": "RecoveredFromGcs"},
    }
    assert not [a for a in actions if isinstance(a, DeletePod)]


def test_only_the_head_gets_redis_and_workers_wait_long_for_it() -> None:
    spec = ServeClusterSpec.model_validate({**SPEC, "gcsFaultTolerance": {**FT, "externalStorageNamespace": "ns1"}})
    head_env = {e["name"]: e for e in rayenv.gcs_env(spec, head=True, uid="c1", generation="abcde")}
    assert head_env["RAY_external_storage_namespace"]["value"] == f"ns1-{C1_DIGEST}-abcde"
    assert set(head_env) == {"RAY_REDIS_ADDRESS", "RAY_external_storage_namespace", rayenv.REDIS_PASSWORD_ENV}
    assert rayenv.gcs_env(spec, head=False, uid="c1", generation="abcde") == [
        {"name": "RAY_gcs_rpc_server_reconnect_timeout_s", "value": str(rayenv.WORKER_GCS_RECONNECT_S)}
    ]
    assert rayenv.gcs_env(ServeClusterSpec.model_validate({}), head=True, uid="c1", generation="abcde") == []


@pytest.mark.parametrize(
    ("ft", "generation", "expected"),
    [
        ({}, "abcde", "c1-abcde"),  # the ServeCluster's UID, then the generation
        # An explicit namespace is a prefix: the UID's hash follows, so it is this cluster's alone.
        ({"externalStorageNamespace": "ns1"}, "abcde", f"ns1-{C1_DIGEST}-abcde"),
        ({}, "", "c1"),  # the cluster's own namespace: the legacy generation's, and the clean-up's
        ({"externalStorageNamespace": "ns1"}, "", f"ns1-{C1_DIGEST}"),
    ],
)
def test_the_storage_namespace_is_the_clusters_then_the_generations(
    ft: dict[str, Any], generation: str, expected: str
) -> None:
    spec = ServeClusterSpec.model_validate({"gcsFaultTolerance": {**FT, **ft}})
    assert spec.gcs_fault_tolerance is not None
    assert rayenv.storage_namespace(spec.gcs_fault_tolerance, "c1", generation) == expected


def storage_namespace_of(pod: dict[str, Any]) -> str | None:
    (ray,) = [c for c in pod["spec"]["containers"] if c["name"] == "ray"]
    found = [e["value"] for e in ray["env"] if e["name"] == "RAY_external_storage_namespace"]
    return found[0] if found else None


def test_two_generations_never_share_a_gcs_state(k8s: Any) -> None:
    """Each generation is its own Ray cluster: its head keeps its GCS under its own namespace; workers have none."""
    old, new = ray_pods(k8s.namespace, gen="aaaaa"), ray_pods(k8s.namespace, gen="bbbbb")
    assert storage_namespace_of(old[0]) == "c1-aaaaa"
    assert storage_namespace_of(new[0]) == "c1-bbbbb"
    assert storage_namespace_of(old[1]) is None and storage_namespace_of(new[1]) is None
    wanted = generation(k8s.namespace)
    assert storage_namespace_of(ray_pods(k8s.namespace)[0]) == f"c1-{wanted}"


def test_the_operator_and_the_runtime_agree_on_the_password_and_namespaces_variables() -> None:
    assert rayenv.REDIS_PASSWORD_ENV == runtime_args.REDIS_PASSWORD_ENV
    assert cleanup.NAMESPACES_ENV == redis_cleanup.NAMESPACES_ENV


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RAY_REDIS_ADDRESS": "r:6379", "RAY_external_storage_namespace": "u1"}, ("r", 6379, False, ("u1",), "")),
        (
            {"RAY_REDIS_ADDRESS": "rediss://r.x:6380", redis_cleanup.NAMESPACES_ENV: "u1,u1-abcde",
             "RAY_external_storage_namespace": "ignored", runtime_args.REDIS_PASSWORD_ENV: "pw"},
            ("r.x", 6380, True, ("u1", "u1-abcde"), "pw"),
        ),
    ],
)
def test_the_cleanup_target_comes_from_the_heads_environment(env: dict[str, str], expected: tuple[Any, ...]) -> None:
    got = redis_cleanup.target(env)
    assert (got.host, got.port, got.use_ssl, got.namespaces, got.password) == expected
    assert "pw" not in repr(got)


@pytest.mark.parametrize("env", [{}, {"RAY_REDIS_ADDRESS": "r:6379"}, {"RAY_external_storage_namespace": "u"}])
def test_the_cleanup_refuses_an_incomplete_environment(env: dict[str, str]) -> None:
    with pytest.raises(runtime_args.ArgsError):
        redis_cleanup.target(env)


# --- tenants apart in a shared Redis ----------------------------------------------------------------------------


def test_the_uid_digest_is_sha256s_first_8_hex_digits() -> None:
    assert rayenv.uid_digest("c1") == C1_DIGEST
    assert len(rayenv.uid_digest("2f0c1d3e-aaaa-bbbb-cccc-0123456789ab")) == rayenv.UID_DIGEST_LEN


def namesakes() -> tuple[dict[str, Any], ServeClusterSpec]:
    """What `serveplane convert` makes of KubeRay's annotation: the same explicit namespace for every namesake."""
    raw = {**SPEC, "gcsFaultTolerance": {**FT, "externalStorageNamespace": "shared"}}
    return raw, ServeClusterSpec.model_validate(raw)


def test_namesakes_in_two_namespaces_with_one_explicit_namespace_never_share_keys() -> None:
    """Two ServeClusters `demo` in team-a and team-b, both `externalStorageNamespace: shared` (same spec, same image):
    their generations, their heads' storage namespaces and what their deletion cleans are all apart."""
    _, spec = namesakes()
    clusters = {"team-a": "uid-a", "team-b": "uid-b"}
    gens = {ns: pods.generation_name(cluster="demo", namespace=ns, uid=uid, spec=spec, image="i")
            for ns, uid in clusters.items()}
    heads = {ns: pods.ray_pods(cluster="demo", namespace=ns, uid=uid, spec=spec, image="i", generation=gens[ns])[0]
             for ns, uid in clusters.items()}
    used = {ns: storage_namespace_of(head) for ns, head in heads.items()}
    assert used["team-a"] != used["team-b"]
    for ns, uid in clusters.items():
        assert used[ns] == f"shared-{rayenv.uid_digest(uid)}-{gens[ns]}"
        assert used[ns] in gcsft.namespaces_in_use(spec, uid, {gens[ns]})
    # Ray's clean-up deletes `RAY<namespace>@*` of each namespace named: neither names the other's.
    in_use_a = gcsft.namespaces_in_use(spec, "uid-a", {gens["team-a"], ""})
    in_use_b = gcsft.namespaces_in_use(spec, "uid-b", {gens["team-b"], ""})
    assert not in_use_a & in_use_b
    assert "shared" not in in_use_a | in_use_b, "the bare explicit namespace is nobody's"


def test_a_deleted_namesakes_cleanup_names_only_its_own_namespaces(k8s: Any) -> None:
    raw, spec = namesakes()
    cluster = k8s.cluster("demo", raw, uid="uid-a", deleting=True, finalizers=[gcsft.REDIS_FINALIZER])
    (create,) = gcsft.redis_cleanup(cluster, (), "img")
    assert isinstance(create, CreatePod)
    cleaned = cleanup.cleaned_namespaces(create.pod)
    assert cleaned and all(ns.startswith(f"shared-{rayenv.uid_digest('uid-a')}") for ns in cleaned)
    other = gcsft.namespaces_in_use(spec, "uid-b", {pods.generation_name(
        cluster="demo", namespace=k8s.namespace, uid="uid-b", spec=spec, image="img"), ""})
    assert not cleaned & other


def test_the_uid_is_in_the_generation_name_with_or_without_an_explicit_namespace() -> None:
    """The storage namespace is in the head's spec, so in the generation's hash: a UID's namespace is never reused
    by another UID's generation, and a cluster's own generation name does not depend on anything but its spec."""
    for raw in (SPEC, namesakes()[0]):
        spec = ServeClusterSpec.model_validate(raw)
        one, again, other = (pods.generation_name(cluster="demo", namespace="ns", uid=uid, spec=spec, image="i")
                             for uid in ("uid-a", "uid-a", "uid-b"))
        assert one == again and one != other
