"""What the oracle itself costs per trial, as a search grows: Gaussian process against TPE.

No training: each oracle runs ``--trials`` trials over the improved space's
hyperparameters (as the CNN hypermodel declares them, conditional filters included) with a
made-up score, through the same hooks a tuner calls (``create_trial``, ``update_trial`` per
epoch, ``end_trial``). It times each trial's oracle calls and prints the cost at a few
points of the search for Keras Tuner's Bayesian oracle (a Gaussian process refitted on
every trial) and `src.search.optuna.oracle.OptunaOracle` with TPE (with and without a median
pruner, which also reads the study every epoch). In the distributed mode these calls run
on the chief, one at a time, so this is also what every worker waits for per trial.

    .venv/bin/python bench/oracle_cost.py [--trials 300] [--epochs 10]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time

import keras_tuner
from common import add_json_option, write_json
from keras_tuner.engine.trial import TrialStatus

from src.config.compose import compose_config
from src.model.hypermodel import CNNHyperModel
from src.search.optuna.oracle import OptunaOracle
from src.search.optuna.tuner import enable_pruning

CHECKPOINTS = (10, 50, 100, 200, 300, 500, 1000)


def improved_space() -> keras_tuner.HyperParameters:
    """The improved space's hyperparameters, declared by the real hypermodel."""
    from omegaconf import OmegaConf

    space = OmegaConf.to_container(compose_config(["search_space=cnn_plus"]).search_space)
    hp = keras_tuner.HyperParameters()
    CNNHyperModel(space, (28, 28, 1), 10).build(hp)
    return hp


def made_up_curve(values: dict, epochs: int) -> list[float]:
    quality = 0.99 - 0.02 * abs(math.log10(values["learning_rate"]) - math.log10(0.004))
    return [quality * (1 - 0.4 ** (epoch + 1)) for epoch in range(epochs)]


def time_oracle(oracle: keras_tuner.Oracle, trials: int, epochs: int) -> list[float]:
    """Seconds of oracle calls per trial."""
    costs = []
    for _ in range(trials):
        start = time.perf_counter()
        trial = oracle.create_trial("tuner0")
        spent = time.perf_counter() - start
        if trial.status != TrialStatus.RUNNING:
            break
        for epoch, value in enumerate(made_up_curve(trial.hyperparameters.values, epochs)):
            start = time.perf_counter()
            stopped = oracle.update_trial(trial.trial_id, {"val_accuracy": value}, step=epoch)
            spent += time.perf_counter() - start
            if stopped.status == TrialStatus.STOPPED:
                break
        trial.status = TrialStatus.COMPLETED
        start = time.perf_counter()
        oracle.end_trial(trial)
        costs.append(spent + time.perf_counter() - start)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=10)
    add_json_option(parser)
    args = parser.parse_args()
    space = improved_space()
    objective = keras_tuner.Objective("val_accuracy", "max")
    oracles = {
        "bayesian (GP)": lambda: keras_tuner.oracles.BayesianOptimizationOracle(
            objective=objective, max_trials=args.trials, hyperparameters=space, seed=1
        ),
        "tpe": lambda: OptunaOracle(
            objective=objective, max_trials=args.trials, hyperparameters=space, seed=1
        ),
        "tpe + median pruner": lambda: OptunaOracle(
            objective=objective,
            max_trials=args.trials,
            hyperparameters=space,
            seed=1,
            pruner={"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2},
        ),
        "random + median pruner": lambda: _pruned_random(objective, args.trials, space),
    }
    points = [c for c in CHECKPOINTS if c <= args.trials]
    print(f"oracle ms per trial (mean of the 10 trials up to each point), {args.epochs} epochs")
    print(f"{'oracle':<24}" + "".join(f"{p:>9}" for p in points) + f"{'total s':>10}")
    figures = {}
    for name, make in oracles.items():
        with tempfile.TemporaryDirectory() as folder:
            oracle = make()
            oracle.verbose = 0  # Keras Tuner's own display, printed per trial
            oracle._set_project_dir(folder, "bench")
            costs = time_oracle(oracle, args.trials, args.epochs)
        row = [statistics.mean(costs[max(p - 10, 0) : p]) * 1000 for p in points if p <= len(costs)]
        print(f"{name:<24}" + "".join(f"{v:>9.1f}" for v in row) + f"{sum(costs):>10.1f}")
        sys.stdout.flush()
        figures[name] = {
            "ms_per_trial_at": dict(zip(points, row, strict=False)),
            "total_s": sum(costs),
        }
    write_json(args.json, {"trials": args.trials, "epochs": args.epochs, "oracles": figures})


def _pruned_random(objective, trials, space):
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=objective, max_trials=trials, hyperparameters=space, seed=1
    )
    enable_pruning(oracle, {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2})
    return oracle


if __name__ == "__main__":
    main()
