"""CLI: ``python -m serveplane.localcluster.noderunner --kubeconfig K --node node-1 [--node node-2]``.

``... noderunner cleanup [--instance N]`` removes what crashed runners left behind.
SIGTERM or SIGINT stops every pod gracefully and removes all host resources.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from .cleanup import cleanup
from .runner import NodeRunner


def _run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m serveplane.localcluster.noderunner",
                                     description="Play the kubelet for Nodes of a local control plane.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", action="append", dest="nodes", help="a Node to run pods for (repeatable)")
    parser.add_argument("--state-dir", help="logs and pod dirs go here (default: a new temp dir)")
    parser.add_argument("--instance", type=int, help="instance index 0-11 (default: the lowest free one)")
    parser.add_argument("--shutdown-grace", type=float, default=10.0,
                        help="on stop, each pod gets min(its grace period, this many seconds)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    _logging(args.verbose)
    runner = NodeRunner(args.kubeconfig, args.nodes or ["node-1"], args.state_dir,
                        instance=args.instance, shutdown_grace=args.shutdown_grace)

    def on_signal(signum: int, frame: object) -> None:
        runner.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.start()
    logging.getLogger(__name__).info("state dir %s", runner.state_dir)
    while not runner.wait(1.0):
        pass
    runner.stop()
    return 0


def _cleanup(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m serveplane.localcluster.noderunner cleanup",
                                     description="Remove leftovers of crashed node runners.")
    parser.add_argument("--instance", type=int, help="only this instance (default: every instance not in use)")
    args = parser.parse_args(argv)
    _logging(False)
    for index, removed in cleanup(args.instance).items():
        for item in removed:
            print(f"instance {index}: removed {item}")
    return 0


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The client logs every request at DEBUG; far too much even for verbose.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cleanup"]:
        return _cleanup(argv[1:])
    return _run(argv)


if __name__ == "__main__":
    sys.exit(main())
