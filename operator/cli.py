"""The `serveplane` command: operator, crds, render, convert, and dev (the local control plane for a laptop)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

CRDS_DIR = Path(__file__).resolve().parent.parent / "crds"


def _operator(args: argparse.Namespace) -> int:
    # The operator talks to the API server through kopf's credentials and aiohttp; kopf would otherwise load the
    # `kubernetes` client (30 MB resident) just because it is installed beside it, as in the test environment.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers with kopf)
    from .settings import Settings

    settings = Settings.from_env()
    kopf.configure(verbose=args.verbose)
    kopf.run(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )
    return 0


def crd_files() -> dict[str, str]:
    """File name -> YAML text of each generated CRD."""
    from .api.crdgen import all_crds

    # The leading `---` keeps the files valid when concatenated, as `helm show crds` does.
    header = "# Generated from the pydantic models by `serveplane crds`; do not edit.\n---\n"
    return {
        f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml": header + yaml.safe_dump(crd, sort_keys=False)
        for crd in all_crds()
    }


def _crds(args: argparse.Namespace) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in crd_files().items():
        (out / name).write_text(text)
        print(out / name)
    return 0


def _render(args: argparse.Namespace) -> int:
    from . import yamltext
    from .render import render
    from .settings import Settings

    docs = [d for path in args.files for d in _load_all(path) if d]
    settings = Settings.from_env()
    sections = render(docs, settings.default_image, settings.access, settings.autoscaler_cluster_role)
    if not sections:
        print("no ServeCluster in the input: nothing would be created", file=sys.stderr)
        return 1
    for title, content in sections:
        print(f"# --- {title}")
        # Quoted as kubectl reads it: a generation's hash may look like a number (8403e57).
        print(yamltext.dump_all(content) if isinstance(content, list) else yamltext.dump(content), end="")
        print("---")
    return 0


def _load_all(path: str) -> list[Any]:
    """The YAML documents of a file, or of standard input for `-`."""
    if path == "-":
        return list(yaml.safe_load_all(sys.stdin))
    with open(path) as handle:
        return list(yaml.safe_load_all(handle))


def _convert(args: argparse.Namespace) -> int:
    from .convert import ConvertError, convert, to_yaml

    try:
        docs = _load_all(args.file)
        serve_config = _load_all(args.serve_config)[0] if args.serve_config else None
        if serve_config is not None and not isinstance(serve_config, dict):
            raise ConvertError(f"{args.serve_config} is not a Serve config (a map with `applications`)")
        print(to_yaml(convert(docs, serve_config, image=args.image)), end="")
    except (OSError, yaml.YAMLError, ConvertError) as error:
        print(f"serveplane convert: {error}", file=sys.stderr)
        return 1
    return 0


DEV_MISSING = (
    "serveplane dev needs the serveplane-dev distribution (the local control plane, not part of serveplane): "
    "pip install -e ./e2e from a source checkout"
)


def _dev(args: argparse.Namespace) -> int:
    try:
        from serveplane.localcluster import devenv, trial
    except ModuleNotFoundError as error:
        # Only serveplane-dev itself missing; a dependency missing inside it is a broken install and shows as such.
        if error.name not in ("serveplane.localcluster", "serveplane"):
            raise
        print(DEV_MISSING, file=sys.stderr)
        return 2

    if args.action == "up":
        if args.control_plane_only:
            devenv.up()
        else:
            trial.up()
        return 0
    if args.action == "down":
        trial.down()
        return 0
    return devenv.kubectl(args.rest)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="serveplane", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operator", help="run the kopf operator against $KUBECONFIG or the in-cluster API")
    op.add_argument("--verbose", action="store_true")
    op.set_defaults(func=_operator)
    crds = sub.add_parser("crds", help="write the CRDs generated from the API models")
    crds.add_argument("--output", default=str(CRDS_DIR))
    crds.set_defaults(func=_crds)
    ren = sub.add_parser("render", help="print the objects and Serve config a YAML file of resources would create")
    ren.add_argument("files", nargs="+")
    ren.set_defaults(func=_render)
    conv = sub.add_parser(
        "convert",
        help="print the ServeCluster, ServeApplications and ServeDeployments equivalent to a KubeRay RayService "
        "(or a RayCluster and --serve-config); what has no equivalent is listed in comments",
    )
    conv.add_argument("file", help="YAML with a RayService or a RayCluster (`-`: standard input)")
    conv.add_argument("--serve-config", help="the Serve config (serve build's YAML) the RayCluster runs")
    conv.add_argument(
        "--image", help="the Ray image of the ServeCluster instead of the KubeRay one (it needs serveplane's runtime)"
    )
    conv.set_defaults(func=_convert)
    dev = sub.add_parser(
        "dev", help="the local trial: up (control plane, a real node, the chart, Ray, examples), down, kubectl ARGS..."
    )
    # Also accepted before the action (`dev --control-plane-only up`), the order that used to be the only one working.
    dev.add_argument("--control-plane-only", action="store_true", help=argparse.SUPPRESS)
    dev.set_defaults(func=_dev, rest=[])
    actions = dev.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start it all (or reuse what runs) and print the curl lines")
    # SUPPRESS: when not given here, keep what the `dev` level set instead of overwriting it with False.
    up.add_argument(
        "--control-plane-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="start only the control plane and print `export KUBECONFIG=...`",
    )
    actions.add_parser("down", help="stop and remove everything `up` started")
    # No argv string can start with NUL, so this parser sees no options at all: every argument after `kubectl`
    # (`-n x`, `-h`, `--`, even `--control-plane-only`) goes to kubectl untouched and in order.
    kubectl = actions.add_parser(
        "kubectl", help="the bundled kubectl, against the dev control plane", prefix_chars="\0", add_help=False
    )
    kubectl.add_argument("rest", nargs=argparse.REMAINDER, metavar="ARGS")
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(args.func(args))
