"""How noisy one trial's score is: training-seed noise and the validation split's sampling error.

A search ranks trials by one validation accuracy each. This trains one configuration per
search space exactly as a trial of `make reproduce` trains it (same split of the bundled
sample, epochs, schedule, batch size), once per training seed, and prints:

- seed noise: the spread of the trial score (best epoch's validation accuracy, as Keras
  Tuner scores a trial) over the seeds: mean, standard deviation and range;
- sampling error: the binomial standard error of an accuracy on that many validation
  digits, and, as a check, the standard deviation of the accuracy of one trained model over
  bootstrap resamples of the validation digits.

Two trials whose scores differ by less than about twice the combined noise cannot be told
apart; that is what the search's `=` marks (``src.stats.indistinguishable``) estimate from
the sampling error alone.

    .venv/bin/python bench/trial_noise.py [--seeds 5] [--spaces cnn_plus cnn]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from common import add_json_option, composed_dataset, fixed_model, write_json
from configurations import IMPROVED_STAGE_CHOICE, SEED_STUDY_BEST
from omegaconf import OmegaConf

from src.model.backend import configure_backend

# One configuration per space: the improved-space stage's choice in `make reproduce`, and
# the seed study's best model on its own space.
CONFIGURATIONS = {
    "cnn_plus": ("study=cnn_plus", IMPROVED_STAGE_CHOICE),
    "cnn": ("study=cnn", SEED_STUDY_BEST),
}


def trial_scores(space_name: str, seeds: list[int]) -> tuple[list[float], np.ndarray, int]:
    """Each seed's trial score, the last model's per-digit hits, and the validation size."""
    study, values = CONFIGURATIONS[space_name]
    cfg, dataset = composed_dataset(["experiment=reproduce", f"+{study}"])
    training = OmegaConf.to_container(cfg.training, resolve=True)
    scores, hits = [], None
    for seed in seeds:
        configure_backend({**training, "seed": seed})
        hypermodel, hp, model = fixed_model(cfg, values, dataset)
        history = hypermodel.fit(
            hp,
            model,
            dataset.train.images,
            dataset.train.labels,
            validation_data=(dataset.val.images, dataset.val.labels),
            epochs=training["epochs"],
            batch_size=training["batch_size"],
            verbose=0,
        )
        scores.append(max(history.history["val_accuracy"]))
        predictions = model.predict(dataset.val.images, verbose=0).argmax(axis=1)
        hits = predictions == dataset.val.labels
        print(f"  {space_name} seed {seed}: trial score {scores[-1]:.4f}", flush=True)
    return scores, hits, len(dataset.val)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--spaces", nargs="+", default=["cnn_plus", "cnn"])
    add_json_option(parser)
    args = parser.parse_args()
    rows = []
    for space_name in args.spaces:
        scores, hits, total = trial_scores(space_name, list(range(42, 42 + args.seeds)))
        mean = statistics.mean(scores)
        binomial = (mean * (1 - mean) / total) ** 0.5
        rng = np.random.default_rng(0)
        bootstrap = [rng.choice(hits, size=total).mean() for _ in range(2000)]
        rows.append(
            (
                space_name,
                mean,
                statistics.stdev(scores),
                min(scores),
                max(scores),
                binomial,
                float(np.std(bootstrap)),
                total,
            )
        )
    print(f"\ntrial score noise, {args.seeds} training seeds per configuration")
    print(
        f"{'space':<10}{'mean':>8}{'seed SD':>9}{'min':>8}{'max':>8}{'sampling SE':>13}"
        f"{'bootstrap SD':>14}{'val digits':>12}"
    )
    for space_name, mean, sd, low, high, binomial, bootstrap, total in rows:
        print(
            f"{space_name:<10}{mean:>8.4f}{sd:>9.4f}{low:>8.4f}{high:>8.4f}{binomial:>13.4f}"
            f"{bootstrap:>14.4f}{total:>12}"
        )
    keys = ("space", "mean", "seed_sd", "min", "max", "sampling_se", "bootstrap_sd", "val_digits")
    write_json(
        args.json, {"seeds": args.seeds, "rows": [dict(zip(keys, r, strict=True)) for r in rows]}
    )


if __name__ == "__main__":
    main()
