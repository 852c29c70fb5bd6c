"""What the benchmarks share: a fixed configuration's model, the data a config names, JSON.

Every script imports the installed project (``make install``) and writes its figures as
JSON with ``--json PATH`` (`add_json_option`, `write_json`), besides the table it prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.provenance import commit, machine, provenance

__all__ = ["commit", "machine"]  # re-exported: the scripts take them from here


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json PATH``: also write the figures there (with the machine and the date)."""
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")


def write_json(path: Path | None, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` with the machine and the time it ran, if a path was given."""
    if path is None:
        return
    record = {**provenance(), **payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"figures written to {path}")


def packed(right: Any) -> str:
    """`src.stats.packed_bits`: per-digit correctness as base64 of packed bits."""
    from src.stats import packed_bits

    return packed_bits(right)


def unpacked(bits: str, count: int) -> Any:
    """`src.stats.unpacked_bits`: the booleans `packed` wrote, ``count`` of them."""
    from src.stats import unpacked_bits

    return unpacked_bits(bits, count)


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
