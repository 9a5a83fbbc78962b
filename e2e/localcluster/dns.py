"""Cluster DNS for the real node: CoreDNS as a Deployment in kube-system behind the kube-dns Service.

As kubeadm installs it, minus what a one-node trial does not need (autoscaling, anti-affinity): the
kubelet points every pod's resolv.conf at the Service's ClusterIP (nodeconfig.DNS_SERVICE_IP) and kube-proxy
routes it to the CoreDNS pod, which answers from the API server's Services and EndpointSlices.
"""

from __future__ import annotations

import time

import yaml

from .controlplane import ControlPlane
from .nodeconfig import CLUSTER_DOMAIN, DNS_SERVICE_IP

NAMESPACE = "kube-system"
NAME = "coredns"
# Above 1024, so CoreDNS runs as non-root without capabilities; the Service maps port 53 onto it.
PORT = 1053

COREFILE = f"""\
.:{PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    reload
    loadbalance
}}
"""


def manifests(image: str) -> list[dict[str, object]]:
    labels = {"k8s-app": "kube-dns", "app.kubernetes.io/name": NAME}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "Never",
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [
            {"name": "dns", "containerPort": PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns", "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "priorityClassName": "system-cluster-critical",
                        # CoreDNS resolves outside names through the node's resolver, not through itself.
                        "dnsPolicy": "Default",
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": NAME}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": PORT, "protocol": "TCP"},
                ],
            },
        },
    ]


def install(cp: ControlPlane, image: str, timeout: float = 120.0) -> None:
    """Apply CoreDNS and wait until its pod is ready (its /ready answers: it has synced with the API server)."""
    cp.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(manifests(image)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = cp.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}")
        if status == 200 and body.get("status", {}).get("readyReplicas", 0) >= 1:
            return
        time.sleep(0.5)
    pods = cp.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout
    raise TimeoutError(f"CoreDNS not ready after {timeout:.0f}s:\n{pods}")
