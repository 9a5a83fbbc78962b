"""A real Redis for the tests of GCS fault tolerance: Debian's redis-server, started by a fixture with a password,
in memory only (no RDB or AOF files), in its own process group, and stopped with the test session.

`keys` asks the server itself (redis-cli from the same package), so a test sees what Ray really stored.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import processes

_START_TIMEOUT_S = 30.0


@dataclass
class RedisServer:
    bind: str
    port: int
    state_dir: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.port}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: `make host` installs Debian's redis-server")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary, "--bind", self.bind, "--port", str(self.port), "--requirepass", self.password,
            "--save", "", "--appendonly", "no", "--dir", str(self.state_dir), "--protected-mode", "no",
        ]
        log = self.state_dir / "redis.log"
        self._proc = processes.spawn(argv, log, detach=False)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while self.cli("PING").strip() != "PONG":
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{processes.tail(log)}")
            time.sleep(0.2)
        return self

    def cli(self, *command: str) -> str:
        redis_cli = shutil.which("redis-cli") or "redis-cli"
        argv = [redis_cli, "-h", self.bind, "-p", str(self.port), "--no-auth-warning", "-a", self.password, *command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return result.stdout

    def keys(self, pattern: str = "*") -> list[str]:
        return sorted(line for line in self.cli("--scan", "--pattern", pattern).splitlines() if line)

    def stop(self) -> None:
        if self._proc is not None:
            processes.stop_groups([self._proc.pid], grace=5.0)
            self._proc = None
