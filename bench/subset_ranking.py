"""Do trials on a subset of the training digits rank configurations as full-data trials do?

``tuner.search_examples`` lets a search's trials train on a stratified subset of the
training digits (the final stage always trains on all of them). This draws ``--configs``
configurations of a search space at random (Keras Tuner's own sampling of each
hyperparameter, conditions respected), trains each as a trial trains (``training.epochs``,
the cosine schedule, scored by its best epoch's validation accuracy) once on the subset and
once on every training digit, both scored on the same validation split, and reports
Spearman's rank correlation of the two scores with its 95 % interval, and whether the
subset's best configuration is the full data's best or one the validation digits cannot
tell apart from it. Full MNIST (54,000 training, 6,000 validation digits) by default, from
the IDX files ``MNIST_IDX_FOLDER`` names.

    MNIST_IDX_FOLDER=../shared/datasets/mnist .venv/bin/python bench/subset_ranking.py
        [--configs 8] [--subset 10000] [--seed 1] [--space default] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import keras_tuner
from common import add_json_option, composed_dataset, fisher_interval, fixed_model, write_json
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from src.model.backend import configure_backend
from src.model.hypermodel import CNNHyperModel
from src.search.budgeting import search_subset
from src.stats import accuracy_with_interval, indistinguishable


def draw_configurations(hypermodel: CNNHyperModel, count: int, seed: int) -> list[dict]:
    """``count`` distinct configurations, each hyperparameter drawn as Keras Tuner's random
    search draws it (``random_sample``); one drawn only where its conditions hold (a layer's
    filters where the layer exists)."""
    rng = random.Random(seed)
    drawn_configurations: list[dict] = []
    while len(drawn_configurations) < count:
        values: dict = {}
        while True:  # draw what the build asks for, until it asks for nothing new
            hp = keras_tuner.HyperParameters()
            hp.values = dict(values)
            hypermodel.build(hp)
            keras.backend.clear_session()
            new = [p for p in hp.space if p.name not in values and hp.is_active(p)]
            if not new:
                break
            for parameter in new:
                values[parameter.name] = parameter.random_sample(rng.randrange(2**31))
        active = {k: v for k, v in hp.values.items() if k in values}
        if active not in drawn_configurations:
            drawn_configurations.append(active)
    return drawn_configurations


def trial_score(cfg, dataset, values: dict, train) -> tuple[float, float]:
    """A trial's score (its best epoch's validation accuracy) and seconds, as a trial trains."""
    training = OmegaConf.to_container(cfg.training, resolve=True)
    configure_backend(training)
    hypermodel, hp, model = fixed_model(cfg, values, dataset)
    start = time.perf_counter()
    history = hypermodel.fit(
        hp,
        model,
        train.images,
        train.labels,
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        validation_data=(dataset.val.images, dataset.val.labels),
        verbose=0,
    ).history
    keras.backend.clear_session()
    return max(history["val_accuracy"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--subset", type=int, default=10_000, help="tuner.search_examples")
    parser.add_argument("--seed", type=int, default=1, help="of the configurations' draw")
    parser.add_argument("--space", default="default", help="a conf/search_space/ option")
    parser.add_argument("--data", default="mnist", choices=["mnist", "mnist_10k"])
    add_json_option(parser)
    args = parser.parse_args()
    data = [f"data={args.data}", f"search_space={args.space}"]
    if args.data == "mnist":
        data.append("data.fallback=null")  # full MNIST, never the bundled sample
    cfg, dataset = composed_dataset(data)
    hypermodel = CNNHyperModel.from_config(cfg.search_space, cfg.training, dataset)
    configurations = draw_configurations(hypermodel, args.configs, args.seed)
    subset = search_subset(dataset.train, args.subset, cfg.data.split_seed)
    print(
        f"{len(subset)} of {len(dataset.train)} training digits against all of them, "
        f"{len(dataset.val)} validation digits, {cfg.training.epochs} epochs a trial"
    )
    print("| # | configuration | subset score | full score | subset s | full s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    rows = []
    for number, values in enumerate(configurations):
        on_subset, subset_s = trial_score(cfg, dataset, values, subset)
        on_full, full_s = trial_score(cfg, dataset, values, dataset.train)
        rows.append(
            {
                "configuration": values,
                "subset_score": on_subset,
                "full_score": on_full,
                "subset_s": round(subset_s, 1),
                "full_s": round(full_s, 1),
            }
        )
        print(
            f"| {number} | {values} | {on_subset:.4f} | {on_full:.4f} | {subset_s:.0f} "
            f"| {full_s:.0f} |",
            flush=True,
        )
    subset_scores = [row["subset_score"] for row in rows]
    full_scores = [row["full_score"] for row in rows]
    rho = float(spearmanr(subset_scores, full_scores).statistic)
    low, high = fisher_interval(rho, len(rows))
    size = len(dataset.val)
    best_full = max(full_scores)
    picked = rows[subset_scores.index(max(subset_scores))]["full_score"]
    tied = indistinguishable(
        accuracy_with_interval(round(picked * size), size),
        accuracy_with_interval(round(best_full * size), size),
    )
    print(f"Spearman rho {rho:.2f} [{low:.2f}, {high:.2f}] over {len(rows)} configurations")
    print(
        f"the subset's best scores {picked:.4f} on full data, the full data's best "
        f"{best_full:.4f}: {'tied (cannot be told apart)' if tied else 'worse'}"
    )
    write_json(
        args.json,
        {
            "subset": len(subset),
            "train": len(dataset.train),
            "val": size,
            "epochs": cfg.training.epochs,
            "rows": rows,
            "spearman": rho,
            "spearman_ci": [low, high],
            "subset_best_full_score": picked,
            "full_best_score": best_full,
            "subset_best_tied_with_full_best": tied,
        },
    )


if __name__ == "__main__":
    main()
