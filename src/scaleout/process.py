"""Process control for the scale-out services: one server process, started and stopped.

`Service` runs a server in a session of its own, under the `src.scaleout.reaper` shim,
logging to a file, and stops it (and whatever it started) by its process group.
`free_port` and `http_ok` are what starting a server on loopback needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from src.interrupts import interrupt

# The shim every `Service` runs under (a script, so that it runs from any folder).
_REAPER = Path(__file__).with_name("reaper.py")
# Loopback HTTP never goes through a proxy, whatever the environment says.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# What stops a supervisor: Ctrl-C, a scheduler's SIGTERM, a closed terminal's SIGHUP.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_like_ctrl_c() -> None:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does (main thread only),
    with the handler a run uses (``src.interrupts.interrupt``)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Ignore `STOP_SIGNALS` inside: a second Ctrl-C cannot cut a cleanup short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    """One server process in a process group of its own, logging to a file.

    It runs under `src.scaleout.reaper`, so that nothing it starts outlives this process:
    not when this process is SIGKILLed, not when the terminal closes. Stopping it sends
    ``stop_signal`` to the whole group, then SIGKILL to whatever is left.

    Args:
        name: For messages.
        command: The command line.
        log_file: Where its output goes (the last lines are quoted when it fails to start).
        env: Its environment (default: this process's).
        stop_signal: What asks the program to stop (PostgreSQL: SIGINT, a fast shutdown).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_file = Path(log_file)
        self.env = dict(env) if env is not None else None
        self.stop_signal = stop_signal
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float) -> Service:
        """Start the process and wait until ``ready()`` holds; raise `ServiceError` if not.

        Call it from the main thread: Linux's parent-death signal follows the thread that
        started a process.
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        shim = [
            sys.executable,
            str(_REAPER),
            "--signal",
            self.stop_signal.name,
            "--parent",
            str(os.getpid()),
            "--",
        ]
        with open(self.log_file, "ab") as output:
            self.process = subprocess.Popen(
                [*shim, *self.command],
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
        """Stop the program and everything in its group; SIGKILL what is left after
        ``timeout`` seconds, and always signal the group, even when its leader is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # the reaper sends stop_signal to the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout + 5)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # an empty group
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
