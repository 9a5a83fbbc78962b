"""A gRPC Ray Serve app: the `Greeter` service of greeter.proto, answering with the greeting of its builder args.

Deploy it with `import_path: serveplane.examples.grpc_greeter:app`, `args: {greeting: "..."}` and
`grpcServicerFunctions: [serveplane.examples.greeter_pb2_grpc.add_GreeterServicer_to_server]` (the cluster's gRPC
proxies import that function from the Ray image, which has serveplane.examples installed). Two applications built
from this code with different greetings answer differently; a client picks one with the gRPC metadata
`application: <ServeApplication name>` and calls the serve Service's gRPC port (9000 by default):
  /serveplane.examples.greeter.Greeter/SayHello        {name}        -> {message: "<greeting>, <name>!", application,
                                                                          replica, host}
  /serveplane.examples.greeter.Greeter/SayHelloStream  {name, count} -> `count` such replies (1 to 100), streamed

The stubs (greeter_pb2.py, greeter_pb2_grpc.py) are generated from greeter.proto and checked in; regenerate them from
the repository root with (tests/unit/test_grpc_example.py fails when they drift):
  out=$(mktemp -d) && .venv/bin/python -m grpc_tools.protoc -Iserveplane/examples=examples/apps \
    --python_out="$out" --grpc_python_out="$out" examples/apps/greeter.proto \
    && cp "$out"/serveplane/examples/greeter_pb2*.py examples/apps/ && rm -r "$out"
"""

import socket
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from serveplane.examples.greeter_pb2 import HelloReply, HelloRequest

SERVICER_FUNCTION = "serveplane.examples.greeter_pb2_grpc.add_GreeterServicer_to_server"
"""What a ServeApplication of this app lists in spec.grpcServicerFunctions."""
SERVICE = "serveplane.examples.greeter.Greeter"
"""The full name of the gRPC service: its methods are /<SERVICE>/SayHello and /<SERVICE>/SayHelloStream."""
MAX_STREAM = 100


class GreeterArgs(BaseModel):
    """Arguments accepted by `app`; unknown keys are refused so typos fail the deploy loudly."""

    model_config = ConfigDict(extra="forbid")

    greeting: str = "Hello"


# Tiny CPU share so the app fits small test clusters; deployments[].ray_actor_options can override it.
@serve.deployment(name="Greeter", ray_actor_options={"num_cpus": 0.1})
class Greeter:
    """Serve's gRPC proxy calls the ingress deployment's method named like the RPC, with the request message."""

    def __init__(self, greeting: str) -> None:
        self._greeting = greeting

    def _reply(self, name: str) -> HelloReply:
        context = serve.get_replica_context()
        return HelloReply(
            message=f"{self._greeting}, {name or 'world'}!",
            application=context.app_name,
            replica=context.replica_id.unique_id,
            # On Kubernetes the hostname is the pod name, which is what a human wants to see.
            host=socket.gethostname(),
        )

    def SayHello(self, request: HelloRequest) -> HelloReply:
        return self._reply(request.name)

    def SayHelloStream(self, request: HelloRequest) -> Iterator[HelloReply]:
        for _ in range(min(max(request.count, 1), MAX_STREAM)):
            yield self._reply(request.name)


def app(args: dict[str, Any]) -> Application:
    """Application builder: Serve calls it with the config's `args`."""
    parsed = GreeterArgs.model_validate(args)
    return Greeter.bind(parsed.greeting)
