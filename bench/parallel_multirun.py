"""Does Hydra's joblib launcher speed up a multirun on this machine? Same sweep three ways.

Runs the same Hydra multirun of three small searches (random, bayesian and grid over the
seed space on the bundled sample; trials, epochs and seeds fixed; no final stage) with:

1. Hydra's basic launcher: one search after the other, TensorFlow using every core;
2. the joblib launcher, 2 searches at a time, TensorFlow using every core in each;
3. the joblib launcher, 2 at a time, one TensorFlow thread each (``training.threads=1``);

and prints each wall time (start-up included, as a user sees it) and the speed-up against
the basic launcher. Each variant logs to its own SQLite store in a temporary folder.

    .venv/bin/python bench/parallel_multirun.py [--trials 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_json_option, write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "basic launcher, sequential": [],
    "joblib, 2 jobs": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "joblib, 2 jobs, 1 thread each": [
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "training.threads=1",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    add_json_option(parser)
    args = parser.parse_args()
    sweep = [
        "-m",
        "tuner=random,bayesian,grid",
        "data=mnist_10k",
        "search_space=cnn",
        f"tuner.max_trials={args.trials}",
        f"training.epochs={args.epochs}",
        "training.verbose=0",
        "final.enabled=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    folder = Path(tempfile.mkdtemp(prefix="bench-multirun-"))
    times = {}
    try:
        for index, (name, launcher) in enumerate(VARIANTS.items()):
            store = f"mlflow.tracking_uri=sqlite:///{folder / f'{index}.db'}"
            command = [
                sys.executable,
                "-m",
                "src.run",
                *sweep,
                *launcher,
                store,
                f"hydra.sweep.dir={folder / f'sweep{index}'}",
            ]
            start = time.perf_counter()
            result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
            times[name] = time.perf_counter() - start
            if result.returncode != 0:
                raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(
        f"\n3 searches (random, bayesian, grid; {args.trials} trials x {args.epochs} epochs, "
        "8,100 digits, no final stage), wall time with start-up:"
    )
    baseline = times["basic launcher, sequential"]
    for name, seconds in times.items():
        print(f"  {name:<32} {seconds:6.1f} s   speed-up {baseline / seconds:.2f}x")
    write_json(args.json, {"trials": args.trials, "epochs": args.epochs, "seconds": times})


if __name__ == "__main__":
    main()
