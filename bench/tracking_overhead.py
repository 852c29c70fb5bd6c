"""Does MLflow tracking cost time or change results? Same search with tracking off and on.

Runs the same seeded search (random tuner, seed space, 4 trials of 2 epochs on the bundled
sample) four times in one process, after an untimed warm-up search, in the order off, on,
on, off so that drift in the machine's speed cancels, and prints each wall time, the on/off
ratio, and whether the trial scores were identical. Wall times on a shared machine vary by
several percent from run to run, so it also times the tracker's own work (its hooks and its
connection), which is the overhead itself, as a share of the tracked searches' wall time.
Tracking goes to a fresh SQLite store in a temporary folder (created during the warm-up).

    .venv/bin/python bench/tracking_overhead.py [--trials 4] [--epochs 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import add_json_option, write_json

from src.config.compose import compose_config
from src.pipeline import run_pipeline
from src.tracking.tracker import MLflowTracker

TRACKER_WORK = (
    "__init__",
    "on_search_begin",
    "on_trial_begin",
    "on_epoch_end",
    "on_trial_end",
    "on_search_end",
    "close",
)
time_in_tracker = [0.0]


def _timed(method):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            time_in_tracker[0] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    add_json_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="tracking-overhead-"))
    overrides = [
        "data=mnist_10k",
        f"tuner.max_trials={args.trials}",
        f"training.epochs={args.epochs}",
        "training.verbose=0",
        f"mlflow.tracking_uri=sqlite:///{workdir}/mlflow.db",
        f"mlflow.artifact_location={workdir}/artifacts",
        "final.enabled=false",
        "overwrite=true",  # every run searches afresh in the same folder
    ]
    cfg = compose_config(overrides, output_dir=workdir)
    run_pipeline(compose_config([*overrides, "tuner.max_trials=1", "training.epochs=1"], workdir))

    for name in TRACKER_WORK:
        setattr(MLflowTracker, name, _timed(getattr(MLflowTracker, name)))
    time_in_tracker[0] = 0.0

    timings: dict[bool, list[float]] = {False: [], True: []}
    scores: dict[bool, list[float]] = {}
    for tracked in (False, True, True, False):
        cfg.mlflow.enabled = tracked
        start = time.perf_counter()
        result = run_pipeline(cfg).search
        timings[tracked].append(time.perf_counter() - start)
        scores[tracked] = [t.score for t in result.trials]
        print(f"tracking {'on ' if tracked else 'off'}: {timings[tracked][-1]:.1f} s")

    off, on = sum(timings[False]), sum(timings[True])
    print(
        f"{args.trials} trials x {args.epochs} epochs, {result.data['sizes']['train']} digits, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"wall time with tracking / without: {on / off:.3f} ({on:.1f} s / {off:.1f} s)")
    print(
        f"time inside the tracker: {time_in_tracker[0]:.2f} s of {on:.1f} s tracked "
        f"({100 * time_in_tracker[0] / on:.2f}%)"
    )
    print(f"identical trial scores: {scores[True] == scores[False]}")
    write_json(
        args.json,
        {
            "trials": args.trials,
            "epochs": args.epochs,
            "seconds_untracked": timings[False],
            "seconds_tracked": timings[True],
            "ratio_tracked_untracked": on / off,
            "seconds_inside_tracker": time_in_tracker[0],
            "identical_scores": scores[True] == scores[False],
        },
    )


if __name__ == "__main__":
    main()
