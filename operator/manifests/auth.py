"""PURE: the Secret holding a ServeCluster's Ray auth token, and the token's digest that Ray pods carry.

The builder makes the Secret without data: the executor generates the token when it creates the Secret (the
planner and `serveplane render` never see one). Pods read the token through `secretKeyRef` (rayenv.py) and carry
only its digest (`DIGEST_ANNOTATION`), so the planner can tell which pods run with a token that is no longer the
Secret's and replace them, without the token itself ever being compared, logged or copied.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from . import common

TOKEN_KEY = "token"
DIGEST_ANNOTATION = "serveplane.dev/auth-token-digest"


def token_secret(*, cluster: str, namespace: str, uid: str) -> dict[str, Any]:
    """The Secret to create, without its data (the executor adds the token)."""
    meta = common.metadata(
        name=common.token_secret_name(cluster), namespace=namespace, cluster=cluster, uid=uid, component="auth"
    )
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque"}


def token_of(secret: dict[str, Any] | None) -> str | None:
    """The token a Secret (as the API server returns it: base64 `data`) holds, or None when it holds none."""
    raw = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
    if not isinstance(raw, str):
        return None
    try:
        token = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return token.strip() or None


def digest(token: str) -> str:
    """A short one-way fingerprint of a token: what pods and plans carry instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]
