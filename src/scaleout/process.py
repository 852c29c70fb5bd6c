"""Process control for the scale-out services: one server process, started and stopped.

`Service` runs a server in a session of its own, logging to a file, and stops it (and
whatever it started) by its process group. `free_port` and `http_ok` are what starting a
server on loopback needs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Loopback HTTP never goes through a proxy, whatever the environment says.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A service could not be started; the message says which and why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 2) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with _LOOPBACK.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Service:
    """One server process in a session of its own, logging to a file; stopped by its group.

    Args:
        name: For messages.
        command: The command line.
        log_file: Where its output goes (the last lines are quoted when it fails to start).
        env: Its environment (default: this process's).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_file = Path(log_file)
        self.env = dict(env) if env is not None else None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float) -> Service:
        """Start the process and wait until ``ready()`` holds; raise `ServiceError` if not."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as output:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with {self.process.returncode}: {self.log_tail()}"
                )
            if ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"{self.name} was not ready after {timeout:g}s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        """The last lines of the log, on one line."""
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, SIGKILL it if it is still there after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
