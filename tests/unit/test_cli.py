"""The `serveplane` command line: what each `serveplane dev ...` parses to and runs (nothing is started)."""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import pytest

from serveplane.operator import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def parse(command: str) -> argparse.Namespace:
    words = shlex.split(command)
    assert words[0] == "serveplane"
    return cli.parser().parse_args(words[1:])


@pytest.mark.parametrize(
    ("command", "action", "control_plane_only"),
    [
        ("serveplane dev up", "up", False),
        ("serveplane dev up --control-plane-only", "up", True),
        ("serveplane dev --control-plane-only up", "up", True),
        ("serveplane dev down", "down", False),
    ],
)
def test_dev_up_and_down(command: str, action: str, control_plane_only: bool) -> None:
    args = parse(command)
    assert (args.command, args.action, args.control_plane_only, args.rest) == ("dev", action, control_plane_only, [])
    assert args.func is cli._dev


@pytest.mark.parametrize(
    "kubectl_args",
    [
        "get pods -A -o wide",
        # Flags first, ours among them, help, and `--` with a command behind it: all kubectl's, untouched.
        "-n team-a get pods",
        "get pods --control-plane-only",
        "--control-plane-only get pods",
        "-h",
        "--help",
        "exec -it demo-head -- sh -c 'ray status --verbose'",
        "-- version",
        "",
    ],
)
def test_dev_kubectl_passes_every_argument_through(kubectl_args: str) -> None:
    args = parse(f"serveplane dev kubectl {kubectl_args}")
    assert (args.action, args.rest, args.control_plane_only) == ("kubectl", shlex.split(kubectl_args), False)


@pytest.mark.parametrize(
    "command", ["serveplane dev", "serveplane dev up extra", "serveplane dev down --control-plane-only"]
)
def test_dev_rejects_what_it_cannot_run(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(command)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_readme_control_plane_only_command_parses() -> None:
    # The README's own command line, so this test follows the README when it changes.
    commands = re.findall(r"`(serveplane dev [^`]*--control-plane-only[^`]*)`", README.read_text())
    assert commands, "README.md no longer shows `serveplane dev ... --control-plane-only`"
    for command in commands:
        args = parse(command)
        assert (args.command, args.action, args.control_plane_only) == ("dev", "up", True), command


@pytest.mark.parametrize(
    ("command", "called"),
    [
        ("serveplane dev up", "trial.up"),
        ("serveplane dev up --control-plane-only", "devenv.up"),
        ("serveplane dev down", "trial.down"),
        ("serveplane dev kubectl get pods -A -o wide", "devenv.kubectl"),
    ],
)
def test_dev_runs_the_right_function(command: str, called: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from serveplane.localcluster import devenv, trial

    calls: list[tuple[str, tuple]] = []
    for module, name in ((trial, "up"), (trial, "down"), (devenv, "up"), (devenv, "kubectl")):
        label = f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
        monkeypatch.setattr(module, name, lambda *a, label=label: calls.append((label, a)) or 0)
    args = parse(command)
    assert args.func(args) == 0
    expected_args = (["get", "pods", "-A", "-o", "wide"],) if called == "devenv.kubectl" else ()
    assert calls == [(called, expected_args)]


@pytest.mark.parametrize("command", ["serveplane dev up", "serveplane dev down", "serveplane dev kubectl get pods"])
def test_dev_without_serveplane_dev_says_what_to_install(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # As after a plain `pip install serveplane`: the package is not there (None in sys.modules fails its import).
    monkeypatch.setitem(sys.modules, "serveplane.localcluster", None)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(shlex.split(command)[1:])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == cli.DEV_MISSING + "\n"
    assert "pip install -e ./e2e" in err and "Traceback" not in err


def test_dev_does_not_hide_a_broken_serveplane_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    # serveplane-dev installed but one of its modules (or what they import) failing: the error itself, not the hint.
    import serveplane.localcluster

    monkeypatch.delattr(serveplane.localcluster, "trial", raising=False)
    monkeypatch.setitem(sys.modules, "serveplane.localcluster.trial", None)
    with pytest.raises(ModuleNotFoundError) as error:
        cli.main(["dev", "down"])
    assert error.value.name == "serveplane.localcluster.trial"
