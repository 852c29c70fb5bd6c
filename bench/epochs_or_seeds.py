"""One long final model or an ensemble of shorter ones, for the same training time.

A budgeted final stage that can afford E epochs may train one model for E epochs or k
models (seeds) for E / k epochs each and register the mean of their softmax outputs. This
script decides which, on validation digits only: it trains the shipped study's best
configuration (`conf/warm_start/default.json`'s first trial) as the final stage trains it,
on all 10,000 digits of the bundled sample (the first 10,000 official training digits),
and scores every arm on official training digits 50,000-59,999, which the bundle does not
hold (read from the IDX folder `MNIST_IDX_FOLDER` names), never on the test set. It is
what `final.ensemble_epochs` in `conf/config.yaml` is chosen by.

    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/epochs_or_seeds.py
        [--epochs 12 30] [--members 1 2 3] [--seeds 42 43 44] [--member-epochs E] [--json FILE]

Every arm with k members takes the first k seeds; McNemar compares each ensemble with the
single model of the same total epochs, on the same 10,000 digits. With ``--member-epochs
E`` every member trains E epochs instead (k members: k times the time): what a budget that
pays one model its ``final.max_epochs`` and more would buy by training more of them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from common import add_json_option, composed_dataset, fixed_model, official_idx_folder, write_json
from omegaconf import OmegaConf

from src.data.development import development_digits
from src.model.backend import configure_backend
from src.stats import accuracy_with_interval, mcnemar

SHIPPED = Path("conf/warm_start/default.json")


def train_member(cfg, values, dataset, seed: int, epochs: int):
    """One final model: every bundled digit, ``epochs`` of the configuration's schedule."""
    training = {**OmegaConf.to_container(cfg.training, resolve=True), "seed": seed}
    configure_backend(training)
    hypermodel, hp, model = fixed_model(cfg, values, dataset)
    images = np.concatenate([dataset.train.images, dataset.val.images])
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    start = time.perf_counter()
    hypermodel.fit(
        hp, model, images, labels, epochs=epochs, batch_size=training["batch_size"], verbose=0
    )
    return model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[12, 30], help="total epochs")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument(
        "--member-epochs",
        type=int,
        help="every member trains this many epochs (the total grows with the members)",
    )
    add_json_option(parser)
    args = parser.parse_args()
    folder = official_idx_folder(parser)
    if max(args.members) > len(args.seeds):
        parser.error(f"--members {max(args.members)} needs as many --seeds")
    values = json.loads(SHIPPED.read_text())["trials"][0]["hyperparameters"]
    cfg, dataset = composed_dataset(["data=mnist_10k"])
    held_out = development_digits(cfg, folder)
    images, labels = held_out.images, held_out.labels
    print(f"configuration: {values}")
    print("| total epochs | members x epochs | held-out accuracy [95 %] (errors) | train s | p |")
    print("| ---: | --- | ---: | ---: | ---: |")
    rows, outputs = [], {}  # (seed, epochs) -> softmax on the held-out digits
    totals = [None] if args.member_epochs else args.epochs
    for total in totals:
        single_right = None
        for members in args.members:
            epochs = args.member_epochs or total // members
            if epochs < 1:
                continue
            seconds = 0.0
            for seed in args.seeds[:members]:
                if (seed, epochs) not in outputs:
                    model, took = train_member(cfg, values, dataset, seed, epochs)
                    outputs[seed, epochs] = (model.predict(images, verbose=0), took)
                seconds += outputs[seed, epochs][1]
            mean = np.mean([outputs[s, epochs][0] for s in args.seeds[:members]], axis=0)
            right = mean.argmax(axis=1) == labels
            interval = accuracy_with_interval(int(right.sum()), len(right))
            p = None if single_right is None else mcnemar(right, single_right).p_value
            single_right = right if members == 1 else single_right
            print(
                f"| {members * epochs} | {members} x {epochs} | {interval} | {seconds:.0f} | "
                f"{'-' if p is None else f'{p:.2g}'} |",
                flush=True,
            )
            rows.append(
                {
                    "total_epochs": members * epochs,
                    "members": members,
                    "epochs": epochs,
                    "accuracy": interval.value,
                    "errors": interval.errors,
                    "train_s": round(seconds, 1),
                    "mcnemar_p_vs_single": p,
                }
            )
    write_json(args.json, {"hyperparameters": values, "seeds": args.seeds, "rows": rows})


if __name__ == "__main__":
    main()
