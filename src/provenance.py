"""Where a figure was measured: the machine, the commit and the time, for committed records.

Every record under docs/data/ (bench/*.py's ``--json``, ``python -m src.final.study
--record``) carries these, so that a figure's scope (same machine or across machines) can
be stated and the run repeated at the same commit.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The instruction sets that change how fast (and, in low digits, how) TensorFlow computes.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def machine() -> dict[str, Any]:
    """The processor, its relevant instruction sets, its core count and the Python that ran."""
    cpu, flags = platform.processor(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields = dict(
            line.split(":", 1) for line in cpuinfo.read_text().splitlines() if ":" in line
        )
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        cpu = fields.get("model name", cpu)
        flags = [flag for flag in CPU_FLAGS if flag in fields.get("flags", "").split()]
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def commit() -> str:
    """The checked-out commit, marked ``-dirty`` when the tree has uncommitted changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:  # no git on this machine
            return ""
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance() -> dict[str, Any]:
    """The machine, the commit and the time: what heads a committed record."""
    return {"machine": machine(), "commit": commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
