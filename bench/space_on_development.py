"""Whether the improved space's narrowed ranges hold on development digits.

`conf/search_space/cnn_plus.yaml` narrowed three knobs on validation evidence (and after a
test-set figure was known: docs/decisions.md): learning rate 0.002-0.006 to 0.002-0.0035,
dropout 0.1-0.3 to 0.1-0.2, shift {0.05, 0.1} to 0.05. This script re-decides them on
development digits alone: it samples configurations at random from the wider space (the
narrowed one with ``--widen`` overrides), trains each as the final stage trains it (all
10,000 bundled digits, ``--epochs`` of its schedule, one seed), scores each on official
training digits 50,000-59,999 (never on the test set), and compares, knob by knob, the
configurations inside the narrowed range with those outside it: median development
accuracy and a two-sided Mann-Whitney U test over configurations.

    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/space_on_development.py
        [--configurations 20] [--epochs 4] [--seed 42] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import random
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_tuner
import numpy as np
from common import add_json_option, composed_dataset, official_idx_folder, packed, write_json
from epochs_or_seeds import train_member
from scipy.stats import mannwhitneyu

from src.data.development import development_digits
from src.model.hypermodel import CNNHyperModel
from src.stats import accuracy_with_interval

# The ranges before the narrowing (docs/decisions.md, "The improved space").
WIDEN = [
    "search_space.learning_rate.max=0.006",
    "search_space.dropout.max=0.3",
    "search_space.augment_translation=[0.05,0.1]",
]
# Each narrowed knob: the range the shipped space keeps, and whether a value lies inside it.
NARROWED = {
    "learning_rate": ("0.002-0.0035", lambda value: value <= 0.0035),
    "dropout": ("0.1-0.2", lambda value: value <= 0.2 + 1e-9),
    "augment_translation": ("0.05", lambda value: value == 0.05),
}


def sampled(hypermodel: CNNHyperModel, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` configurations drawn at random from the hypermodel's space."""
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)  # registers every knob (the space fixes the layer count)
    keras.backend.clear_session()
    draw = random.Random(seed)
    return [
        {knob.name: knob.random_sample(draw.randrange(2**31)) for knob in hp.space}
        for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configurations", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    add_json_option(parser)
    args = parser.parse_args()
    folder = official_idx_folder(parser)
    cfg, dataset = composed_dataset(["data=mnist_10k", "search_space=cnn_plus", *WIDEN])
    development = development_digits(cfg, folder)
    hypermodel = CNNHyperModel.from_config(cfg.search_space, cfg.training, dataset)
    rows = []
    for index, values in enumerate(sampled(hypermodel, args.configurations, args.seed)):
        model, seconds = train_member(cfg, values, dataset, args.seed, args.epochs)
        right = model.predict(development.images, verbose=0).argmax(axis=1) == development.labels
        keras.backend.clear_session()
        interval = accuracy_with_interval(int(right.sum()), len(right))
        shown = {knob: values[knob] for knob in NARROWED}
        print(f"{index + 1}/{args.configurations} {shown}: {interval} ({seconds:.0f} s)")
        rows.append(
            {
                "hyperparameters": values,
                "accuracy": interval.value,
                "errors": interval.errors,
                "train_s": round(seconds, 1),
                "right_bits": packed(right),
            }
        )
    print("| knob | kept range | configurations in / out | median in | median out | p |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    verdicts = {}
    for knob, (kept, inside) in NARROWED.items():
        scores = {True: [], False: []}
        for row in rows:
            scores[inside(row["hyperparameters"][knob])].append(row["accuracy"])
        p = (
            mannwhitneyu(scores[True], scores[False]).pvalue
            if scores[True] and scores[False]
            else None
        )
        medians = {side: float(np.median(v)) if v else None for side, v in scores.items()}
        verdicts[knob] = {
            "inside": len(scores[True]),
            "outside": len(scores[False]),
            "median_inside": medians[True],
            "median_outside": medians[False],
            "kept": kept,
            "mann_whitney_p": p,
        }
        print(
            f"| {knob} | {kept} | {len(scores[True])} / {len(scores[False])} | "
            + " | ".join("-" if m is None else f"{100 * m:.2f} %" for m in medians.values())
            + f" | {'-' if p is None else f'{p:.2g}'} |"
        )
    write_json(
        args.json,
        {
            "command": "bench/space_on_development.py "
            f"--configurations {args.configurations} --epochs {args.epochs} --seed {args.seed}",
            "widened": WIDEN,
            "rows": rows,
            "knobs": verdicts,
        },
    )


if __name__ == "__main__":
    main()
