"""A two-deployment Ray Serve app: a FastAPI `Ingress` calling a `Model` through a DeploymentHandle.

Deploy it with `import_path: serveplane.examples.composed:app` and `args: {factor: 2}`.
The deployment names `Ingress` and `Model` are stable: ServeDeployment resources refer to them.
Routes (under the application's route_prefix):
  GET /predict?x=3  -> {"input": 3.0, "output": 6.0, "factor": 2.0, "model_replica": ..., "ingress_replica": ...}
  GET /classify?text=...  -> {"text": ..., "label": "long" | "short", "model_replica": ...}
"""

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

fastapi_app = FastAPI(title="serveplane composed")


class ComposedArgs(BaseModel):
    """Arguments accepted by `app`; unknown keys are refused so typos fail the deploy loudly."""

    model_config = ConfigDict(extra="forbid")

    factor: float = 2.0
    # Texts at least this long are labelled "long" by Model.classify.
    long_text_chars: int = 20


def _replica_id() -> str:
    return serve.get_replica_context().replica_id.unique_id


@serve.deployment(name="Model", ray_actor_options={"num_cpus": 0.1})
class Model:
    """Stands in for a real model: cheap, deterministic, and its config is visible in answers."""

    def __init__(self, factor: float, long_text_chars: int) -> None:
        self._factor = factor
        self._long_text_chars = long_text_chars

    def predict(self, x: float) -> dict[str, Any]:
        return {"output": x * self._factor, "factor": self._factor, "model_replica": _replica_id()}

    def classify(self, text: str) -> dict[str, Any]:
        label = "long" if len(text) >= self._long_text_chars else "short"
        return {"label": label, "model_replica": _replica_id()}


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.1})
@serve.ingress(fastapi_app)
class Ingress:
    def __init__(self, model: DeploymentHandle[Any]) -> None:
        self._model = model

    @fastapi_app.get("/predict")
    async def predict(self, x: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._model.predict.remote(x)
        return {"input": x, **result, "ingress_replica": _replica_id()}

    @fastapi_app.get("/classify")
    async def classify(self, text: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._model.classify.remote(text)
        return {"text": text, **result, "ingress_replica": _replica_id()}


def app(args: dict[str, Any]) -> Application:
    """Application builder: Serve calls it with the config's `args`."""
    parsed = ComposedArgs.model_validate(args)
    return Ingress.bind(Model.bind(parsed.factor, parsed.long_text_chars))
