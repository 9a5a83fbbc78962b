"""Write kubeconfig files for the local control plane.

Certificates and tokens are embedded as data, so a kubeconfig stays valid when
copied elsewhere and works the same for kubectl, kopf and the Python client.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

CLUSTER_NAME = "serveplane-local"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a one-context kubeconfig for ``user`` and return its path.

    Authenticate either with a client certificate pair or a bearer token.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    if token is None and client_cert is None:
        raise ValueError("need a client certificate or a token")
    credentials: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        credentials["client-certificate-data"] = _b64(client_cert)
        credentials["client-key-data"] = _b64(client_key)
    if token is not None:
        credentials["token"] = token
    context: dict[str, str] = {"cluster": CLUSTER_NAME, "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # It holds a private key or token.
    path.chmod(0o600)
    return path
