"""Write argocd-cm.yaml from the health script in health/ (one script serves the three kinds).

A test fails when it is out of date.

    .venv/bin/python argocd/render.py
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ("ServeCluster", "ServeApplication", "ServeDeployment")
SCRIPT = HERE / "health" / "serveplane.lua"
HEADER = """\
# Argo CD health checks of serveplane's three kinds. Merge the `data` keys into your argocd-cm ConfigMap
# (kubectl -n argocd patch configmap argocd-cm --patch-file argocd/argocd-cm.yaml), or copy them into the Argo CD
# Helm chart's `configs.cm`. Generated from argocd/health/serveplane.lua by argocd/render.py; do not edit here.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def render() -> str:
    out = [HEADER]
    script = SCRIPT.read_text()
    for kind in KINDS:
        body = "".join(f"    {line}" if line.strip() else "\n" for line in script.splitlines(keepends=True))
        out.append(f"  resource.customizations.health.serveplane.dev_{kind}: |\n{body}")
    return "".join(out)


if __name__ == "__main__":
    (HERE / "argocd-cm.yaml").write_text(render())
    print(HERE / "argocd-cm.yaml")
