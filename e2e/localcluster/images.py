"""Build, or reuse from the cache, every container image the local Kubernetes node runs.

Nothing can be pulled from a registry on the machines this runs on, so every image is built here with buildah
(``--pull=never``) and exported with ``podman save`` as a docker-archive that ``ctr -n k8s.io images import`` takes:

- ``python``, ``ray``: local stand-ins for the two upstream base images the project's Dockerfiles start FROM,
  tagged with the names those FROM lines resolve to (``python:3.11-slim``, ``rayproject/ray:2.60.0-py311``). Their
  recipes are ``e2e/images/{python,ray}/Containerfile``, built on a Debian bookworm minbase root filesystem that
  mmdebstrap makes from ``e2e/images/bookworm-minbase.args``.
- ``pause``: the pod sandbox image (containerd's ``sandbox_image``), a static Go program
  (``e2e/images/pause``, CGO_ENABLED=0) in a FROM scratch image.
- ``coredns``: the cluster DNS image (dns.py), the static CoreDNS that build.py compiles from ``e2e/dns``, FROM
  scratch (``e2e/images/coredns/Containerfile``).
- ``operator``, ``runtime``: the project's images, from ``helm/Dockerfile.{operator,runtime}`` unchanged, with the
  repository root as context.

A ``RUN pip install`` gets the host's CA bundle lent at build time only (a bind mount, never a file of the image):
outbound TLS may be re-signed by a CA only the host trusts.

Each archive is cached as ``~/.cache/serveplane/images/<key>/<name>.tar``, the key a sha256 over the image's
recipe, every file it copies in (``__pycache__`` and ``*.pyc`` left out) and its base image's key, so editing the
project's sources rebuilds the two project images only, and editing a base's recipe rebuilds it and its children
(a warm call only hashes). The images
themselves also stay in buildah's and podman's storage (``/var/lib/containers``, a machine-level cache), labelled
with their key: a base found there with the right key is used as it is, one missing is loaded from its archive.
Each image keeps its newest few archives (older keys are removed after a save) and storage its tagged images only.

Every podman and buildah call runs with ``CONTAINERS_CONF`` set to a file written here (ulimits within the
process's hard limits: without ``CAP_SYS_RESOURCE`` their defaults cannot be set; no systemd), so nothing in /etc
changes. RUN steps use the host network, so a build adds no bridge and no iptables rules.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Bumped when the way images are built changes in a way their recipes do not show.
_KEY_VERSION = "1"
_KEY_LABEL = "dev.serveplane.images.key"
ROOTFS_NAME = "bookworm-minbase.tar"
ROOTFS_ARGS = "e2e/images/bookworm-minbase.args"
PAUSE_MODULE = "e2e/images/pause"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# A build context's ignore file is an input too: it decides what a COPY of a directory takes.
_CONTEXT_IGNORE = ".dockerignore"
# The limits podman and buildah set by default (1048576) need CAP_SYS_RESOURCE above the hard limit.
_ULIMIT_CAP = 1048576

# Archives kept per image: the newest few keys (another checkout may be on an older one), not every edit's.
KEEP_ARCHIVES = 3

# The root filesystem's dir; a dir holding only the pause or the coredns binary; the repository root.
Context = Literal["rootfs", "pause", "coredns", "repo"]


@dataclass(frozen=True)
class ImageSpec:
    """One image: its archive's name, the reference it is tagged and saved with, and how it is built."""

    name: str
    reference: str
    recipe: str  # the Containerfile/Dockerfile, relative to the repository root
    context: Context
    base: str | None = None  # the `name` of the image built here that its FROM line names

    @property
    def repository(self) -> str:
        return self.reference.rpartition(":")[0]

    @property
    def tag(self) -> str:
        return self.reference.rpartition(":")[2]


SANDBOX = "registry.k8s.io/pause:3.10"  # containerd's sandbox_image
COREDNS = "registry.k8s.io/coredns/coredns:v1.15.0"  # the tag tracks e2e/dns/go.mod's CoreDNS version
DNS_MODULE = "e2e/dns"

# In build order: a base before its children. References are fully qualified as containerd normalises the short
# names pods and FROM lines use (`serveplane/runtime:0.1.0` is docker.io/serveplane/runtime:0.1.0).
SPECS: tuple[ImageSpec, ...] = (
    ImageSpec("python", "docker.io/library/python:3.11-slim", "e2e/images/python/Containerfile", "rootfs"),
    ImageSpec("ray", "docker.io/rayproject/ray:2.60.0-py311", "e2e/images/ray/Containerfile", "rootfs"),
    ImageSpec("pause", SANDBOX, f"{PAUSE_MODULE}/Containerfile", "pause"),
    ImageSpec("coredns", COREDNS, "e2e/images/coredns/Containerfile", "coredns"),
    ImageSpec("operator", "docker.io/serveplane/operator:0.1.0", "helm/Dockerfile.operator", "repo", base="python"),
    ImageSpec("runtime", "docker.io/serveplane/runtime:0.1.0", "helm/Dockerfile.runtime", "repo", base="ray"),
)
# What the node itself runs (ensure_images' default); the bases are only built FROM.
NODE_IMAGES: tuple[str, ...] = ("pause", "coredns", "operator", "runtime")


@dataclass(frozen=True)
class ImageArchive:
    """A docker-archive of one image, ready for `ctr -n k8s.io images import`."""

    name: str  # the repository, e.g. docker.io/serveplane/operator
    tag: str
    path: Path
    key: str

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


def repo_root() -> Path:
    """The source checkout this module lives in (e2e/localcluster/images.py)."""
    return Path(__file__).resolve().parent.parent.parent


def cache_root() -> Path:
    """Where archives live: outside the repo, so fresh clones on the same machine reuse them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "serveplane" / "images"


def spec(name: str) -> ImageSpec:
    for candidate in SPECS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no image named {name!r}; known: {', '.join(s.name for s in SPECS)}")


# ---------------------------------------------------------------------------------------------------------------
# Cache keys


def _hashable_files(path: Path) -> Iterator[Path]:
    """`path` itself if a file, else every file under it, without bytecode caches."""
    if not path.is_dir():
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(f"image input {path} does not exist")
        yield path
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for filename in filenames:
            if not filename.endswith(".pyc"):
                yield Path(dirpath) / filename


def cache_key(*, root: Path, recipe: str, inputs: Iterable[str] = (), base_key: str | None = None,
              extra: Sequence[str] = ()) -> str:
    """sha256 over the recipe and every input file (path relative to `root`, and content), the base's key and
    `extra` strings (e.g. the image's reference). Paths are hashed relative to `root`, so two checkouts of the same
    tree share a key; `__pycache__` directories and `*.pyc` files are left out."""
    digest = hashlib.sha256()

    def feed(*parts: bytes) -> None:
        for part in parts:
            digest.update(len(part).to_bytes(8, "big") + part)

    feed(b"serveplane-images", _KEY_VERSION.encode(), b"base", (base_key or "").encode())
    for item in extra:
        feed(b"extra", item.encode())
    files = {root / recipe}
    for relative in inputs:
        files.update(_hashable_files(root / relative))
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        feed(b"file", path.relative_to(root).as_posix().encode())
        if path.is_symlink():
            feed(b"symlink", os.readlink(path).encode())
        else:
            feed(b"content", path.read_bytes())
    return digest.hexdigest()


def _logical_lines(text: str) -> Iterator[str]:
    """A Dockerfile's instructions, continuation lines joined and comments dropped."""
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield pending + stripped
        pending = ""
    if pending.strip():
        yield pending


def copy_sources(dockerfile_text: str) -> list[str]:
    """The build-context paths a Dockerfile's COPY and ADD instructions take (not `--from` another stage)."""
    sources: list[str] = []
    for line in _logical_lines(dockerfile_text):
        instruction, _, rest = line.partition(" ")
        if instruction.upper() not in ("COPY", "ADD"):
            continue
        rest = rest.strip()
        words: list[str]
        if rest.startswith("["):
            words = [str(w) for w in json.loads(rest)]
        else:
            words = shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        for source in paths[:-1]:
            normal = source.strip("/")
            while normal.startswith("./"):
                normal = normal[2:]
            sources.append(normal or ".")
    return sources


def image_inputs(image: ImageSpec, root: Path) -> list[str]:
    """The files besides its recipe that an image's key covers (the root filesystem's own key covers its args)."""
    if image.context == "repo":
        recipe = (root / image.recipe).read_text()
        ignore = [_CONTEXT_IGNORE] if (root / _CONTEXT_IGNORE).is_file() else []
        return copy_sources(recipe) + ignore
    if image.context == "pause":
        return [PAUSE_MODULE]
    if image.context == "coredns":
        return [f"{DNS_MODULE}/{name}" for name in ("go.mod", "go.sum", "main.go")]
    return []


def rootfs_key(root: Path) -> str:
    return cache_key(root=root, recipe=ROOTFS_ARGS, extra=["rootfs", ROOTFS_NAME])


def image_keys(root: Path | None = None) -> dict[str, str]:
    """Every image's cache key (and the root filesystem's, as "rootfs"), a base's key chained into its children's."""
    root = root or repo_root()
    keys = {"rootfs": rootfs_key(root)}
    for image in SPECS:
        base_key = keys["rootfs"] if image.context == "rootfs" else keys[image.base] if image.base else None
        keys[image.name] = cache_key(root=root, recipe=image.recipe, inputs=image_inputs(image, root),
                                     base_key=base_key, extra=[image.reference])
    return keys


def archive_path(image: ImageSpec, key: str) -> Path:
    return cache_root() / key / f"{image.name}.tar"


# ---------------------------------------------------------------------------------------------------------------
# The container engine


def _log(msg: str) -> None:
    print(f"[serveplane.localcluster] images: {msg}", file=sys.stderr, flush=True)


def _ulimit(kind: int, *caps: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return min(_ULIMIT_CAP, *caps) if hard == resource.RLIM_INFINITY else min(hard, _ULIMIT_CAP, *caps)


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return _ULIMIT_CAP


def containers_conf_text() -> str:
    """Soft = hard = the hard limit this process has (capped): the most a container can get without privilege.
    The process limit is capped by the kernel's pid_max too: runc fails to set one above it (seen: hard 96362,
    pid_max 32768, `error setting rlimit type 6`)."""
    nofile, nproc = _ulimit(resource.RLIMIT_NOFILE), _ulimit(resource.RLIMIT_NPROC, _pid_max())
    return (
        "# Written by serveplane.localcluster.images for its podman and buildah calls (CONTAINERS_CONF).\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        'log_driver = "k8s-file"\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )


def engine_env() -> dict[str, str]:
    """The environment for every podman/buildah call: CONTAINERS_CONF points at a file written here."""
    path = cache_root() / "containers.conf"
    text = containers_conf_text()
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return dict(os.environ, CONTAINERS_CONF=str(path))


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is needed to build the local node's images (apt-get install {name})")
    return found


def _run(cmd: Sequence[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    # Output to fd 2, so a long build is visibly alive (and captured by pytest); the raw fd works even when
    # sys.stderr is replaced by a capture object.
    result = subprocess.run(list(cmd), cwd=cwd, env=env or engine_env(), stdout=2, stderr=2)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {result.returncode}: {shlex.join(cmd)}")


def _storage_key(reference: str) -> str | None:
    """The cache key label of the image tagged `reference` in local storage, or None when there is none."""
    result = subprocess.run(
        [_tool("podman"), "image", "inspect", "--format", f'{{{{index .Labels "{_KEY_LABEL}"}}}}', reference],
        env=engine_env(), capture_output=True, text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _image_id(reference: str) -> str:
    result = subprocess.run([_tool("podman"), "image", "inspect", "--format", "{{.Id}}", reference],
                            env=engine_env(), capture_output=True, text=True, check=True)
    return result.stdout.strip()


def _archive_config(path: Path) -> tuple[str, list[str]]:
    """A docker-archive's image ID (its config's digest) and the references it carries."""
    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise RuntimeError(f"{path} has no manifest.json")
        manifest = json.load(member)
    entry = manifest[0]
    return str(entry["Config"]).removeprefix("sha256:").removesuffix(".json"), list(entry.get("RepoTags") or [])


# ---------------------------------------------------------------------------------------------------------------
# Building


class _Builder:
    def __init__(self, root: Path, keys: dict[str, str]) -> None:
        self.root = root
        self.keys = keys

    def ensure(self, image: ImageSpec) -> ImageArchive:
        key = self.keys[image.name]
        archive = archive_path(image, key)
        if not archive.is_file():
            if _storage_key(image.reference) == key:
                _log(f"{image.reference} is in local storage with key {key[:12]}")
            else:
                self._build(image, key)
            self._save(image, key, archive)
        return ImageArchive(name=image.repository, tag=image.tag, path=archive, key=key)

    def in_storage(self, image: ImageSpec) -> None:
        """Make sure `image` (a base) is in local storage as its current key built it: load it from its archive."""
        key = self.keys[image.name]
        if _storage_key(image.reference) == key:
            return
        archive = archive_path(image, key)
        started = time.monotonic()
        _run([_tool("podman"), "load", "-q", "-i", str(archive)], what=f"podman load of {image.reference}")
        _log(f"loaded {image.reference} from {archive} in {time.monotonic() - started:.1f}s")

    def _build(self, image: ImageSpec, key: str) -> None:
        work = cache_root() / key
        work.mkdir(parents=True, exist_ok=True)
        scratch: Path | None = None
        if image.context == "rootfs":
            context = self._rootfs()
        elif image.context == "pause":
            scratch = context = Path(tempfile.mkdtemp(prefix=".context-", dir=work))
            self._go_build_pause(context / "pause")
        elif image.context == "coredns":
            scratch = context = Path(tempfile.mkdtemp(prefix=".context-", dir=work))
            shutil.copy2(self._coredns_binary(), context / "coredns")
        else:
            context = self.root
            if image.base:
                self.ensure(spec(image.base))
                self.in_storage(spec(image.base))
        try:
            self._bud(image, key, context)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _bud(self, image: ImageSpec, key: str, context: Path) -> None:
        cmd = [
            _tool("buildah"), "bud", "--pull=never", "--layers=false", "--network=host",
            "--file", str(self.root / image.recipe), "--tag", image.reference, "--label", f"{_KEY_LABEL}={key}",
        ]
        if HOST_CA_BUNDLE.is_file():
            # Lent to RUN steps (pip) for the build only; the image keeps its own bundle.
            cmd += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
        cmd.append(str(context))
        _log(f"building {image.reference} from {image.recipe} (key {key[:12]})")
        started = time.monotonic()
        _run(cmd, what=f"buildah bud of {image.reference}")
        _log(f"built {image.reference} in {time.monotonic() - started:.1f}s")

    def _save(self, image: ImageSpec, key: str, archive: Path) -> None:
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)  # podman save refuses to overwrite
        started = time.monotonic()
        image_id = _image_id(image.reference)
        try:
            _run([_tool("podman"), "save", "-q", "--format", "docker-archive", "-o", str(tmp), image.reference],
                 what=f"podman save of {image.reference}")
            saved_id, tags = _archive_config(tmp)
            # The tag names the image as this checkout built it only if nothing retagged it meanwhile.
            if saved_id != image_id.removeprefix("sha256:") or image.reference not in tags:
                raise RuntimeError(f"{image.reference} changed while it was being saved; run again")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # Rename last, so a half-written archive is never mistaken for a cached one.
        os.replace(tmp, archive)
        size = archive.stat().st_size / 1e6
        _log(f"saved {image.reference} to {archive} ({size:.0f} MB) in {time.monotonic() - started:.1f}s")
        _prune(image)

    def _rootfs(self) -> Path:
        """The dir holding the Debian root filesystem tar (the build context of both bases), made if missing."""
        work = cache_root() / self.keys["rootfs"]
        target = work / ROOTFS_NAME
        if target.is_file():
            return work
        work.mkdir(parents=True, exist_ok=True)
        args = [
            line.strip() for line in (self.root / ROOTFS_ARGS).read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        tmp = work / f".{os.getpid()}.tmp.tar"
        _log(f"making the Debian root filesystem {target} with mmdebstrap (about a minute)")
        started = time.monotonic()
        try:
            _run([_tool("mmdebstrap"), "--format=tar", *args, str(tmp)], what="mmdebstrap")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
        _log(f"made {target} ({target.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - started:.1f}s")
        return work

    def _coredns_binary(self) -> Path:
        # build.py builds (or finds in its own cache) the CoreDNS binary; imported here only, as only this needs it.
        from . import build

        started = time.monotonic()
        binary = build.ensure_dns_binary()
        _log(f"CoreDNS binary {binary} ready in {time.monotonic() - started:.1f}s")
        return binary

    def _go_build_pause(self, target: Path) -> None:
        env = dict(os.environ, GOWORK="off", CGO_ENABLED="0", GOFLAGS="-mod=mod")
        cmd = [_tool("go"), "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", str(target), "."]
        started = time.monotonic()
        _run(cmd, what="go build of the pause program", cwd=self.root / PAUSE_MODULE, env=env)
        _log(f"built the pause program in {time.monotonic() - started:.1f}s")


def _prune(image: ImageSpec) -> None:
    """Keep the newest KEEP_ARCHIVES archives of `image`, and drop the untagged images earlier builds left."""
    archives = sorted(cache_root().glob(f"*/{image.name}.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in archives[KEEP_ARCHIVES:]:
        old.unlink(missing_ok=True)
        try:
            old.parent.rmdir()
        except OSError:
            pass  # still holds something else (the root filesystem)
    # Only images this module labelled, and only untagged ones: a rebuilt image's predecessor.
    subprocess.run([_tool("podman"), "image", "prune", "--force", "--filter", f"label={_KEY_LABEL}"],
                   env=engine_env(), capture_output=True)


def ensure_images(names: Iterable[str] | None = None) -> list[ImageArchive]:
    """The archives of the named images (default: NODE_IMAGES, those the node runs), in build order, building
    (with any base they need) and saving whatever is missing.

    A warm call only hashes the inputs. Builds take a machine-wide lock, so two sessions never build at once.
    """
    root = repo_root()
    for needed in (ROOTFS_ARGS, "helm/Dockerfile.operator"):
        if not (root / needed).is_file():
            raise RuntimeError(f"{root / needed} not found: building the node's images needs a source checkout")
    wanted = set(names if names is not None else NODE_IMAGES)
    for name in wanted:
        spec(name)  # unknown names fail before any work
    keys = image_keys(root)
    images = [s for s in SPECS if s.name in wanted]
    if all(archive_path(s, keys[s.name]).is_file() for s in images):
        return [ImageArchive(s.repository, s.tag, archive_path(s, keys[s.name]), keys[s.name]) for s in images]

    cache_root().mkdir(parents=True, exist_ok=True)
    builder = _Builder(root, keys)
    started = time.monotonic()
    with open(cache_root() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        archives = [builder.ensure(s) for s in images]
    _log(f"{len(archives)} image archives ready in {time.monotonic() - started:.1f}s")
    return archives


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serveplane.localcluster.images",
        description="Build (or reuse) the local node's images and print their docker-archive paths.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"images to ensure, of {', '.join(s.name for s in SPECS)} "
                             f"(default: {' '.join(NODE_IMAGES)})")
    args = parser.parse_args(argv)
    names: list[str] = args.names
    for name in names:
        if name not in {s.name for s in SPECS}:
            parser.error(f"no image named {name!r}")
    started = time.monotonic()
    for archive in ensure_images(names or None):
        print(archive.path)
    _log(f"{time.monotonic() - started:.1f} s in all (built, or found in the cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
