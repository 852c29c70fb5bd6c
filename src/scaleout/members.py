"""The processes of one distributed search: each member's command, its log (followed and
filtered here), and the restart policy for a worker that dies."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from src.scaleout.process import Service

log = logging.getLogger("src.scaleout.cluster")

# Lines of the processes' logs worth echoing: the project's own log lines and errors.
_ECHO_MARKERS = ("][src.", "error:", "Error:", "Error executing")


@dataclass
class Member:
    """One process of the search: the chief or a worker."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    service: Service | None = None
    deaths: int = 0
    finished: bool = False
    given_up: bool = False

    def start(self) -> None:
        """Start (or restart) the process; its output goes to its log and, filtered, here."""
        first = self.service is None
        self.service = Service(self.name, self.command, self.log_path, self.env)
        self.service.start(lambda: True, timeout=5)
        if first:  # a restart appends to the same log, which is already followed
            threading.Thread(target=_follow, args=(self.name, self.log_path), daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self.service.process.pid if self.service and self.service.process else None

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self.service.process.poll() if self.service and self.service.process else None

    def check(self, max_restarts: int) -> None:
        """Note a worker that ended: finished (exit 0), restarted under the same id (so the
        oracle hands it back its unfinished trial), or given up after ``max_restarts``."""
        if self.finished or self.given_up:
            return
        code = self.poll()
        if code is None:
            return
        if code == 0:
            self.finished = True
            return
        self.deaths += 1
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        if self.deaths > max_restarts:
            self.given_up = True
            log.error(
                "%s ended with %s for the %d. time; giving it up (see %s)",
                self.name,
                how,
                self.deaths,
                self.log_path,
            )
            return
        log.warning(
            "%s ended with %s; restarting it under the same id (%d of %d restarts)",
            self.name,
            how,
            self.deaths,
            max_restarts,
        )
        self.start()


def _follow(name: str, path: Path) -> None:
    """Echo the interesting new lines of a member's log, prefixed with its name (a daemon
    thread: it ends with the supervisor)."""
    with open(path, errors="replace") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            line = handle.readline()
            if not line:
                time.sleep(0.3)
                continue
            if any(marker in line for marker in _ECHO_MARKERS):
                print(f"[{name}] {line.rstrip()}", flush=True)


def member_command(overrides: Sequence[str], role: str, search_id: str, run_dir: Path) -> list[str]:
    """``python -m src.run`` as one member of search ``search_id``, its run folder ``run_dir``."""
    return [
        sys.executable,
        "-m",
        "src.run",
        *overrides,
        f"distributed.role={role}",
        f"distributed.search_id={search_id}",
        f"hydra.run.dir={run_dir}",
    ]
