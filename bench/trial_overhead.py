"""Many cheap trials in one process: each trial's fixed cost, and resident memory over trials.

Runs one tracked, count-based search of ``--trials`` trials of ``--epochs`` epochs on
``--digits`` training digits (random search, the default space, no pruning) through
``src.pipeline.run_pipeline``, with an observer that records each trial's wall time, its
epochs' times, and the process's resident memory after it. A trial's fixed cost is its
time beyond its epochs at the pace of its last, steady one: building, tracing (the first
epoch's extra), validation set-up, Keras Tuner's checkpoint and state files, MLflow
writes. Writes one JSON record; prints the medians and the growth.

    .venv/bin/python bench/trial_overhead.py --trials 100 --json outputs/bench/trial_overhead.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import add_json_option, machine, write_json


def resident_mb() -> float:
    """This process's resident memory (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(trials: int, digits: int, tracked: bool, epochs: int = 2) -> dict[str, Any]:
    """One search of ``trials`` trials of ``epochs`` epochs; per-trial wall, epoch and memory
    figures."""
    from src.config.compose import compose_config
    from src.pipeline import run_pipeline
    from src.search.observers import TrialObserver

    class Timings(TrialObserver):
        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []

        def on_trial_begin(self, tuner: Any, trial: Any) -> None:
            self.started = time.perf_counter()
            self.epochs: list[float] = []

        def on_epoch_begin(self, tuner: Any, trial: Any, epoch: int) -> None:
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, tuner: Any, trial: Any, epoch: int, logs: Any) -> None:
            self.epochs.append(time.perf_counter() - self.epoch_started)

        def on_trial_end(self, tuner: Any, trial: Any) -> None:
            wall = time.perf_counter() - self.started
            # The last epoch is a steady one (traced already): the trial's training at
            # that pace; the rest of its wall time is its fixed cost.
            steady = self.epochs[-1]
            self.rows.append(
                {
                    "wall_s": wall,
                    "epoch_s": sum(self.epochs),
                    "steady_epoch_s": steady,
                    "fixed_s": wall - len(self.epochs) * steady,
                    "rss_mb": resident_mb(),
                }
            )

    folder = Path(tempfile.mkdtemp(prefix="trial_overhead_"))
    overrides = [
        "experiment=quick",
        "tuner=random",
        f"tuner.max_trials={trials}",
        f"training.epochs={epochs}",
        "training.early_stopping_patience=10",
        "tuner.pruner=null",
        f"data.max_train_examples={digits}",
        "training.batch_size=128",
        "final.enabled=false",
        f"mlflow.enabled={str(tracked).lower()}",
        f"mlflow.tracking_uri=sqlite:///{folder}/mlflow.db",
    ]
    cfg = compose_config(overrides, output_dir=folder / "run")
    timings = Timings()
    run_pipeline(cfg, observers=[timings])
    rows = timings.rows
    fixed = [row["wall_s"] - row["epoch_s"] for row in rows]

    def median(key: str) -> float:
        return round(statistics.median(row[key] for row in rows[1:]), 3)

    tenth = rows[min(9, len(rows) - 1)]["rss_mb"]
    return {
        "trials": len(rows),
        "digits": digits,
        "tracked": tracked,
        "median_trial_s": round(statistics.median(r["wall_s"] for r in rows[1:]), 3),
        "median_epoch_s": round(statistics.median(r["epoch_s"] for r in rows[1:]), 3),
        "median_fixed_s": round(statistics.median(fixed[1:]), 3),
        "epochs": epochs,
        "median_steady_epoch_s": median("steady_epoch_s"),
        "median_trial_fixed_s": median("fixed_s"),
        "rss_mb_after_trial_1": round(rows[0]["rss_mb"], 1),
        "rss_mb_after_trial_10": round(tenth, 1),
        "rss_mb_after_last": round(rows[-1]["rss_mb"], 1),
        "rss_growth_mb_10_to_last": round(rows[-1]["rss_mb"] - tenth, 1),
        "per_trial": [{k: round(v, 3) for k, v in row.items()} for row in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--digits", type=int, default=1024, help="training digits a trial")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a trial (2 or more)")
    parser.add_argument("--untracked", action="store_true", help="mlflow.enabled=false")
    add_json_option(parser)
    args = parser.parse_args()
    record = {
        "command": "bench/trial_overhead.py "
        f"--trials {args.trials} --digits {args.digits} --epochs {args.epochs}"
        f"{' --untracked' if args.untracked else ''}",
        "machine": machine(),
        **measure(args.trials, args.digits, not args.untracked, args.epochs),
    }
    summary = {k: v for k, v in record.items() if k not in ("per_trial", "machine")}
    print(summary)
    write_json(args.json, record)


if __name__ == "__main__":
    main()
