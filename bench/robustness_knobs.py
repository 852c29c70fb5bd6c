"""Which augmentation knobs help a model hold up on damaged digits, judged on development digits.

Trains the shipped configuration (``conf/warm_start/default.json``'s first trial) on every
bundled digit with each arm's augmentation, then tests it on the development digits
(official training digits 50,000-59,999, `src.data.development`) clean and damaged nine
ways (`src.final.robustness`). The official test set is not read. Each arm reports its
clean accuracy with its interval, each kind's accuracy and their mean; McNemar's test
compares each arm's clean and mean-damaged correctness with the first arm's.

    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/robustness_knobs.py \\
        --json outputs/bench/robustness_knobs.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import add_json_option, composed_dataset, fixed_model, official_idx_folder, write_json
from omegaconf import OmegaConf

from src.data.development import development_digits
from src.final.robustness import CORRUPTIONS, corrupted
from src.model.backend import configure_backend
from src.search.warm_start import model_hyperparameters
from src.stats import accuracy_with_interval, mcnemar

SHIPPED = Path("conf/warm_start/default.json")
# Each arm: the augmentation knobs it sets over the shipped configuration.
ARMS = {
    "no augmentation": {"augment_translation": 0.0, "augment_zoom": 0.0},
    "default (shift 0.05, zoom 0.1)": {},
    "default + noise 0.2": {"augment_noise": 0.2},
}


def _right(model: Any, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, whether ``model`` classifies it right."""
    return model.predict(images, batch_size=512, verbose=0).argmax(axis=1) == labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    add_json_option(parser)
    args = parser.parse_args()
    folder = official_idx_folder(parser)
    cfg, dataset = composed_dataset(["data=mnist_10k"])
    development = development_digits(cfg, folder)
    shipped = json.loads(SHIPPED.read_text())["trials"][0]["hyperparameters"]
    images = np.concatenate([dataset.train.images, dataset.val.images])
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    training = {**OmegaConf.to_container(cfg.training, resolve=True), "seed": args.seed}
    rows, first = [], None
    print("| arm | clean [95 %] | mean damaged | p clean vs first | p damaged vs first |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, knobs in ARMS.items():
        configure_backend(training)
        # The knob in the space too: a knob the space lacks is off whatever its value.
        arm_cfg, _ = composed_dataset(
            ["data=mnist_10k", *(f"++search_space.{k}={v}" for k, v in knobs.items())]
        )
        values = {**model_hyperparameters(shipped), **knobs}
        hypermodel, hp, model = fixed_model(arm_cfg, values, dataset)
        start = time.perf_counter()
        hypermodel.fit(hp, model, images, labels, epochs=args.epochs, batch_size=128, verbose=0)
        train_s = time.perf_counter() - start

        clean = _right(model, development.images, development.labels)
        damaged = {
            kind: _right(model, corrupted(development.images, kind), development.labels)
            for kind in CORRUPTIONS
        }
        every_damage = np.concatenate(list(damaged.values()))
        row: dict[str, Any] = {
            "arm": name,
            "knobs": values,
            "train_s": round(train_s, 1),
            "clean": accuracy_with_interval(int(clean.sum()), len(clean)).to_dict(),
            "damaged": {k: round(float(v.mean()), 4) for k, v in damaged.items()},
            "damaged_mean": round(float(every_damage.mean()), 4),
        }
        if first is None:
            first = (clean, every_damage)
        else:
            row["p_clean_vs_first"] = mcnemar(clean, first[0]).p_value
            row["p_damaged_vs_first"] = mcnemar(every_damage, first[1]).p_value
        rows.append(row)
        print(
            f"| {name} | {100 * row['clean']['value']:.2f} % "
            f"[{100 * row['clean']['ci_low']:.2f}, {100 * row['clean']['ci_high']:.2f}] "
            f"| {100 * row['damaged_mean']:.2f} % | {row.get('p_clean_vs_first', '-')} "
            f"| {row.get('p_damaged_vs_first', '-')} |",
            flush=True,
        )
    command = f"bench/robustness_knobs.py --epochs {args.epochs} --seed {args.seed}"
    write_json(args.json, {"command": command, "digits": "development", "rows": rows})


if __name__ == "__main__":
    main()
