"""The local node's images, really built with buildah (or reused from ~/.cache/serveplane/images) and run with podman.

Slow on a fresh machine: a cold build of everything takes minutes (the Debian root filesystem, pip installing
ray[serve], CoreDNS's Go build); a warm run only hashes the inputs. Needs root (rootful podman), buildah, podman,
mmdebstrap and Go, which `make test` installs (e2e/host-packages.sh).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
import tomllib
from collections.abc import Iterator

import pytest

from serveplane.localcluster import images
from serveplane.localcluster.images import ImageArchive

# Root, buildah, podman, mmdebstrap and Go are the test's to have (`make test` installs the packages): a machine
# without them fails here rather than skipping the images every pod runs.
pytestmark = pytest.mark.timeout(3600)


@pytest.fixture(scope="module")
def archives() -> dict[str, ImageArchive]:
    built = images.ensure_images()
    return {archive.reference: archive for archive in built}


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=images.engine_env(), capture_output=True, text=True,
                          timeout=timeout)


def run(image: str, *command: str) -> str:
    """`podman run --rm` without a network (the checks need none, and no bridge or iptables rule is made)."""
    result = podman("run", "--rm", "--network", "none", image, *command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_node_image_is_a_docker_archive_carrying_its_name(archives: dict[str, ImageArchive]) -> None:
    assert set(archives) == {images.spec(name).reference for name in images.NODE_IMAGES}
    for reference, archive in archives.items():
        assert archive.path.is_file()
        assert archive.path.parent.name == archive.key
        with tarfile.open(archive.path) as tar:
            member = tar.extractfile("manifest.json")
            assert member is not None
            (entry,) = json.load(member)
        assert entry["RepoTags"] == [reference]


def test_a_second_call_reuses_the_archives(archives: dict[str, ImageArchive]) -> None:
    started = time.monotonic()
    again = images.ensure_images()
    assert time.monotonic() - started < 10
    assert {a.reference: a for a in again} == archives


def test_the_operator_image_runs_serveplane_as_uid_10001(archives: dict[str, ImageArchive]) -> None:
    out = run("docker.io/serveplane/operator:0.1.0", "sh", "-c", "id -u && id -g && serveplane --help")
    uid, gid, *help_lines = out.splitlines()
    assert (uid, gid) == ("10001", "10001")
    assert help_lines[0].startswith("usage: serveplane")
    # No Ray in the operator image (the import contract's runtime counterpart).
    out = run("docker.io/serveplane/operator:0.1.0", "python", "-c",
              "import importlib.util, serveplane.operator; print(importlib.util.find_spec('ray'))")
    assert out.strip() == "None"


def test_the_runtime_image_imports_ray_and_the_runtime_as_uid_1000(archives: dict[str, ImageArchive]) -> None:
    pins = tomllib.loads((images.repo_root() / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (ray_pin,) = [dep for dep in pins["runtime"] if dep.startswith("ray[serve]==")]
    out = run(
        "docker.io/serveplane/runtime:0.1.0", "python", "-c",
        "import os, ray, ray.serve, serveplane.runtime, serveplane.examples;"
        "print(os.getuid(), os.getgid(), os.getcwd(), ray.__version__)",
    )
    assert out.split() == ["1000", "100", "/home/ray", ray_pin.removeprefix("ray[serve]==")]


# What each project image's `pip install` put under the `serveplane` namespace, and the serveplane distributions.
_INSTALLED = (
    "import importlib.metadata as m, pathlib, serveplane\n"
    "print(sorted({p.name for d in serveplane.__path__ for p in pathlib.Path(d).iterdir()} - {'__pycache__'}))\n"
    "print(sorted(n for n in (d.metadata['Name'] or '' for d in m.distributions()) if n.startswith('serveplane')))"
)


@pytest.mark.parametrize("image", ["docker.io/serveplane/operator:0.1.0", "docker.io/serveplane/runtime:0.1.0"])
def test_the_project_images_carry_the_product_without_the_local_control_plane(
    archives: dict[str, ImageArchive], image: str,
) -> None:
    # serveplane.localcluster (e2e/, the serveplane-dev distribution) is neither copied in nor installed.
    result = podman("run", "--rm", "--network", "none", image, "python", "-c", "import serveplane.localcluster")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "ModuleNotFoundError: No module named 'serveplane.localcluster'" in result.stderr
    packages, distributions = run(image, "python", "-c", _INSTALLED).splitlines()
    assert packages == str(["examples", "operator", "runtime"])
    assert distributions == str(["serveplane"])
    # The product itself works there: the command, and the operator's import.
    assert run(image, "serveplane", "--help").startswith("usage: serveplane")
    run(image, "python", "-c", "import serveplane.operator, serveplane.operator.cli")
    # And `serveplane dev` says what is missing, as after any plain `pip install serveplane`.
    result = podman("run", "--rm", "--network", "none", image, "serveplane", "dev", "down")
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert "serveplane-dev" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def pause_container() -> Iterator[str]:
    name = f"serveplane-test-pause-{os.getpid()}"
    yield name
    podman("rm", "--force", "--ignore", name)


def test_the_pause_image_sleeps_until_sigterm_and_exits_0(
    archives: dict[str, ImageArchive], pause_container: str,
) -> None:
    proc = subprocess.Popen(
        ["podman", "run", "--rm", "--network", "none", "--name", pause_container, images.SANDBOX],
        env=images.engine_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while podman("container", "inspect", "--format", "{{.State.Running}}", pause_container).stdout.strip() \
                != "true":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pause container did not start"
            time.sleep(0.2)
        time.sleep(1)
        assert proc.poll() is None, "pause exited on its own"
        assert podman("kill", "--signal", "TERM", pause_container).returncode == 0
        assert proc.wait(timeout=30) == 0, proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_coredns_image_runs_coredns(archives: dict[str, ImageArchive]) -> None:
    out = run(images.COREDNS, "-version")
    assert out.startswith(f"CoreDNS-{images.spec('coredns').tag.removeprefix('v')}")
