"""A container's environment and argv, resolved the way the kubelet does it.

Images are ignored, so the base environment is the host's essentials with the
runner's Python environment first on PATH (``python`` is the venv's python).
"""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

_BASE_VARS = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class ObjectReader(Protocol):
    """Reads the ConfigMaps and Secrets that env vars refer to (None when missing)."""

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class EnvError(RuntimeError):
    """A required env source is missing: the kubelet's CreateContainerConfigError."""


@dataclass(frozen=True)
class PodFacts:
    """What the downward API can expose about a pod."""

    pod: Mapping[str, Any]
    pod_ip: str
    host_ip: str

    def field(self, path: str) -> str:
        meta = self.pod.get("metadata", {})
        spec = self.pod.get("spec", {})
        simple = {
            "metadata.name": meta.get("name", ""),
            "metadata.namespace": meta.get("namespace", ""),
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": self.pod_ip,
            "status.podIPs": self.pod_ip,
            "status.hostIP": self.host_ip,
            "status.hostIPs": self.host_ip,
        }
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        raise EnvError(f"unsupported fieldRef {path!r}")


def venv_bin() -> str:
    return os.path.dirname(sys.executable)


def base_env(hostname: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _BASE_VARS if k in os.environ}
    env.setdefault("HOME", "/root")
    env["PATH"] = os.pathsep.join([venv_bin(), os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    env["HOSTNAME"] = hostname
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined vars are replaced, ``$$`` is ``$``, the rest stays."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REF.sub(sub, text)


def _decode(data: Mapping[str, str], key: str, secret: bool) -> str | None:
    if key not in data:
        return None
    return base64.b64decode(data[key]).decode(errors="replace") if secret else data[key]


def _key_ref(reader: ObjectReader | None, namespace: str, ref: Mapping[str, Any], secret: bool) -> str | None:
    kind = "secret" if secret else "configmap"
    obj = None
    if reader is not None:
        obj = reader.read_secret(namespace, ref["name"]) if secret else reader.read_config_map(namespace, ref["name"])
    value = _decode((obj or {}).get("data") or {}, ref["key"], secret) if obj else None
    if value is None and not secret and obj:
        binary = (obj.get("binaryData") or {}).get(ref["key"])
        value = base64.b64decode(binary).decode(errors="replace") if binary is not None else None
    if value is None and not ref.get("optional"):
        raise EnvError(f"{kind} {namespace}/{ref['name']} key {ref['key']!r} not found")
    return value


def container_env(
    container: Mapping[str, Any], facts: PodFacts, hostname: str, reader: ObjectReader | None
) -> dict[str, str]:
    """The full environment for ``container``: base, then envFrom, then env (later wins)."""
    namespace = facts.pod["metadata"]["namespace"]
    env = base_env(hostname)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        secret = "secretRef" in source
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        obj = None
        if reader is not None:
            read = reader.read_secret if secret else reader.read_config_map
            obj = read(namespace, ref["name"])
        if obj is None:
            if not ref.get("optional"):
                raise EnvError(f"{'secret' if secret else 'configmap'} {namespace}/{ref['name']} not found")
            continue
        for key in obj.get("data") or {}:
            env[prefix + key] = _decode(obj["data"], key, secret) or ""
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            # Only what was defined before this var is visible to its $(refs).
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = facts.field(source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source:
            value = _key_ref(reader, namespace, source["configMapKeyRef"], secret=False)
        elif "secretKeyRef" in source:
            value = _key_ref(reader, namespace, source["secretKeyRef"], secret=True)
        elif "resourceFieldRef" in source:
            value = _resource_field(container, source["resourceFieldRef"])
        else:
            raise EnvError(f"env var {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def _resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    # Requests/limits as written; the node has no real limits to fall back on.
    kind, _, resource = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    return str(value) if value is not None else "0"


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expanded. With no command there is no image entrypoint: args run alone."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    return [expand(arg, env) for arg in argv]
