"""serveplane against KubeRay's ray-operator v1.5.0, the same workload on the same local control plane and node, one
system after the other (by hand, as root, on the stack `serveplane dev up` left running; never run by `make test`).

    .venv/bin/python bench/vs_kuberay.py --build-only          # build KubeRay from its Go module, check its config
    .venv/bin/python bench/vs_kuberay.py                       # both systems, every step (about 30-40 min)
    .venv/bin/python bench/vs_kuberay.py --systems kuberay --steps apply,idle
    .venv/bin/python bench/vs_kuberay.py --table               # the table of the saved results

The workload (bench/kuberay/systems.py): a head and 2 workers of serveplane/runtime:0.1.0 with the hello app, from
examples/cluster.yaml and examples/hello.yaml; for KubeRay a RayService made from the same files. The steps
(bench/kuberay/measure.py): apply -> first HTTP 200; a steady minute (the operator's API requests by the audit log,
its HTTP requests to Ray, its memory); an in-place change of the app's args; an image upgrade (a retagged copy of
the runtime image); the head pod deleted. Traffic during the changes is spread over the serve Service's ready
endpoints. Each run merges its systems' results into bench/results/vs_kuberay.json and prints the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kuberay import build  # bench/ is the script's folder, first on sys.path

RESULTS = Path(__file__).resolve().parent / "results" / "vs_kuberay.json"
REPO = Path(__file__).resolve().parents[1]
UPGRADE_IMAGE = "serveplane/runtime:0.1.0-bench"
SYSTEMS = ("serveplane", "kuberay")
STEPS = ("apply", "idle", "update", "upgrade", "headloss")

Result = dict[str, Any]


def _say(message: str) -> None:
    print(f"[vs_kuberay] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Building


def build_only() -> int:
    """Build (or find) the operator and show that everything the bench reads from its module is there."""
    from kuberay.operator import rbac_documents

    started = time.monotonic()
    kuberay = build.ensure()
    print(f"KubeRay {kuberay.version}: {kuberay.binary} ({kuberay.binary.stat().st_size / 1e6:.0f} MB), "
          f"ready in {time.monotonic() - started:.1f} s")
    print(f"module source: {kuberay.source}")
    for crd in kuberay.crds:
        print(f"CRD  {crd.relative_to(kuberay.source)} ({crd.stat().st_size / 1e6:.1f} MB)")
    for doc in rbac_documents(kuberay):
        where = doc["metadata"].get("namespace") or "cluster"
        print(f"RBAC {doc['kind']} {doc['metadata']['name']} ({where})")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Running


def _step_functions(upgrade_image: str) -> dict[str, Callable[[Any], Result]]:
    from kuberay import measure

    return {
        "apply": measure.apply_to_first_200,
        "idle": measure.idle_minute,
        "update": measure.in_place_update,
        "upgrade": lambda system: measure.image_upgrade(system, upgrade_image),
        "headloss": measure.head_loss,
    }


def _run_steps(name: str, system: Any, steps: list[str]) -> Result:
    """Each step in order; a failed one is recorded and ends this system's run (the later ones build on it)."""
    functions = _step_functions(UPGRADE_IMAGE)
    results: Result = {}
    for step in steps:
        _say(f"{name}: {step}")
        started = time.monotonic()
        try:
            results[step] = functions[step](system)
        except Exception as problem:  # a benchmark records what broke and goes on to clean up
            traceback.print_exc()
            results[step] = {"error": f"{type(problem).__name__}: {problem}"[:2000]}
            break
        _say(f"{name}: {step} took {time.monotonic() - started:.0f} s: {json.dumps(results[step])}")
    return results


def run_serveplane(stack: Any, steps: list[str], keep: bool) -> Result:
    from kuberay.systems import Serveplane

    system = Serveplane(stack.cp, stack.node)
    pods = system.operator.pods()
    if not pods or system.operator.leader_name() is None:
        raise RuntimeError("serveplane's operator is not running: start the stack with `serveplane dev up`")
    try:
        return _run_steps("serveplane", system, steps)
    finally:
        if not keep:
            system.remove()


def run_kuberay(stack: Any, kuberay: build.KubeRay, steps: list[str], keep: bool) -> Result:
    from kuberay.operator import HostOperator
    from kuberay.systems import KubeRayService

    operator = HostOperator(stack.cp, kuberay, build.cache_dir(kuberay.version) / "run")
    operator.install()
    operator.start()
    _say(f"KubeRay's operator runs as pid {operator.pid}; its log: {operator.log}")
    system = KubeRayService(stack.cp, operator)
    try:
        results = _run_steps("kuberay", system, steps)
        if operator.proxy.errors:
            results["proxy_errors"] = dict(operator.proxy.errors.most_common(10))
        return results
    finally:
        # The workload goes while its operator still runs; then the operator (only the process we started).
        if not keep:
            system.remove()
        operator.stop()
        if not keep:
            operator.uninstall()


def attach_stack(state_dir: Path) -> Any:
    from serveplane.localcluster.stack import Stack

    try:
        stack = Stack.attach(state_dir)
    except (FileNotFoundError, ValueError) as missing:
        raise SystemExit(f"no stack in {state_dir} ({missing}): start one with `serveplane dev up`") from None
    if not stack.healthy():
        raise SystemExit(f"the stack in {state_dir} is not healthy: `serveplane dev up` again")
    return stack


def _meta(kuberay_version: str) -> Result:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "serveplane_commit": commit,
        "kuberay": kuberay_version,
        "cores": os.cpu_count(),
        "image": "serveplane/runtime:0.1.0 (Ray 2.60.0)",
        "upgrade_image": UPGRADE_IMAGE,
    }


def load_results(path: Path) -> Result:
    if path.is_file():
        saved: Result = json.loads(path.read_text())
        return saved
    return {"systems": {}}


def save_results(path: Path, results: Result) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from serveplane.localcluster import devenv

    systems = [s for s in args.systems.split(",") if s]
    steps = [s for s in args.steps.split(",") if s]
    for name in systems:
        if name not in SYSTEMS:
            raise SystemExit(f"unknown system {name!r}; of {', '.join(SYSTEMS)}")
    for step in steps:
        if step not in STEPS:
            raise SystemExit(f"unknown step {step!r}; of {', '.join(STEPS)}")
    steps = [s for s in STEPS if s in steps]  # always in their order: each builds on the one before

    kuberay = build.ensure() if "kuberay" in systems else None
    stack = attach_stack(Path(args.state_dir) if args.state_dir else devenv.default_state_dir())
    if stack.node is None:
        raise SystemExit("the stack has no node: `serveplane dev up` (not --control-plane-only)")

    from kuberay import measure
    from kuberay.systems import IMAGE, KubeRayService, Serveplane

    if not args.keep_examples:
        measure.remove_examples(stack.cp)
    if "upgrade" in steps:
        measure.retag(stack.cp, stack.node, IMAGE, UPGRADE_IMAGE)

    results = load_results(Path(args.out))
    results["meta"] = _meta(build.VERSION)
    for name in systems:
        # The node has room for one Ray cluster on its 2 cores: whatever the other system left goes first.
        for other in (Serveplane.namespace, KubeRayService.namespace):
            stack.cp.kubectl("delete", "namespace", other, "--ignore-not-found", "--timeout=600s", check=False)
        started = time.monotonic()
        if name == "serveplane":
            figures = run_serveplane(stack, steps, args.keep)
        else:
            assert kuberay is not None
            figures = run_kuberay(stack, kuberay, steps, args.keep)
        _say(f"{name}: {time.monotonic() - started:.0f} s in all")
        results["systems"][name] = {**results["systems"].get(name, {}), **figures}
        save_results(Path(args.out), results)
    print(table(results))
    _say(f"results in {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The table


def _get(figures: Result, step: str, key: str) -> Any:
    found = figures.get(step) or {}
    return "error" if "error" in found else found.get(key)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return str(value)


def _failed(figures: Result, step: str) -> str:
    found = figures.get(step) or {}
    if "error" in found:
        return "error"
    return f"{found['failed']} of {found['requests']}" if "requests" in found else "-"


ROWS: tuple[tuple[str, Callable[[Result], str]], ...] = (
    ("apply -> first HTTP 200 (s)", lambda f: _format(_get(f, "apply", "first_200_s"))),
    ("apply -> every replica's proxy answering (s)", lambda f: _format(_get(f, "apply", "serving_s"))),
    ("idle: API requests/min by the operator (watches, Leases aside)",
     lambda f: _format(_get(f, "idle", "api_requests_per_min"))),
    ("idle: Lease requests/min", lambda f: _format(_get(f, "idle", "lease_requests_per_min"))),
    ("idle: dashboard requests/min", lambda f: _format(_get(f, "idle", "dashboard_requests_per_min"))),
    ("idle: Serve proxy health checks/min by the operator",
     lambda f: _format(_get(f, "idle", "proxy_health_requests_per_min"))),
    ("operator RSS (MiB)", lambda f: _format(_get(f, "idle", "operator_rss_mib"))),
    ("in-place args update -> answering everywhere (s)", lambda f: _format(_get(f, "update", "seconds"))),
    ("in-place update: failed requests", lambda f: _failed(f, "update")),
    ("in-place update: s without a ready endpoint", lambda f: _format(_get(f, "update", "no_ready_endpoint_s"))),
    ("in-place update: pods replaced or restarted", lambda f: _format(_get(f, "update", "pods_replaced_or_restarted"))),
    ("image upgrade -> traffic on new pods only (s)", lambda f: _format(_get(f, "upgrade", "traffic_on_new_pods_s"))),
    ("image upgrade -> old pods gone (s)", lambda f: _format(_get(f, "upgrade", "seconds"))),
    ("image upgrade: failed requests", lambda f: _failed(f, "upgrade")),
    ("image upgrade: s without a ready endpoint", lambda f: _format(_get(f, "upgrade", "no_ready_endpoint_s"))),
    ("image upgrade: peak Ray pods", lambda f: _format(_get(f, "upgrade", "peak_pods"))),
    ("head pod deleted -> whole again (s)", lambda f: _format(_get(f, "headloss", "seconds"))),
    ("head loss: failed requests", lambda f: _failed(f, "headloss")),
    ("head loss: s without a ready endpoint", lambda f: _format(_get(f, "headloss", "no_ready_endpoint_s"))),
)


def table(results: Result) -> str:
    systems = results.get("systems", {})
    lines = ["| what | serveplane | KubeRay " + results.get("meta", {}).get("kuberay", build.VERSION) + " |",
             "|---|---|---|"]
    for label, cell in ROWS:
        lines.append(f"| {label} | {cell(systems.get('serveplane', {}))} | {cell(systems.get('kuberay', {}))} |")
    notes = []
    for name in SYSTEMS:
        figures = systems.get(name, {})
        idle = figures.get("idle") or {}
        if idle.get("api_requests"):
            notes.append(f"- {name}, idle API requests: {json.dumps(idle['api_requests'])}")
        if idle.get("operator"):
            notes.append(f"- {name}'s operator: {idle['operator']}")
        for step in STEPS:
            found = figures.get(step) or {}
            if "error" in found:
                notes.append(f"- {name}, {step} failed: {found['error'][:300]}")
            elif found.get("first_errors"):
                notes.append(f"- {name}, {step}, first failures: {json.dumps(found['first_errors'][:3])[:300]}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-only", action="store_true", help="build KubeRay's operator and check its config")
    parser.add_argument("--table", action="store_true", help="print the table of the saved results and stop")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    parser.add_argument("--steps", default=",".join(STEPS),
                        help="comma-separated, of: " + ", ".join(STEPS) + " (run in that order; the later ones "
                        "need the workload that apply makes, or one an earlier --keep run left)")
    parser.add_argument("--state-dir", help="the stack's state (default: $SERVEPLANE_DEV_STATE_DIR or "
                        "~/.cache/serveplane/dev)")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON, merged by system (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave the workload (and KubeRay's CRDs) in place")
    parser.add_argument("--keep-examples", action="store_true",
                        help="do not delete the examples `serveplane dev up` applied (they share the 2 cores)")
    args = parser.parse_args(argv)
    if args.build_only:
        return build_only()
    if args.table:
        print(table(load_results(Path(args.out))))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
