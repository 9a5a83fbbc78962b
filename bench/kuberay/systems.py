"""The two systems under the same workload, behind one interface the measurements use.

The workload is the repository's examples: examples/cluster.yaml (a head and a group of 2 workers, their
rayStartParams, a Serve proxy on every node) and examples/hello.yaml (the hello app, 2 replicas spread over nodes).
serveplane gets them as they are; KubeRay gets a RayService built from the same two files (the same image, the same
rayStartParams and worker count, the hello app as an equivalent serveConfigV2), so neither side is tuned apart.
"""
from __future__ import annotations

import base64
import collections
import json
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import yaml

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.incluster import USER as SERVEPLANE_USER
from serveplane.localcluster.incluster import ChartOperator
from serveplane.localcluster.node import Node

from .operator import USER as KUBERAY_USER
from .operator import HostOperator, rss_mib

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IMAGE = "serveplane/runtime:0.1.0"
HELLO_PATH = "/hello/"
SERVE_PORT = 8000
DASHBOARD_PORT = 8265

Obj = dict[str, Any]


def example(name: str) -> Obj:
    doc: Obj = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_snake(k): _snake_keys(v) for k, v in value.items()}
    return value


class System(ABC):
    """One operator and its copy of the workload, in a namespace of its own."""

    name: str
    namespace: str
    serve_service: str
    operator_user: str
    # The Ray pods of the workload, whatever generation or RayCluster they belong to.
    pod_selector: str
    head_selector: str

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    # -- the workload -------------------------------------------------------------------------------------------

    @abstractmethod
    def manifests(self, greeting: str, image: str) -> list[Obj]:
        """The objects of the workload: a head, 2 workers and the hello app answering `greeting`."""

    @abstractmethod
    def set_greeting(self, greeting: str) -> None:
        """The in-place change: the hello app's args."""

    @abstractmethod
    def set_image(self, image: str) -> None:
        """The upgrade: every Ray pod's image."""

    def apply(self, greeting: str, image: str = IMAGE) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": self.manifests(greeting, image)}
        self.cp.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(items))

    def create_namespace(self) -> None:
        if self.cp.kubectl("get", "namespace", self.namespace, check=False).returncode != 0:
            self.cp.kubectl("create", "namespace", self.namespace)

    def remove(self) -> None:
        """Delete the workload's namespace and wait until its pods are gone (the node has room for one)."""
        self.cp.kubectl("delete", "namespace", self.namespace, "--ignore-not-found", "--timeout=600s")

    # -- what the measurements read -----------------------------------------------------------------------------

    def pods(self) -> list[Obj]:
        out = self.cp.kubectl("get", "pods", "-n", self.namespace, "-l", self.pod_selector, "-o", "json").stdout
        items: list[Obj] = json.loads(out)["items"]
        return items

    def head_pod(self) -> Obj | None:
        out = self.cp.kubectl("get", "pods", "-n", self.namespace, "-l", self.head_selector, "-o", "json").stdout
        heads = [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]
        return heads[0] if len(heads) == 1 else None

    def dashboard_headers(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def operator_http_requests(self) -> collections.Counter[str]:
        """Requests the operator has sent to Ray so far, by kind ("dashboard", "serve proxy health")."""

    @abstractmethod
    def operator_rss_mib(self) -> float:
        """The resident memory of the (leading) operator process, from /proc."""

    def operator_note(self) -> str:
        return ""


class Serveplane(System):
    name = "serveplane"
    namespace = "bench-serveplane"
    cluster = "demo"
    serve_service = f"{cluster}-serve"
    operator_user = SERVEPLANE_USER
    pod_selector = f"serveplane.dev/cluster={cluster}"
    head_selector = f"serveplane.dev/cluster={cluster},serveplane.dev/node-type=head"

    def __init__(self, cp: ControlPlane, node: Node) -> None:
        super().__init__(cp)
        self.operator = ChartOperator(cp, node)

    def manifests(self, greeting: str, image: str) -> list[Obj]:
        cluster, hello = example("cluster.yaml"), example("hello.yaml")
        cluster["spec"]["image"] = image
        hello["spec"]["args"]["greeting"] = greeting
        return [cluster, hello]

    def set_greeting(self, greeting: str) -> None:
        patch = {"spec": {"args": {"greeting": greeting}}}
        self.cp.kubectl("patch", "sapp", "hello", "-n", self.namespace, "--type=merge", "-p", json.dumps(patch))

    def set_image(self, image: str) -> None:
        patch = {"spec": {"image": image}}
        self.cp.kubectl("patch", "scl", self.cluster, "-n", self.namespace, "--type=merge", "-p", json.dumps(patch))

    def dashboard_headers(self) -> dict[str, str]:
        # Token authentication is on by default: the operator keeps the token in a Secret of the cluster.
        out = self.cp.kubectl("get", "secret", f"{self.cluster}-ray-token", "-n", self.namespace, "-o", "json")
        token = base64.b64decode(json.loads(out.stdout)["data"]["token"]).decode()
        return {"Authorization": f"Bearer {token}"}

    def _leader(self) -> str:
        leader = self.operator.leader_name()
        if leader is None:
            raise RuntimeError("no serveplane operator replica holds the Lease")
        return leader

    def operator_http_requests(self) -> collections.Counter[str]:
        value = self.operator.metric(self._leader(), "serveplane_dashboard_requests_total")
        return collections.Counter({"dashboard": int(value)})

    def operator_rss_mib(self) -> float:
        return rss_mib(self.operator.host_pid(self._leader()))

    def operator_note(self) -> str:
        return "the chart's Deployment: 2 replicas in pods, leader measured"


class KubeRayService(System):
    name = "kuberay"
    namespace = "bench-kuberay"
    service = "hello"
    serve_service = f"{service}-serve-svc"
    operator_user = KUBERAY_USER
    pod_selector = "ray.io/is-ray-node=yes"
    head_selector = "ray.io/node-type=head"

    def __init__(self, cp: ControlPlane, operator: HostOperator) -> None:
        super().__init__(cp)
        self.operator = operator

    def serve_config(self, greeting: str) -> Obj:
        """examples/hello.yaml as Serve's own config (what serveplane composes from it), with the cluster's proxy
        settings from examples/cluster.yaml."""
        hello, cluster = example("hello.yaml")["spec"], example("cluster.yaml")["spec"]
        deployments = [_snake_keys(d) for d in hello.get("deployments") or []]
        application = {
            "name": "hello",
            "import_path": hello["importPath"],
            "route_prefix": hello["routePrefix"],
            "args": {**hello.get("args", {}), "greeting": greeting},
            "deployments": deployments,
        }
        serve = cluster.get("serve") or {}
        return {
            "proxy_location": serve.get("proxyLocation", "EveryNode"),
            "http_options": {"host": "0.0.0.0", "port": serve.get("httpPort", SERVE_PORT)},
            "applications": [application],
        }

    def manifests(self, greeting: str, image: str) -> list[Obj]:
        cluster = example("cluster.yaml")["spec"]
        group = cluster["workerGroups"][0]
        head = {
            "rayStartParams": {**cluster["head"]["rayStartParams"], "dashboard-host": "0.0.0.0"},
            "template": {"spec": {"containers": [ray_container("ray-head", image, head=True)]}},
        }
        workers = {
            "groupName": group["name"],
            "replicas": group["replicas"], "minReplicas": group["replicas"], "maxReplicas": group["replicas"],
            "rayStartParams": dict(group["rayStartParams"]),
            "template": {"spec": {"containers": [ray_container("ray-worker", image, head=False)]}},
        }
        service = {
            "apiVersion": "ray.io/v1",
            "kind": "RayService",
            "metadata": {"name": self.service},
            "spec": {
                # KubeRay's serveConfigV2 is Serve's config file as a YAML string.
                "serveConfigV2": yaml.safe_dump(self.serve_config(greeting), sort_keys=False),
                "rayClusterConfig": {"rayVersion": "2.60.0", "headGroupSpec": head, "workerGroupSpecs": [workers]},
            },
        }
        return [service]

    def _patch(self, patch: Obj) -> None:
        self.cp.kubectl("patch", "rayservice", self.service, "-n", self.namespace, "--type=merge",
                        "-p", json.dumps(patch))

    def _spec(self) -> Obj:
        out = self.cp.kubectl("get", "rayservice", self.service, "-n", self.namespace, "-o", "json").stdout
        spec: Obj = json.loads(out)["spec"]
        return spec

    def set_greeting(self, greeting: str) -> None:
        # A serveConfigV2 change alone is applied in place (a PUT to the running cluster's Serve).
        config = yaml.safe_dump(self.serve_config(greeting), sort_keys=False)
        self._patch({"spec": {"serveConfigV2": config}})

    def set_image(self, image: str) -> None:
        # A rayClusterConfig change makes KubeRay bring up a whole new RayCluster and switch to it (its default
        # upgrade strategy, NewCluster). The lists are replaced whole by a merge patch: send them changed.
        config = self._spec()["rayClusterConfig"]
        for template in [config["headGroupSpec"]["template"], *(g["template"] for g in config["workerGroupSpecs"])]:
            template["spec"]["containers"][0]["image"] = image
        self._patch({"spec": {"rayClusterConfig": config}})

    def operator_http_requests(self) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for (port, _method, _path), n in self.operator.proxy.snapshot().items():
            counts["dashboard" if port == DASHBOARD_PORT else "serve proxy health" if port == SERVE_PORT
                   else f"port {port}"] += n
        return counts

    def operator_rss_mib(self) -> float:
        return self.operator.rss_mib()

    def operator_note(self) -> str:
        return "one host process (built from the Go module), its ServiceAccount's RBAC"


def _http_probe(port: int, path: str, seconds: int) -> str:
    """KubeRay's probe check `wget -T <s> -q -O- http://localhost:<port>/<path> | grep success`, in bash alone:
    the runtime image (a Debian minbase, as Ray's is not) has no wget."""
    request = f"GET /{path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"
    return (f"timeout {seconds} bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && printf \"{request}\" >&3 && cat <&3'"
            " | grep success")


def _probe(commands: list[str], *, initial: int, timeout: int, failures: int) -> Obj:
    return {
        "exec": {"command": ["bash", "-c", " && ".join(commands)]},
        "initialDelaySeconds": initial, "timeoutSeconds": timeout, "periodSeconds": 5,
        "successThreshold": 1, "failureThreshold": failures,
    }


def ray_container(name: str, image: str, *, head: bool) -> Obj:
    """A Ray container as KubeRay's samples declare it, with the probes KubeRay would inject (same endpoints,
    timings and thresholds as v1.5.0's defaults) written out, because the injected ones call wget."""
    raylet = _http_probe(52365, "api/local_raylet_healthz", 2)
    if head:
        checks = [raylet, _http_probe(DASHBOARD_PORT, "api/gcs_healthz", 10)]
        liveness = _probe(checks, initial=30, timeout=5, failures=120)
        readiness = _probe(checks, initial=10, timeout=5, failures=10)
        ports = [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": DASHBOARD_PORT},
            {"name": "client", "containerPort": 10001},
            {"name": "serve", "containerPort": SERVE_PORT},
        ]
    else:
        liveness = _probe([raylet], initial=30, timeout=2, failures=120)
        # A RayService worker is Ready only while its Serve proxy is healthy (failure threshold 1), as injected.
        readiness = _probe([raylet, _http_probe(SERVE_PORT, "-/healthz", 10)], initial=10, timeout=2, failures=1)
        ports = [{"name": "serve", "containerPort": SERVE_PORT}]
    return {"name": name, "image": image, "ports": ports, "livenessProbe": liveness, "readinessProbe": readiness}
