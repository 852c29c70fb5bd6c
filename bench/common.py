"""What the benchmarks share: a fixed configuration's model, the data a config names, JSON.

Every script imports the installed project (``make install``) and writes its figures as
JSON with ``--json PATH`` (`add_json_option`, `write_json`), besides the table it prints.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: also write the figures there (with the machine and the date)."""
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def write_json(path: Path | None, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` with the machine and the time it ran, if a path was given."""
    if path is None:
        return
    record = {
        "machine": machine(),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"figures written to {path}")


def machine() -> dict[str, Any]:
    """The processor, its core count and the Python that ran: a figure's scope."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def commit() -> str:
    """The checked-out commit, marked ``-dirty`` when the tree has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def packed(right: Any) -> str:
    """Per-digit correctness (booleans, in test order) as base64 of packed bits: 10,000
    digits in 1,668 characters, enough to recompute intervals and McNemar tests."""
    import numpy as np

    return base64.b64encode(np.packbits(np.asarray(right, dtype=bool)).tobytes()).decode()


def unpacked(bits: str, count: int) -> Any:
    """The booleans `packed` wrote, ``count`` of them."""
    import numpy as np

    return np.unpackbits(np.frombuffer(base64.b64decode(bits), dtype=np.uint8))[:count].astype(bool)


def row_variants(row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """An anytime row's variant arms (records before 2026-12-08 hold one, as ``variant``)."""
    return row.get("variants") or ([row["variant"]] if "variant" in row else [])


def official_idx_folder(parser: argparse.ArgumentParser) -> Path:
    """The folder of the four official MNIST IDX files that ``MNIST_IDX_FOLDER`` names; a
    usage error without it (development digits are read from there)."""
    folder = os.environ.get("MNIST_IDX_FOLDER")
    if not folder:
        parser.error("MNIST_IDX_FOLDER must name the four official IDX files")
    return Path(folder)


def composed_dataset(overrides: Sequence[str]) -> tuple[Any, Any]:
    """The composed config for ``overrides`` and the dataset it names, as a run loads it."""
    from src.config.compose import compose_config
    from src.data.development import run_dataset

    cfg = compose_config(list(overrides))
    return cfg, run_dataset(cfg)


def fixed_model(cfg: Any, values: Mapping[str, Any], dataset: Any) -> tuple[Any, Any, Any]:
    """One configuration's hypermodel, its fixed hyperparameters and its built model: the
    way the search and the final stage build it (``CNNHyperModel.from_config``)."""
    from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters

    hypermodel = CNNHyperModel.from_config(cfg.search_space, cfg.training, dataset)
    hp = fixed_hyperparameters(dict(values))
    return hypermodel, hp, hypermodel.build(hp)


def fisher_interval(rho: float, n: int) -> tuple[float, float]:
    """95 % interval of a Spearman correlation from n pairs (Fisher z, Bonett-Wright's
    standard error for ranks)."""
    if n < 4 or abs(rho) >= 1:
        return (rho, rho)
    half = 1.96 * math.sqrt(1 + rho**2 / 2) / math.sqrt(n - 3)
    z = math.atanh(rho)
    return (math.tanh(z - half), math.tanh(z + half))
