"""The README's first command, for real: `serveplane dev up` to curl-able applications on a real node.

The `trial` fixture (conftest.py) ran `serveplane dev up` as a user would; `serveplane dev down` runs after the
last e2e test, and checks that nothing of the node is left on the machine.
"""
from __future__ import annotations

import json
import re
import urllib.request

from trialkit import Trial, serveplane

from serveplane.localcluster.testkit import head_pod_name


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: dict[str, object] = json.loads(answer.read())
    return body


def test_dev_up_ends_with_curl_lines_that_answer(trial: Trial) -> None:
    out = trial.up.stdout
    assert f"export KUBECONFIG={trial.cp.kubeconfig}" in out
    cluster_ip = trial.cp.kubectl(
        "get", "service", "demo-serve", "-n", "default", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    urls = re.findall(r"curl '?(http://[0-9.]+:8000/[^' \n]+)'?", out)
    # Through kube-proxy (the ClusterIP) and through each Serve proxy (pod IPs).
    assert f"http://{cluster_ip}:8000/hello/" in urls, out
    # Which proxies are endpoints moves with Serve (it drains the proxy of a node without replicas): the printed
    # ones were endpoints then, and are the demo cluster's pods.
    printed = {u.split("/")[2].split(":")[0] for u in urls if cluster_ip not in u}
    pods = json.loads(trial.cp.kubectl("get", "pods", "-n", "default", "-l", "app.kubernetes.io/instance=demo",
                                       "-o", "json").stdout)["items"]
    assert printed and printed <= {p["status"]["podIP"] for p in pods}, (printed, out)
    for url in urls:
        body = get_json(url)
        assert body.get("greeting") == "Hello from serveplane" or body.get("output") == 6.0, (url, body)


def test_dev_kubectl_reaches_the_control_plane_and_the_kubelet(trial: Trial) -> None:
    version = serveplane(trial.env, "dev", "kubectl", "version", timeout=60)
    assert "Server Version: v1.37.2" in version.stdout, version.stdout + version.stderr
    explained = serveplane(trial.env, "dev", "kubectl", "explain", "serveapplication.spec", timeout=60)
    assert "package.module:attribute" in explained.stdout
    # logs and exec go through the API server to the kubelet.
    head = head_pod_name(trial.cp, "demo", "default")
    logs = serveplane(trial.env, "dev", "kubectl", "logs", "-n", "default", head, timeout=60)
    assert logs.returncode == 0 and logs.stdout, logs.stderr
    status = serveplane(trial.env, "dev", "kubectl", "exec", "-n", "default", head, "--", "ray", "status",
                        timeout=120)
    assert status.returncode == 0 and "Active:" in status.stdout, status.stdout + status.stderr


def test_a_second_dev_up_reuses_what_runs(trial: Trial) -> None:
    again = serveplane(trial.env, "dev", "up")
    assert again.returncode == 0 and "already running" in again.stderr, again.stderr[-3000:]
