"""A FastAPI-ingress Ray Serve app that greets and says which replica, node and host answered.

Deploy it with `import_path: serveplane.examples.hello:app` and `args: {greeting: "..."}`.
Routes (under the application's route_prefix):
  GET /         -> {"greeting", "replica", "node", "host", "pid"}
  GET /healthz  -> {"ok": true}
  GET /work?seconds=S -> the same as /, after holding the replica S seconds (at most 10): load that keeps
                         requests ongoing, which is what Serve's autoscaling counts
"""

import os
import socket
import time
from typing import Any

import ray
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

fastapi_app = FastAPI(title="serveplane hello")


class HelloArgs(BaseModel):
    """Arguments accepted by `app`; unknown keys are refused so typos fail the deploy loudly."""

    model_config = ConfigDict(extra="forbid")

    greeting: str = "hello"


def _whoami() -> dict[str, Any]:
    """Identify the answering replica: tests and operators use it to see routing across replicas/nodes."""
    return {
        "replica": serve.get_replica_context().replica_id.unique_id,
        "node": ray.get_runtime_context().get_node_id(),
        # On Kubernetes the hostname is the pod name, which is what a human wants to see.
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


# Tiny CPU share so the app fits small test clusters; deployments[].ray_actor_options can override it.
@serve.deployment(name="Hello", ray_actor_options={"num_cpus": 0.1})
@serve.ingress(fastapi_app)
class Hello:
    def __init__(self, greeting: str) -> None:
        self._greeting = greeting

    @fastapi_app.get("/")
    def root(self) -> dict[str, Any]:
        return {"greeting": self._greeting, **_whoami()}

    @fastapi_app.get("/healthz")
    def healthz(self) -> dict[str, bool]:
        return {"ok": True}

    @fastapi_app.get("/work")
    def work(self, seconds: float = 1.0) -> dict[str, Any]:
        time.sleep(min(max(seconds, 0.0), 10.0))
        return {"greeting": self._greeting, **_whoami()}


def app(args: dict[str, Any]) -> Application:
    """Application builder: Serve calls it with the config's `args`."""
    parsed = HelloArgs.model_validate(args)
    return Hello.bind(parsed.greeting)
