"""`python -m serveplane.runtime redis-cleanup`: remove a deleted ServeCluster's GCS state from Redis.

Run by the operator as a pod once every Ray pod of the cluster is gone (a live head would write its keys again).
Ray's own function does the deleting, so the key layout stays Ray's business; the settings come from the same
environment a head gets (RAY_REDIS_ADDRESS, RAY_external_storage_namespace, the password variable).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import args as cli

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    use_ssl: bool
    namespace: str
    password: str = field(repr=False, default="")


def target(environ: Mapping[str, str]) -> Target:
    """PURE: what to clean, from the environment; ArgsError names what is missing or malformed."""
    address = environ.get("RAY_REDIS_ADDRESS", "").strip()
    namespace = environ.get("RAY_external_storage_namespace", "").strip()
    if not address or not namespace:
        raise cli.ArgsError("redis-cleanup needs RAY_REDIS_ADDRESS and RAY_external_storage_namespace")
    use_ssl = address.startswith("rediss://")
    host, port = cli.split_address(address.split("://", 1)[-1])
    return Target(host, port, use_ssl, namespace, environ.get(cli.REDIS_PASSWORD_ENV, ""))


def main(environ: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        where = target(os.environ if environ is None else environ)
    except cli.ArgsError as exc:
        log.error("%s", exc)
        return 2
    # Imported here: the node entrypoint must not pay for importing Ray's internals.
    from ray._private.gcs_utils import cleanup_redis_storage

    log.info("removing the keys of namespace %s from Redis at %s:%d", where.namespace, where.host, where.port)
    if not cleanup_redis_storage(
        host=where.host, port=where.port, password=where.password, use_ssl=where.use_ssl,
        storage_namespace=where.namespace,
    ):
        log.error("Redis refused to delete the keys of namespace %s", where.namespace)
        return 1
    log.info("done")
    return 0
