"""Under the smallest budgets: the shipped best for the few epochs it affords, or the
search space's default (smallest) model for the more epochs it affords in the same time.

A budgeted final stage whose time pays the chosen configuration under three quarters of the
epochs its score was measured at (the shipped study's 4) trains the space's default point
instead (`src.final.choose.affordable_choice`, `ENOUGH_OF_THE_SCORED_EPOCHS`). This script
is what that rule rests on: it trains both configurations as the final stage trains them
(all 10,000 bundled digits, each schedule decaying over its own epochs), for each epoch
count given, and scores them on official training digits 50,000-59,999, which the bundle
does not hold (`MNIST_IDX_FOLDER`), never on the test set. Compare rows of about the same
training time; McNemar compares each default row with the shipped-best row closest to it
in time, on the same 10,000 digits.

`--train-digits N` trains on official training digits 0 to N-1 instead of the bundle (at
most 50,000: full MNIST's scale, short of its 60,000 so that the held-out digits stay out).

    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/smallest_budgets.py
        [--best-epochs 2 3 4] [--default-epochs 4 6 8] [--seed 42] [--train-digits N]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from common import add_json_option, composed_dataset, write_json
from epochs_or_seeds import HELD_OUT, SHIPPED, official_training, train_member

from src.data.dataset import Split
from src.data.sources import read_idx_folder
from src.model.hypermodel import CNNHyperModel
from src.search.budgeting import default_configuration
from src.stats import accuracy_with_interval, mcnemar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--best-epochs", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--default-epochs", type=int, nargs="+", default=[4, 6, 8])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-digits", type=int, default=None, help="official, from 0")
    add_json_option(parser)
    args = parser.parse_args()
    folder = os.environ.get("MNIST_IDX_FOLDER")
    if not folder:
        parser.error("MNIST_IDX_FOLDER must name the four official IDX files")
    if args.train_digits is not None and not 0 < args.train_digits <= HELD_OUT.start:
        parser.error(f"--train-digits must be between 1 and {HELD_OUT.start}")
    cfg, dataset = composed_dataset(["data=mnist_10k"])
    arrays = read_idx_folder(Path(folder))
    if args.train_digits:
        # train_member trains on train and validation together: all of them go in train.
        train = Split(*official_training(arrays, slice(0, args.train_digits)))
        dataset = replace(dataset, train=train, val=Split(train.images[:0], train.labels[:0]))
    hypermodel = CNNHyperModel.from_config(cfg.search_space, cfg.training, dataset)
    arms = {
        "shipped best": (
            json.loads(SHIPPED.read_text())["trials"][0]["hyperparameters"],
            args.best_epochs,
        ),
        "default point": (default_configuration(hypermodel), args.default_epochs),
    }
    images, labels = official_training(arrays, HELD_OUT)
    for name, (values, _) in arms.items():
        print(f"{name}: {values}")
    print("| configuration | epochs | train s | held-out accuracy [95 %] (errors) | p vs best |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows, best_rows = [], []
    for name, (values, epoch_counts) in arms.items():
        for epochs in epoch_counts:
            model, seconds = train_member(cfg, values, dataset, args.seed, epochs)
            right = model.predict(images, verbose=0).argmax(axis=1) == labels
            keras.backend.clear_session()
            interval = accuracy_with_interval(int(right.sum()), len(right))
            p = None
            if name == "default point" and best_rows:
                nearest = min(best_rows, key=lambda row: abs(row[0] - seconds))
                p = mcnemar(right, nearest[1]).p_value
            if name == "shipped best":
                best_rows.append((seconds, right))
            print(
                f"| {name} | {epochs} | {seconds:.0f} | {interval} | "
                f"{'-' if p is None else f'{p:.2g}'} |",
                flush=True,
            )
            rows.append(
                {
                    "configuration": name,
                    "epochs": epochs,
                    "train_s": round(seconds, 1),
                    "accuracy": interval.value,
                    "errors": interval.errors,
                    "mcnemar_p_vs_nearest_best": p,
                }
            )
    configurations = {name: values for name, (values, _) in arms.items()}
    write_json(
        args.json,
        {
            "configurations": configurations,
            "seed": args.seed,
            "train_digits": len(dataset.train) + len(dataset.val),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
