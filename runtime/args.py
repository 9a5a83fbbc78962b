"""PURE: the runtime's command line, and the `ray start` command it implies.

Called by `entrypoint.main`. The operator's pod builder (operator/manifests/pods.py) fixes the flags:

    head   --agent-port=P --http-port=P --metrics-port=P --port=P --dashboard-port=P [--ray-param=K=V ...]
    worker --agent-port=P --http-port=P --metrics-port=P --address=HOST:PORT [--ray-param=K=V ...]
    drain  --agent-port=P [--timeout=S]      the preStop hook: asks this pod's agent to drain, over loopback

The tuning flags below (--startup-grace, --drain-timeout, ...) are optional, default to environment variables so a
cluster's pod `env` can set them, and are not part of that contract.
Nothing here reads the process environment except through the `environ` mapping it is given.
"""
from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

HEAD = "head"
WORKER = "worker"

# `ray start` options that take no value (click `is_flag`), from `ray.scripts.scripts.start` in Ray 2.60;
# tests/unit/test_runtime_args.py compares this set with the installed Ray.
RAY_BOOLEAN_FLAGS = frozenset(
    {
        "block",
        "disable-usage-stats",
        "enable-object-reconstruction",
        "enable-resource-isolation",
        "head",
        "no-monitor",
        "no-redirect-output",
        "ray-debugger-external",
    }
)
# Options the runtime sets itself. Letting a --ray-param override them would break the contract silently (a head
# dashboard bound to 127.0.0.1, a temp dir outside cleanup's reach, a node that does not block), so they are refused.
RESERVED_RAY_PARAMS = frozenset(
    {
        "address",
        "block",
        "dashboard-host",
        "dashboard-port",
        "head",
        "metrics-export-port",
        "node-ip-address",
        "port",
        "temp-dir",
    }
)
# Optional tuning flags: flag -> (environment variable, default seconds, help). Defaults fit the pod's
# terminationGracePeriodSeconds of 60: drain 20 + Ray's node drain 20 (workers) + stop grace 10.
_TUNING: dict[str, tuple[str, float, str]] = {
    "startup-grace": ("SERVEPLANE_STARTUP_GRACE_S", 120.0, "seconds /livez answers 200 while Ray starts"),
    "drain-timeout": ("SERVEPLANE_DRAIN_TIMEOUT_S", 20.0, "longest wait of /drain"),
    "drain-min-wait": ("SERVEPLANE_DRAIN_MIN_WAIT_S", 3.0, "shortest wait of /drain, for endpoints to drop the pod"),
    "stop-grace": ("SERVEPLANE_STOP_GRACE_S", 10.0,
                   "seconds Ray gets to stop after SIGTERM, on top of its node drain, before SIGKILL"),
}
_TRUE = {"", "true"}
_FALSE = {"false"}

# AF_UNIX socket paths are limited to 107 bytes and Ray puts its sockets at
# <temp-dir>/session_<date>_<time>_<usec>_<pid>/sockets/dash_MetricsHead (up to 68 bytes after the temp dir).
MAX_TEMP_DIR_LEN = 36


class ArgsError(ValueError):
    """The command line cannot be turned into a valid `ray start` command."""


@dataclass(frozen=True)
class RuntimeArgs:
    """Everything the entrypoint needs, parsed and validated."""

    role: str
    agent_port: int
    http_port: int
    metrics_port: int
    startup_grace_s: float
    drain_timeout_s: float
    drain_min_wait_s: float
    stop_grace_s: float
    gcs_port: int | None = None  # head only
    dashboard_port: int | None = None  # head only
    address: tuple[str, int] | None = None  # worker only: the head's GCS, HOST may be a DNS name
    ray_params: dict[str, str] = field(default_factory=dict)

    @property
    def is_head(self) -> bool:
        return self.role == HEAD


def _float_env(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ArgsError(f"{name}={raw!r} is not a number") from exc


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def split_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` -> (host, port); HOST may be a DNS name, an IPv4 address or a bracketed IPv6 address."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ArgsError(f"--address must be HOST:PORT, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host, _port(port)


def parse_ray_params(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` items -> {key: value}, keys normalised to `ray start`'s dashed spelling."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        # KubeRay users write num-cpus, Python users num_cpus; click only knows the dashed form.
        key = key.strip().lstrip("-").replace("_", "-")
        if not key:
            raise ArgsError(f"--ray-param needs KEY=VALUE, got {item!r}")
        if key in RESERVED_RAY_PARAMS:
            raise ArgsError(f"--ray-param {key} is set by serveplane.runtime itself and cannot be overridden")
        if not sep and key not in RAY_BOOLEAN_FLAGS:
            raise ArgsError(f"--ray-param {item!r} has no value; write {key}=VALUE (or {key}= for a bare flag)")
        params[key] = value
    return params


def ray_param_flags(params: Mapping[str, str]) -> list[str]:
    """Extra `ray start` flags: a boolean flag set to "true" or "" is bare, set to "false" it is left out."""
    flags: list[str] = []
    for key in sorted(params):
        value = params[key]
        if key in RAY_BOOLEAN_FLAGS:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                flags.append(f"--{key}")
            elif lowered not in _FALSE:
                raise ArgsError(f"--ray-param {key} is a boolean flag: use true or false, not {value!r}")
        elif value == "":
            # An option unknown to us given without a value: most likely a newer boolean flag.
            flags.append(f"--{key}")
        else:
            flags.append(f"--{key}={value}")
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serveplane.runtime",
        description="Start one Ray node (head or worker) and its node agent (probes, drain, metrics).",
    )
    roles = parser.add_subparsers(dest="role", required=True)
    for role in (HEAD, WORKER):
        sub = roles.add_parser(role)
        sub.add_argument("--agent-port", type=_port, required=True, help="node agent: /livez /readyz /drain /metrics")
        sub.add_argument("--http-port", type=_port, required=True, help="the Serve proxy's HTTP port on this node")
        sub.add_argument("--metrics-port", type=_port, required=True, help="Ray's own metrics (--metrics-export-port)")
        if role == HEAD:
            sub.add_argument("--port", type=_port, required=True, help="GCS port")
            sub.add_argument("--dashboard-port", type=_port, required=True)
        else:
            sub.add_argument("--address", required=True, help="the head's GCS as HOST:PORT (HOST may be a DNS name)")
        sub.add_argument(
            "--ray-param", action="append", default=[], metavar="KEY=VALUE", help="extra `ray start` flag"
        )
        for flag, (env, default, text) in _TUNING.items():
            sub.add_argument(f"--{flag}", type=float, help=f"{text} [env {env}, default {default:g}]")
    return parser


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> RuntimeArgs:
    """Parse the command line; argparse exits with status 2 on a malformed one, ArgsError flags bad values."""
    ns = _parser().parse_args(list(argv))

    def tuning(flag: str) -> float:
        env, default, _ = _TUNING[flag]
        value = getattr(ns, flag.replace("-", "_"))
        chosen = value if value is not None else _float_env(environ, env, default)
        if chosen < 0:
            raise ArgsError(f"--{flag} / {env} must not be negative")
        return float(chosen)

    params = parse_ray_params(ns.ray_param)
    ray_param_flags(params)  # refuse bad boolean values now, not after waiting for the head
    return RuntimeArgs(
        role=ns.role,
        agent_port=ns.agent_port,
        http_port=ns.http_port,
        metrics_port=ns.metrics_port,
        gcs_port=getattr(ns, "port", None),
        dashboard_port=getattr(ns, "dashboard_port", None),
        address=split_address(ns.address) if ns.role == WORKER else None,
        ray_params=params,
        startup_grace_s=tuning("startup-grace"),
        drain_timeout_s=tuning("drain-timeout"),
        drain_min_wait_s=tuning("drain-min-wait"),
        stop_grace_s=tuning("stop-grace"),
    )


def temp_dir(environ: Mapping[str, str], pid: int) -> str:
    """A short per-pod Ray temp dir: /tmp/ray-<pod name prefix>-<hash of namespace/name>, else /tmp/ray-<pid>.

    Pods of a local test cluster share /tmp, and one name may exist in two namespaces, hence the hash; the name
    prefix is for humans. SERVEPLANE_RAY_TEMP_DIR overrides the choice.
    """
    override = environ.get("SERVEPLANE_RAY_TEMP_DIR")
    if override:
        chosen = override.rstrip("/")
    else:
        name = environ.get("POD_NAME", "")
        if name:
            digest = hashlib.sha256(f"{environ.get('POD_NAMESPACE', '')}/{name}".encode()).hexdigest()[:8]
            prefix = re.sub(r"[^A-Za-z0-9.-]", "-", name)[:16].rstrip("-.")
            chosen = f"/tmp/ray-{prefix}-{digest}"
        else:
            chosen = f"/tmp/ray-{pid}"
    if len(chosen) > MAX_TEMP_DIR_LEN:
        raise ArgsError(f"Ray temp dir {chosen!r} is longer than {MAX_TEMP_DIR_LEN} characters (AF_UNIX path limit)")
    return chosen


# The head's Redis password (GCS fault tolerance), from the pod's env (a secretKeyRef), so it is never in the pod's
# spec. The operator's pod builder sets this variable (operator/manifests/rayenv.py; tests/unit/test_gcsft.py checks
# both names agree). The runtime reads it and keeps it out of the environment of every process Ray starts
# (entrypoint.ray_env). What Ray 2.60 does not allow: `ray start` takes the password only as its `--redis-password`
# flag (no environment variable, no file), and Ray itself passes it on the command line of the GCS server
# (`--redis_password=`) and of every worker process it starts on the head (`default_worker.py --redis-password=`),
# which also keeps it in memory (RayParams). Code running on the head (a replica scheduled there) can read it;
# keep applications off the head (`num-cpus: "0"` on it) where that matters. Workers never get it.
REDIS_PASSWORD_ENV = "SERVEPLANE_REDIS_PASSWORD"


DRAIN = "drain"
# The longest the preStop hook waits for the agent's drain: the pod's terminationGracePeriodSeconds, which bounds
# the hook anyway.
DRAIN_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DrainArgs:
    agent_port: int
    timeout_s: float


def parse_drain(argv: Sequence[str]) -> DrainArgs:
    """`drain --agent-port=P [--timeout=S]` (argv without the `drain` itself); argparse exits 2 on a bad one."""
    parser = argparse.ArgumentParser(
        prog="python -m serveplane.runtime drain",
        description="Ask this pod's node agent to drain it (the preStop hook), over loopback; wait for the answer.",
    )
    parser.add_argument("--agent-port", type=_port, required=True)
    parser.add_argument("--timeout", type=float, default=DRAIN_REQUEST_TIMEOUT_S, help="seconds to wait")
    ns = parser.parse_args(list(argv))
    if ns.timeout <= 0:
        raise ArgsError("--timeout must be positive")
    return DrainArgs(agent_port=ns.agent_port, timeout_s=ns.timeout)


def ray_start_command(
    args: RuntimeArgs,
    *,
    python: str,
    node_ip: str,
    temp: str,
    gcs_address: str | None,
    redis_password: str | None = None,
) -> list[str]:
    """The blocking `ray start` command for this node; `gcs_address` is the head's GCS (worker only), and
    `redis_password` the password of the head's external Redis (head only)."""
    command = [python, "-m", "ray.scripts.scripts", "start", "--block", f"--temp-dir={temp}",
               f"--node-ip-address={node_ip}", f"--metrics-export-port={args.metrics_port}"]
    if args.is_head:
        command += [
            "--head",
            f"--port={args.gcs_port}",
            # The operator reaches the dashboard through the head Service, so not only on loopback.
            "--dashboard-host=0.0.0.0",
            f"--dashboard-port={args.dashboard_port}",
            # Fail loudly if the image lacks the dashboard: Serve's REST API (and the operator) needs it.
            "--include-dashboard=true",
        ]
        if redis_password:
            command.append(f"--redis-password={redis_password}")
    else:
        if not gcs_address:
            raise ArgsError("a worker needs the head's GCS address")
        command.append(f"--address={gcs_address}")
    return command + ray_param_flags(args.ray_params)


RAY_DRAIN_ENV = "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"
WORKER_RAY_DRAIN_S = 20.0


def ray_drain_timeout(environ: Mapping[str, str], *, is_head: bool) -> float:
    """How long `ray start` drains its node on SIGTERM (Ray >= 2.60): a value in the pod's env wins.

    Workers: 20 s for Serve to move replicas away. Head: 0, because its node never becomes idle (the Serve
    controller lives there), so Ray would always wait the full timeout, and the cluster ends with the head anyway.
    """
    default = 0.0 if is_head else WORKER_RAY_DRAIN_S
    value = _float_env(environ, RAY_DRAIN_ENV, default)
    return max(value, 0.0)
