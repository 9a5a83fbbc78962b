"""The Helm chart (helm/serveplane) with a real helm, built from the Go module proxy, against the real API server.

helm lint; helm template with default and non-default values, every object checked and the whole output sent
to the API server with `kubectl apply --dry-run=server`; bad values refused by values.schema.json; and a real
`helm install`, after which the operator runs as the release's own ServiceAccount, with the environment of the
release's Deployment, and reconciles the example cluster; `helm uninstall` then leaves nothing of the operator.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.localcluster import helm as localhelm
from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import AUTOSCALER_RULES_FILE, CRDS_DIR, RULES_FILE
from serveplane.localcluster.processes import free_port
from serveplane.localcluster.testkit import condition, generation_of, head_pod, ray_pods, wait_for
from serveplane.localcluster.testkit import get_object as get
from serveplane.operator import election as leader_election
from serveplane.operator.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "serveplane"
EXAMPLES = REPO / "examples"
RELEASE = "serveplane"  # the release name holds the chart name, so the objects are simply called "serveplane"

# prometheus-operator's CRDs are not in the local control plane: the smallest CRDs that let the API server
# accept (and so dry-run) a ServiceMonitor and a PodMonitor. Their schema is open: the test checks the fields.
MONITORING_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors"))
]






class Helm(localhelm.Helm):
    def template(self, *values: str, namespace: str = "serveplane-system") -> list[dict[str, Any]]:
        out = self("template", RELEASE, str(CHART), "--namespace", namespace, *values).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def helm(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(controlplane, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def monitoring_crds(controlplane: ControlPlane) -> Iterator[None]:
    text = yaml.safe_dump_all(MONITORING_CRDS)
    controlplane.kubectl("apply", "--server-side", "-f", "-", input=text)
    for crd in MONITORING_CRDS:
        controlplane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
    yield
    controlplane.kubectl("delete", "-f", "-", "--wait=false", input=text)


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


# A NetworkPolicyPeer for the chart's networkPolicy.metricsSources: Prometheus's namespace.
PROMETHEUS = '{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}'


def rules_file() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES_FILE.read_text())


def lease_rules() -> list[dict[str, Any]]:
    """The leader election's rules, which the chart grants in a Role in the release's namespace only."""
    return [rule for rule in rules_file() if "leases" in rule["resources"]]


def rules_without_leases() -> list[dict[str, Any]]:
    return [rule for rule in rules_file() if "leases" not in rule["resources"]]


def setting_envs() -> set[str]:
    """The environment variable of every field of operator/settings.py (SERVEPLANE_ + the field's name)."""
    return {f"SERVEPLANE_{field.name.upper()}" for field in dataclasses.fields(Settings)}


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def pod_env(container: dict[str, Any], pod: str, namespace: str) -> dict[str, str]:
    """The container's environment as the kubelet would set it in pod `pod` (the downward API's fields too)."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env = {}
    for e in container["env"]:
        if "valueFrom" in e:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[e["name"]] = e.get("value", "")
    return env


def server_dry_run(cp: ControlPlane, docs: list[dict[str, Any]]) -> str:
    return cp.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs)).stdout


# --- the chart on its own ---------------------------------------------------------------------------------------


def test_chart_crds_are_the_repository_crds(helm: Helm) -> None:
    # helm/serveplane/crds is a symlink to the generated crds/, so there is one copy; helm follows it.
    assert (CHART / "crds").is_symlink() and (CHART / "crds").resolve() == CRDS_DIR.resolve()
    files = sorted(CRDS_DIR.glob("*.yaml"))
    assert len(files) == 3
    # `helm show crds` prints the files byte for byte, one after the other (without `---` between them, so its
    # output is not one YAML stream unless each file starts with `---`: the README applies crds/ instead).
    assert helm("show", "crds", str(CHART)).stdout == "".join(p.read_text() + "\n" for p in files)
    # What Argo CD renders (`helm template --include-crds`) carries them as separate documents, unchanged.
    rendered = [d for d in yaml.safe_load_all(helm("template", "x", str(CHART), "--include-crds").stdout) if d]
    crds = [d for d in rendered if d["kind"] == "CustomResourceDefinition"]
    key = lambda d: d["metadata"]["name"]  # noqa: E731
    assert sorted(crds, key=key) == sorted((yaml.safe_load(p.read_text()) for p in files), key=key)
    # A packaged chart (what a Helm repository or OCI registry serves) holds real files, not the link.
    out = Path(helm.env["HELM_CACHE_HOME"]).parent / "package"
    helm("package", str(CHART), "--destination", str(out))
    listing = subprocess.run(["tar", "-tzf", str(next(out.glob("serveplane-*.tgz")))], capture_output=True, text=True,
                             check=True).stdout.split()
    crds = sorted(f"serveplane/crds/{p.name}" for p in CRDS_DIR.glob("*.yaml"))
    assert sorted(n for n in listing if "/crds/" in n) == crds


def test_helm_is_the_version_go_mod_pins(helm: Helm) -> None:
    go_mod = (REPO / "e2e" / "helm" / "go.mod").read_text()
    version = helm("version", "--template", "{{ .Version }}").stdout.strip()
    assert f"helm.sh/helm/v3 {version}" in go_mod, version


def test_lint(helm: Helm, tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "watchNamespaces": ["team-a", "team-b"], "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True}, "logLevel": "DEBUG",
    }))
    helm("lint", "--strict", str(CHART), "-f", str(values))


def test_template_with_default_values(helm: Helm, controlplane: ControlPlane) -> None:
    docs = helm.template()
    objects = by_kind(docs)
    ns = "serveplane-system"
    election = f"{RELEASE}-leader-election"
    assert set(objects) == {
        ("ServiceAccount", ns, RELEASE), ("ClusterRole", "", RELEASE), ("ClusterRoleBinding", "", RELEASE),
        ("ClusterRole", "", f"{RELEASE}-autoscaler"), ("Role", ns, election), ("RoleBinding", ns, election),
        ("Service", ns, f"{RELEASE}-metrics"), ("Deployment", ns, RELEASE), ("PodDisruptionBudget", ns, RELEASE),
    }
    # RBAC: cluster-wide, the rules of files/rbac-rules.yaml, bound to the release's ServiceAccount; the Lease
    # rules only in the release's namespace (update on every Lease would reach kube-system's and node heartbeats).
    assert objects[("ClusterRole", "", RELEASE)]["rules"] == rules_without_leases()
    binding = objects[("ClusterRoleBinding", "", RELEASE)]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": ns}]
    assert binding["roleRef"]["name"] == RELEASE
    assert lease_rules() and objects[("Role", ns, election)]["rules"] == lease_rules()
    assert objects[("RoleBinding", ns, election)]["subjects"] == binding["subjects"]
    assert objects[("RoleBinding", ns, election)]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": election}
    # Ray's autoscaler: its ClusterRole holds the rules of files/autoscaler-rules.yaml and nothing else, each one
    # held by the operator too (it binds the role per cluster, which RBAC allows only to a holder of its rules),
    # and it writes the status alone, never a spec.
    autoscaler_rules = objects[("ClusterRole", "", f"{RELEASE}-autoscaler")]["rules"]
    assert autoscaler_rules == yaml.safe_load(AUTOSCALER_RULES_FILE.read_text())
    for rule in autoscaler_rules:
        assert any(set(rule["apiGroups"]) <= set(mine["apiGroups"]) and set(rule["resources"]) <= set(
            mine["resources"]) and set(rule["verbs"]) <= set(mine["verbs"]) for mine in rules_without_leases()), rule
    assert {verb for rule in autoscaler_rules if "serveclusters" in rule["resources"] for verb in rule["verbs"]} == {
        "get"}

    # Two replicas under leader election: a rollout may overlap them (only the Lease's holder reconciles).
    deployment = objects[("Deployment", ns, RELEASE)]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = objects[("PodDisruptionBudget", ns, RELEASE)]["spec"]
    assert pdb == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    pod = deployment["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname",
                                       "labelSelector": {"matchLabels": selector}}
    assert pod["serviceAccountName"] == RELEASE
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = operator_container(docs)
    assert container["command"] == ["serveplane", "operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}

    # Every setting of the operator is set, and the chart's defaults are the operator's own.
    env = pod_env(container, "serveplane-7d9f8-x2k4q", ns)
    assert setting_envs() <= set(env), setting_envs() - set(env)
    settings, defaults = Settings.from_env(env), Settings()
    assert settings.autoscaler_cluster_role == f"{RELEASE}-autoscaler"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert settings == dataclasses.replace(
        defaults, default_image="serveplane/runtime:0.1.0", operator_pod_labels=selector
    ), "the Ray pods' NetworkPolicies select the operator's pods by the Deployment's selector"
    assert settings.namespaces == ()
    # Leader election: the Lease in the release's namespace, the pod's name as identity, the module's timing.
    wanted = leader_election.LeaseConfig(namespace=ns, identity="serveplane-7d9f8-x2k4q")
    assert leader_election.config_from_env(env) == wanted

    service = objects[("Service", ns, f"{RELEASE}-metrics")]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    controlplane.kubectl("create", "namespace", ns, check=False)
    out = server_dry_run(controlplane, docs)
    assert f"deployment.apps/{RELEASE} created (server dry run)" in out
    assert f"clusterrole.rbac.authorization.k8s.io/{RELEASE} created (server dry run)" in out
    assert f"role.rbac.authorization.k8s.io/{election} created (server dry run)" in out
    assert f"poddisruptionbudget.policy/{RELEASE} created (server dry run)" in out


def test_template_without_leader_election(helm: Helm) -> None:
    """One operator, no election: Recreate (never two at once), no PodDisruptionBudget, no Lease Role."""
    ns = "serveplane-system"
    docs = helm.template("--set", "leaderElection.enabled=false", "--set", "replicas=1")
    objects = by_kind(docs)
    assert set(objects) == {
        ("ServiceAccount", ns, RELEASE), ("ClusterRole", "", RELEASE), ("ClusterRoleBinding", "", RELEASE),
        ("ClusterRole", "", f"{RELEASE}-autoscaler"), ("Service", ns, f"{RELEASE}-metrics"),
        ("Deployment", ns, RELEASE),
    }
    deployment = objects[("Deployment", ns, RELEASE)]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "affinity" not in deployment["spec"]["template"]["spec"]
    env = pod_env(operator_container(docs), "serveplane-0", ns)
    assert env["SERVEPLANE_LEADER_ELECTION"] == "false" and leader_election.config_from_env(env) is None
    # One replica with election (and a user's own affinity and Lease timing): no PDB, the affinity as given.
    docs = helm.template(
        "--set", "replicas=1", "--set", "affinity.nodeAffinity.x=y", "--set", "leaderElection.leaseName=ops",
        "--set", "leaderElection.leaseDurationSeconds=15", "--set", "leaderElection.renewPeriodSeconds=3",
        "--set-json", "leaderElection.retryPeriodSeconds=1.5")
    objects = by_kind(docs)
    assert ("PodDisruptionBudget", ns, RELEASE) not in objects
    assert ("Role", ns, f"{RELEASE}-leader-election") in objects
    deployment = objects[("Deployment", ns, RELEASE)]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {"x": "y"}}
    assert leader_election.config_from_env(pod_env(operator_container(docs), "serveplane-0", ns)) == (
        leader_election.LeaseConfig(
            namespace=ns, name="ops", identity="serveplane-0", lease_duration_s=15, renew_period_s=3, retry_period_s=1.5
        )
    )


def test_template_with_namespaces_and_monitors(
    helm: Helm, controlplane: ControlPlane, monitoring_crds: None
) -> None:
    ns, watched = "serveplane-ops", ["t-helm-a", "t-helm-b"]
    docs = helm.template(
        "--set", f"watchNamespaces={{{','.join(watched)}}}", "--set", "serviceMonitor.enabled=true",
        "--set", "podMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prometheus",
        "--set", "logLevel=DEBUG", "--set", "polling.slowSeconds=30", "--set", "metrics.port=9090",
        "--set", "networkPolicy.operatorPodLabels.app=ops",
        "--set-json", f"networkPolicy.metricsSources=[{PROMETHEUS}]",
        namespace=ns,
    )
    objects = by_kind(docs)
    # Namespaced RBAC: a Role and RoleBinding per watched namespace, plus the cluster-scoped reads kopf needs.
    cluster_rules = objects[("ClusterRole", "", RELEASE)]["rules"]
    assert {r for rule in cluster_rules for r in rule["resources"]} == {"customresourcedefinitions", "namespaces"}
    for name in watched:
        role, binding = objects[("Role", name, RELEASE)], objects[("RoleBinding", name, RELEASE)]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RELEASE}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": ns}]
        # Nothing of the rules file is lost or duplicated between the Roles and the ClusterRole.
        lease_role = objects[("Role", ns, f"{RELEASE}-leader-election")]["rules"]
        assert sorted(map(json.dumps, role["rules"] + cluster_rules + lease_role)) == sorted(
            map(json.dumps, rules_file()))
    env = env_of(operator_container(docs))
    settings = Settings.from_env(env)
    assert (settings.namespaces, settings.log_level, settings.poll_slow_s, settings.metrics_port) == (
        tuple(watched), "DEBUG", 30.0, 9090)
    assert settings.operator_namespace == ns
    assert settings.operator_pod_labels == {"app": "ops"}
    assert settings.ray_metrics_sources == (json.loads(PROMETHEUS),)
    assert {p["name"]: p["containerPort"] for p in operator_container(docs)["ports"]}["metrics"] == 9090

    monitor = objects[("ServiceMonitor", ns, RELEASE)]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    deployment = objects[("Deployment", ns, RELEASE)]
    assert monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    pods = objects[("PodMonitor", ns, f"{RELEASE}-ray")]
    assert pods["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ray", "app.kubernetes.io/managed-by": "serveplane"}
    assert pods["spec"]["namespaceSelector"] == {"matchNames": watched}
    assert pods["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"

    for name in [ns, *watched]:
        controlplane.kubectl("create", "namespace", name, check=False)
    out = server_dry_run(controlplane, docs)
    lines = out.splitlines()
    assert lines.count(f"role.rbac.authorization.k8s.io/{RELEASE} created (server dry run)") == len(watched)
    assert lines.count(f"rolebinding.rbac.authorization.k8s.io/{RELEASE} created (server dry run)") == len(watched)
    assert f"servicemonitor.monitoring.coreos.com/{RELEASE} created (server dry run)" in out
    assert f"podmonitor.monitoring.coreos.com/{RELEASE}-ray created (server dry run)" in out


def test_argo_cd_application_values(helm: Helm, tmp_path: Path) -> None:
    """The chart as argocd/apps/serveplane-operator.yaml has Argo CD render it: its values pass the schema."""
    app = yaml.safe_load((REPO / "argocd" / "apps" / "serveplane-operator.yaml").read_text())
    source = app["spec"]["source"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(source["helm"]["valuesObject"]))
    out = helm("template", source["helm"]["releaseName"], str(REPO / source["path"]), "-f", str(values),
               "--namespace", app["spec"]["destination"]["namespace"], "--skip-crds").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    container = operator_container(docs)
    assert container["image"] == "registry.example.com/serveplane/operator:0.1.0"
    assert env_of(container)["SERVEPLANE_DEFAULT_IMAGE"] == "registry.example.com/serveplane/runtime:0.1.0"


def test_ray_pods_match_the_pod_monitor(helm: Helm) -> None:
    from serveplane.operator.manifests import common

    selector = by_kind(helm.template("--set", "podMonitor.enabled=true"))[
        ("PodMonitor", "serveplane-system", f"{RELEASE}-ray")]["spec"]
    labels = common.labels("demo", "head")
    assert selector["selector"]["matchLabels"].items() <= labels.items()
    assert selector["namespaceSelector"] == {"any": True}
    for label in selector["podTargetLabels"]:
        assert label in labels


BAD_VALUES = {
    "replicas: two": (["--set", "replicas=two"], ["/replicas", "got string, want integer"]),
    "two operators without election": (["--set", "leaderElection.enabled=false"], ["/replicas", "got 2, want 1"]),
    "negative replicas": (["--set", "replicas=-1"], ["/replicas", "minimum"]),
    "lease of 2.5 s": (["--set", "leaderElection.leaseDurationSeconds=2.5"], ["/leaderElection/leaseDurationSeconds"]),
    "bad lease name": (["--set", "leaderElection.leaseName=Ops_Lease"], ["/leaderElection/leaseName"]),
    "a typo in leaderElection": (["--set", "leaderElection.enable=true"], ["additional properties 'enable'"]),
    "logLevel: LOUD": (["--set", "logLevel=LOUD"], ["/logLevel", "must be one of 'DEBUG', 'INFO'"]),
    "a typo": (["--set", "watchNamespace={a}"], ["additional properties 'watchNamespace' not allowed"]),
    "not a namespace": (["--set", "watchNamespaces={Team_A}"], ["/watchNamespaces/0", "'Team_A' does not match"]),
    "negative poll": (["--set", "polling.fastSeconds=-1"], ["/polling/fastSeconds"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_fail_helm_install_naming_the_value(helm: Helm, case: str) -> None:
    args, messages = BAD_VALUES[case]
    result = helm("install", "bad", str(CHART), "--namespace", "default", *args, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr
    assert "bad" not in helm("list", "--all-namespaces", "-q").stdout.split()


BAD_COMBINATIONS = {
    "renewals that cannot fit in the lease": (
        ["--set", "leaderElection.renewPeriodSeconds=6", "--set", "leaderElection.retryPeriodSeconds=4"],
        "renewPeriodSeconds (6) + retryPeriodSeconds (4) must be less than leaseDurationSeconds (10)"),
    "a PDB that blocks every drain": (
        ["--set", "podDisruptionBudget.minAvailable=2"],
        "podDisruptionBudget.minAvailable (2) must be less than replicas (2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_COMBINATIONS))
def test_bad_combinations_fail_with_the_chart_s_message(helm: Helm, case: str) -> None:
    args, message = BAD_COMBINATIONS[case]
    result = helm("template", RELEASE, str(CHART), *args, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


# --- a real install ---------------------------------------------------------------------------------------------






class ReleaseOperator:
    """`serveplane operator` as the release's ServiceAccount, with the release Deployment's environment."""

    def __init__(self, cp: ControlPlane, namespace: str, account: str, env: dict[str, str], workdir: Path) -> None:
        self.cp, self.workdir = cp, workdir
        self.health_port, self.metrics_port = free_port(), free_port()
        kubeconfig = cp.create_service_account_kubeconfig(namespace, account, workdir / "release.kubeconfig")
        # Ports are moved off 8080/8081 (this machine is shared), and polling is made quick for the test.
        self.env = {
            **os.environ, **env, "KUBECONFIG": str(kubeconfig),
            "SERVEPLANE_METRICS_PORT": str(self.metrics_port), "SERVEPLANE_HEALTH_PORT": str(self.health_port),
            "SERVEPLANE_POLL_FAST_S": "1", "SERVEPLANE_POLL_SLOW_S": "5",
        }
        self.log_path = workdir / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ReleaseOperator:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "serveplane"), "operator"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        try:
            wait_for("the operator's /healthz", healthy, timeout=90)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def assert_clean(self) -> None:
        log = self.log()
        assert "Forbidden" not in log and " 403" not in log, "the operator hit RBAC denials:\n" + log[-6000:]
        assert "Traceback" not in log, "the operator failed:\n" + log[-6000:]


RELEASE_OBJECTS = [
    ("deployment", RELEASE), ("serviceaccount", RELEASE), ("service", f"{RELEASE}-metrics"),
    ("poddisruptionbudget", RELEASE), ("role", f"{RELEASE}-leader-election"),
    ("rolebinding", f"{RELEASE}-leader-election"),
]
CLUSTER_OBJECTS = [
    ("clusterrole", RELEASE), ("clusterrolebinding", RELEASE), ("clusterrole", f"{RELEASE}-autoscaler"),
]


@pytest.mark.parametrize("scope", ["cluster-wide", "namespaced"])
def test_install_run_the_operator_as_the_release_and_uninstall(
    helm: Helm, controlplane: ControlPlane, tmp_path: Path, scope: str
) -> None:
    cp = controlplane
    release_ns, apps_ns = f"t-helm-release-{scope}", f"t-helm-apps-{scope}"
    for name in (release_ns, apps_ns):
        cp.kubectl("create", "namespace", name)
    # A rayImage of its own, so the pods show that the release's setting reached the operator.
    values = ["--set", "rayImage.repository=registry.example.com/serveplane/runtime"]
    values += ["--set", f"watchNamespaces={{{apps_ns}}}"] if scope == "namespaced" else []
    out = helm("install", RELEASE, str(CHART), "--namespace", release_ns, *values).stdout
    assert "STATUS: deployed" in out
    try:
        # The chart's CRDs are served (installed by this release or already there: Helm never replaces them).
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))
        deployment = get(cp, "deployment", RELEASE, release_ns)
        assert deployment is not None
        for kind, name in RELEASE_OBJECTS:
            assert get(cp, kind, name, release_ns) is not None, (kind, name)
        for kind, name in CLUSTER_OBJECTS:
            assert get(cp, kind, name) is not None, (kind, name)
        if scope == "namespaced":
            assert get(cp, "role", RELEASE, apps_ns) is not None
            assert get(cp, "rolebinding", RELEASE, apps_ns) is not None

        # The operator as the release would run it: its ServiceAccount's token, its Deployment's environment
        # (the downward API's fields filled in as the kubelet would, for a pod of this release).
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        pod_name = f"{RELEASE}-6c7d8-r4nd0"
        env = pod_env(container, pod_name, release_ns)
        assert set(env) >= setting_envs()
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        # The Lease rules hold in the release's namespace, and nowhere else.
        as_account = f"--as=system:serviceaccount:{release_ns}:{account}"
        for verb in ("get", "create", "update"):
            assert cp.kubectl("auth", "can-i", verb, "leases.coordination.k8s.io", "-n", release_ns,
                              as_account, check=False).stdout.strip() == "yes", verb
        assert cp.kubectl("auth", "can-i", "update", "leases.coordination.k8s.io", "-n", "kube-system",
                          as_account, check=False).stdout.strip() == "no"
        with ReleaseOperator(cp, release_ns, account, env, tmp_path) as operator:
            cp.kubectl("apply", "-n", apps_ns, "-f", str(EXAMPLES / "cluster.yaml"))
            pods = wait_for("the head and two workers", lambda: (lambda ps: ps if len(ps) == 3 else None)(
                ray_pods(cp, "demo", apps_ns)))
            gen = generation_of(pods[0])
            assert sorted(p["metadata"]["name"] for p in pods) == [
                f"demo-{gen}-head", f"demo-{gen}-worker-cpu-0", f"demo-{gen}-worker-cpu-1"]
            for service in ("demo-head", f"demo-{gen}-head", "demo-serve"):
                wait_for(f"Service {service}", lambda service=service: get(cp, "service", service, apps_ns))
            # The release's RBAC lets it make the token Secret and the NetworkPolicy, which lets the release's own
            # pods (its namespace, its selector labels) reach Ray's ports.
            wait_for("the token Secret", lambda: get(cp, "secret", "demo-ray-token", apps_ns))
            policy = wait_for("the NetworkPolicy", lambda: get(cp, "networkpolicy", "demo-ray", apps_ns))
            peer = policy["spec"]["ingress"][2]["from"][0]
            assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": release_ns}
            assert peer["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
            cluster = wait_for("the ServeCluster's status", lambda: (lambda o: o if condition(o, "Ready") else None)(
                get(cp, "scl", "demo", apps_ns)))
            assert cluster["status"]["observedGeneration"] == cluster["metadata"]["generation"]
            assert condition(cluster, "Ready")["reason"] == "HeadNotReady"
            example_image = yaml.safe_load((EXAMPLES / "cluster.yaml").read_text())["spec"]["image"]
            assert head_pod(cp, "demo", apps_ns)["spec"]["containers"][0]["image"] == example_image
            # A ServeCluster without spec.image gets the chart's rayImage (SERVEPLANE_DEFAULT_IMAGE).
            bare = {"apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeCluster", "metadata": {"name": "bare"},
                    "spec": {"workerGroups": []}}
            cp.kubectl("apply", "-n", apps_ns, "-f", "-", input=yaml.safe_dump(bare))
            head = wait_for("bare's head pod", lambda: head_pod(cp, "bare", apps_ns))
            assert head["spec"]["containers"][0]["image"] == "registry.example.com/serveplane/runtime:0.1.0"
            # It reconciled as the holder of the release's Lease, under the release's Role.
            lease = get(cp, "lease", env["SERVEPLANE_LEASE_NAME"], release_ns)
            assert lease is not None and lease["spec"]["holderIdentity"] == pod_name, lease
        operator.assert_clean()
        cp.kubectl("delete", "scl", "demo", "bare", "-n", apps_ns, "--wait=false")
    finally:
        result = helm("uninstall", RELEASE, "--namespace", release_ns, "--wait", "--timeout=120s", check=False)
    assert result.returncode == 0, result.stderr
    for kind, name in RELEASE_OBJECTS:
        assert get(cp, kind, name, release_ns) is None, f"{kind}/{name} survived helm uninstall"
    for kind, name in CLUSTER_OBJECTS:
        assert get(cp, kind, name) is None, f"{kind}/{name} survived helm uninstall"
    assert get(cp, "role", RELEASE, apps_ns) is None and get(cp, "rolebinding", RELEASE, apps_ns) is None
    # The CRDs stay (with every ServeCluster in the cluster): Helm never deletes what crds/ installed.
    assert get(cp, "crd", "serveclusters.serveplane.dev") is not None
    for name in (release_ns, apps_ns):
        cp.kubectl("delete", "namespace", name, "--wait=false")
