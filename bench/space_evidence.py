"""Where in a search space the trials scored well: median validation score by range.

Reads every completed trial of the given space from searches' ``results.json`` files (the
`make reproduce` and `bench/tuner_efficiency.py` run folders), counts a configuration
once per benchmark folder (several searches of one benchmark can draw the same one), and
prints the median validation score, count and range of the trials per learning-rate band
and per value of every other knob, over all trials and over those 'within' a learning
rate below ``--lr-below`` and a dropout of at most ``--dropout-max``. Hyperband searches
(partial trials) and searches on a loss objective are left out. This is the evidence
`conf/search_space/cnn_plus.yaml` was narrowed on: validation scores only, never the test
set.

    .venv/bin/python bench/space_evidence.py outputs/bench/*/runs/*/results.json \\
        [--space cnn_plus] [--lr-below 0.0035] [--dropout-max 0.2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import add_json_option, write_json

LEARNING_RATE_BANDS = [(0.002, 0.0025), (0.0025, 0.003), (0.003, 0.004), (0.004, 0.0061)]
KNOBS = ["dropout", "augment_rotation", "augment_translation", "augment_zoom", "dense_units"]


def load_trials(paths: list[Path], space: str) -> list[dict]:
    """One row per distinct completed configuration per benchmark folder."""
    distinct: dict[tuple, dict] = {}
    for path in paths:
        results = json.loads(path.read_text())
        if "hyperband" in str(path) or results["objective"] != "val_accuracy":
            continue
        benchmark = path.parts[-4] if path.parts[-3] == "runs" else str(path.parent)
        for trial in results["trials"]:
            values = trial["hyperparameters"]
            if trial["status"] != "COMPLETED" or not _in_space(values, space):
                continue
            key = (benchmark, tuple(sorted(values.items())))
            distinct[key] = {**values, "score": trial["score"]}
    return list(distinct.values())


def _in_space(values: dict, space: str) -> bool:
    # The improved space is the one with batch norm; the seed space has none.
    return bool(values.get("batch_norm")) == (space == "cnn_plus")


def describe(label: str, scores: list[float]) -> str:
    """One line: the scores' median, count and range under ``label`` ('-' if none)."""
    if not scores:
        return f"{label:<34} -"
    return (
        f"{label:<34} median {statistics.median(scores):.4f}  n={len(scores):<3}"
        f" range {min(scores):.3f}-{max(scores):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files")
    parser.add_argument("--space", default="cnn_plus", choices=["cnn", "cnn_plus"])
    parser.add_argument(
        "--lr-below", type=float, default=0.0035, help="'within': learning rate below this"
    )
    parser.add_argument(
        "--dropout-max", type=float, default=0.2, help="'within': dropout at most this"
    )
    add_json_option(parser)
    args = parser.parse_args()
    trials = load_trials(args.results, args.space)
    within = [
        t
        for t in trials
        if t["learning_rate"] < args.lr_below and t.get("dropout", 0) <= args.dropout_max + 1e-9
    ]
    print(f"{len(trials)} distinct completed trials of {args.space}, {len(within)} within")
    groups: dict[str, list[float]] = {}
    for low, high in LEARNING_RATE_BANDS:
        groups[f"learning_rate {low}-{high}"] = [
            t["score"] for t in trials if low <= t["learning_rate"] < high
        ]
    for knob in KNOBS:
        for value in sorted({t[knob] for t in trials if knob in t}):
            for label, group in (("all", trials), ("within", within)):
                groups[f"{knob} {value} ({label})"] = [
                    t["score"] for t in group if t.get(knob) == value
                ]
    for label, scores in groups.items():
        print(describe(label, scores))
    write_json(args.json, {"space": args.space, "trials": len(trials), "scores": groups})


if __name__ == "__main__":
    main()
