"""`python -m serveplane.runtime redis-cleanup`: remove GCS state from Redis, of a deleted ServeCluster or of a
generation its upgrade retired.

Run by the operator as a pod once every Ray pod using that state is gone (a live head would write its keys again).
Ray's own function does the deleting, so the key layout stays Ray's business; the settings come from the same
environment a head gets (RAY_REDIS_ADDRESS, the password variable), and the namespaces from NAMESPACES_ENV (else
RAY_external_storage_namespace, a head's own). Ray deletes the keys `RAY<namespace>@*` of one namespace at a time,
so each generation's namespace is named.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import args as cli

log = logging.getLogger(__name__)
# Set by the operator on its clean-up pod (operator/manifests/cleanup.py: NAMESPACES_ENV, the same name).
NAMESPACES_ENV = "SERVEPLANE_REDIS_NAMESPACES"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    use_ssl: bool
    namespaces: tuple[str, ...]
    password: str = field(repr=False, default="")


def target(environ: Mapping[str, str]) -> Target:
    """PURE: what to clean, from the environment; ArgsError names what is missing or malformed."""
    address = environ.get("RAY_REDIS_ADDRESS", "").strip()
    listed = environ.get(NAMESPACES_ENV) or environ.get("RAY_external_storage_namespace", "")
    namespaces = tuple(n.strip() for n in listed.split(",") if n.strip())
    if not address or not namespaces:
        raise cli.ArgsError(f"redis-cleanup needs RAY_REDIS_ADDRESS and {NAMESPACES_ENV} "
                            "(or RAY_external_storage_namespace)")
    use_ssl = address.startswith("rediss://")
    host, port = cli.split_address(address.split("://", 1)[-1])
    return Target(host, port, use_ssl, namespaces, environ.get(cli.REDIS_PASSWORD_ENV, ""))


def main(environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        where = target(os.environ if environ is None else environ)
    except cli.ArgsError as exc:
        log.error("%s", exc)
        return 2
    # Imported here: the node entrypoint must not pay for importing Ray's internals.
    from ray._private.gcs_utils import cleanup_redis_storage

    for namespace in where.namespaces:
        log.info("removing the keys of namespace %s from Redis at %s:%d", namespace, where.host, where.port)
        if not cleanup_redis_storage(
            host=where.host, port=where.port, password=where.password, use_ssl=where.use_ssl,
            storage_namespace=namespace,
        ):
            log.error("Redis refused to delete the keys of namespace %s", namespace)
            return 1
    log.info("done")
    return 0
