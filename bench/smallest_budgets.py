"""Under small budgets: one configuration for the few epochs it affords, or another for the
more it affords in the same time, as the final stage trains them, scored on held-out digits.

It asks whether, under a small budget, a dearer configuration for fewer epochs beats a
cheaper one for more (the final-stage rule it once backed, `affordable_choice`, is gone:
docs/archive/). It trains each arm as the final stage trains it (all
10,000 bundled digits, each schedule decaying over its own epochs), for each epoch count
given, and scores it on official training digits 50,000-59,999, which the bundle does not
hold (`MNIST_IDX_FOLDER`), never on the test set. Compare rows of about the same training
time; McNemar compares each row of a later arm with the first arm's row closest to it in
time, on the same 10,000 digits.

An arm is ``CONFIGURATION:EPOCHS[,EPOCHS...]``, the configuration one of ``shipped`` (the
shipped study's best, `conf/warm_start/default.json`), ``default`` (the search space's
default point) or ``RESULTS#TRIAL`` (a trial of a run's ``results.json``). `--train-digits
N` trains on official training digits 0 to N-1 instead of the bundle (at most 50,000: full
MNIST's scale, short of its 60,000 so that the held-out digits stay out).

    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/smallest_budgets.py
        [--arms shipped:2,3,4 default:4,6,8] [--seed 42] [--train-digits N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_tuner
from common import add_json_option, composed_dataset, official_idx_folder, packed, write_json
from epochs_or_seeds import SHIPPED, train_member

from src.data.dataset import Split
from src.data.development import development_slice, official_training
from src.model.hypermodel import CNNHyperModel
from src.search.warm_start import model_hyperparameters
from src.stats import accuracy_with_interval, mcnemar


def arm_configuration(name: str, hypermodel: CNNHyperModel) -> dict[str, Any]:
    """The hyperparameters an arm's configuration names (see the module's docstring).

    Raises:
        ValueError: a name that is none of those, or a trial its results.json lacks.
    """
    if name == "shipped":
        return json.loads(SHIPPED.read_text())["trials"][0]["hyperparameters"]
    if name == "default":  # each knob's first choice or lower bound
        hp = keras_tuner.HyperParameters()
        hypermodel.build(hp)
        return dict(hp.values)
    path, _, trial_id = name.rpartition("#")
    if not path:
        raise ValueError(f"{name!r}: expected shipped, default or RESULTS#TRIAL")
    trials = json.loads(Path(path).read_text()).get("trials", [])
    trial = next((t for t in trials if str(t.get("trial_id")) == trial_id), None)
    if trial is None:
        raise ValueError(f"{path} has no trial {trial_id!r}")
    return model_hyperparameters(trial["hyperparameters"])


def parse_arm(text: str) -> tuple[str, list[int]]:
    """``CONFIGURATION:EPOCHS[,EPOCHS...]`` as its configuration and epoch counts."""
    name, _, epochs = text.rpartition(":")
    try:
        counts = [int(e) for e in epochs.split(",")]
    except ValueError:
        counts = []
    if not name or not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CONFIGURATION:EPOCHS[,EPOCHS...]")
    return name, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arms",
        type=parse_arm,
        nargs="+",
        default=[("shipped", [2, 3, 4]), ("default", [4, 6, 8])],
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-digits", type=int, default=None, help="official, from 0")
    add_json_option(parser)
    args = parser.parse_args()
    folder = official_idx_folder(parser)
    cfg, dataset = composed_dataset(["data=mnist_10k"])
    held_out = development_slice(cfg)
    if args.train_digits is not None and not 0 < args.train_digits <= held_out.start:
        parser.error(f"--train-digits must be between 1 and {held_out.start}")
    if args.train_digits:
        # train_member trains on train and validation together: all of them go in train.
        train = official_training(folder, slice(0, args.train_digits))
        dataset = replace(dataset, train=train, val=Split(train.images[:0], train.labels[:0]))
    hypermodel = CNNHyperModel.from_config(cfg.search_space, cfg.training, dataset)
    names = [name for name, _ in args.arms]
    if len(set(names)) < len(names):
        parser.error("each configuration may be one arm only: list its epochs together")
    try:
        arms = {name: (arm_configuration(name, hypermodel), counts) for name, counts in args.arms}
    except (ValueError, OSError) as error:
        parser.error(str(error))
    development = official_training(folder, held_out)
    images, labels = development.images, development.labels
    for name, (values, _) in arms.items():
        print(f"{name}: {values}")
    print("| configuration | epochs | train s | held-out accuracy [95 %] (errors) | p vs first |")
    print("| --- | ---: | ---: | ---: | ---: |")
    first = next(iter(arms))
    rows, first_rows = [], []
    for name, (values, epoch_counts) in arms.items():
        for epochs in epoch_counts:
            model, seconds = train_member(cfg, values, dataset, args.seed, epochs)
            right = model.predict(images, verbose=0).argmax(axis=1) == labels
            keras.backend.clear_session()
            interval = accuracy_with_interval(int(right.sum()), len(right))
            p = None
            if name != first:
                nearest = min(first_rows, key=lambda row: abs(row[0] - seconds))
                p = mcnemar(right, nearest[1]).p_value
            else:
                first_rows.append((seconds, right))
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
                    "mcnemar_p_vs_nearest_first": p,
                    "right_bits": packed(right),  # per development digit, in order
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
