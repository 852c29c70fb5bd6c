"""Which tuner wins under a budget of training epochs, measured by what the user gets.

Runs each tuner variant (random, Bayesian, Hyperband, TPE, TPE with a median pruner, ...)
on one search space of `make reproduce` (its data, split and training settings), from
several tuner seeds, each search stopped once it has trained ``--budget-epochs`` epochs
(or after ``--trials`` trials, to compare the epochs a pruner saves), followed by the
final stage as the study sets it up (its epochs, seeds and ensemble: the chosen
configuration retrained on train + validation and scored once on the official
10,000-digit test set; ``--set`` overrides any of it). For each run it records:

- the anytime curve: the best validation score so far against cumulative epochs and wall
  time (one point per trial end);
- the time (search only) to first reach ``--threshold`` on validation, and the official
  test accuracy of the configuration the search chose, after the final stage.

It prints a table (one row per variant: medians over seeds of epochs, search and total
time, test accuracy and its spread across seeds), writes ``tuner_efficiency.json`` and
``tuner_efficiency.png`` into ``--out``, and logs every curve to MLflow (experiment
``tuner-efficiency`` in ``--out``'s own store; nothing is registered). Every trial's
learning curve is in that store too: ``bench/curve_predictiveness.py --store
sqlite:///<out>/mlflow.db`` measures how well early epochs predict the last one.

    .venv/bin/python bench/tuner_efficiency.py [--space cnn_plus|cnn] [--seeds 3]
        [--budget-epochs 40 | --trials N] [--variants random bayesian tpe tpe+median]
        [--out DIR] [--set OVERRIDE ...]
    .venv/bin/python bench/tuner_efficiency.py --smoke   # a minute: tiny data, to check it runs
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mlflow import MlflowClient
from omegaconf import open_dict

from src.config.compose import compose_config
from src.interrupts import interrupt
from src.pipeline import run_pipeline
from src.search.observers import TrialObserver

MEDIAN = "{name: median, n_startup_trials: 2, n_warmup_steps: 2}"
# ASHA: after epochs 2 and 4 (Optuna's steps 1 and 3), a trial goes on only if it is in the
# top third of the trials that reached that epoch.
ASHA = "{name: successive_halving, min_resource: 1, reduction_factor: 3}"
VARIANTS = {
    "random": ["tuner=random"],
    "bayesian": ["tuner=bayesian", "tuner.num_initial_points=3"],
    "hyperband": ["tuner=hyperband"],
    "tpe": ["tuner=tpe"],
    "tpe+median": ["tuner=tpe", f"tuner.pruner={MEDIAN}"],
    "tpe+asha": ["tuner=tpe", f"tuner.pruner={ASHA}"],
    "random+median": ["tuner=random", f"tuner.pruner={MEDIAN}"],
    "tpe, val_loss": ["tuner=tpe", "tuner.objective=val_loss"],
    "tpe+median, val_loss": ["tuner=tpe", f"tuner.pruner={MEDIAN}", "tuner.objective=val_loss"],
}
SMOKE = [
    "data.max_train_examples=600",
    "training.epochs=2",
    "final.epochs=1",
    "search_space.filters=[8,16]",
]


class EpochBudget(TrialObserver):
    """Stops the search once it has trained ``budget`` epochs (None: never), and records the
    anytime curve.

    Epochs are counted as Keras trains them (every epoch of every trial, pruned or
    early-stopped ones included); the trial that crosses the budget finishes.
    """

    def __init__(self, budget: int | None, objective: str) -> None:
        self.budget = budget
        self.maximise = not objective.endswith("loss")
        self.epochs = 0
        self.best: float | None = None
        self.curve: list[dict] = []
        self.start = time.perf_counter()

    def on_search_begin(self, tuner) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, tuner, trial, epoch, logs) -> None:
        self.epochs += 1

    def on_trial_end(self, tuner, trial) -> None:
        scored = tuner.oracle.get_trial(trial.trial_id)
        if scored.status == "COMPLETED" and scored.score is not None:
            better = self.best is None or (
                scored.score > self.best if self.maximise else scored.score < self.best
            )
            self.best = scored.score if better else self.best
        self.curve.append(
            {"epochs": self.epochs, "seconds": time.perf_counter() - self.start, "best": self.best}
        )
        if self.budget is not None and self.epochs >= self.budget:
            tuner.oracle.max_trials = len(tuner.oracle.trials)  # the next trial is refused


def run_once(variant: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    folder = out / "runs" / f"{variant.replace(' ', '').replace(',', '_')}-{seed}"
    overrides = [
        "experiment=reproduce",
        f"+study={args.space}",
        *VARIANTS[variant],
        # The epoch budget ends the search (Hyperband: its own budget, capped too), or a
        # fixed number of trials (--trials), to compare the epochs each variant spends.
        f"tuner.max_trials={args.trials or 1000}",
        f"tuner.seed={seed}",
        f"mlflow.tracking_uri=sqlite:///{out.resolve()}/mlflow.db",
        "mlflow.experiment_name=tuner-efficiency-runs",
        "final.register=false",  # the final stage otherwise as the study sets it up
        "training.verbose=0",
        *(SMOKE if args.smoke else []),
        *args.set,
    ]
    cfg = compose_config(overrides, output_dir=folder)
    if cfg.tuner.name != "bayesian":  # the study's setting for its own (Bayesian) tuner
        with open_dict(cfg):
            cfg.tuner.pop("num_initial_points", None)
    objective = str(cfg.tuner.objective)
    budget = EpochBudget(None if args.trials else args.budget_epochs, objective)
    start = time.perf_counter()
    result = run_pipeline(cfg, observers=[budget])
    total = time.perf_counter() - start
    reached = None
    if budget.maximise:  # a threshold on accuracy; none for a loss objective
        reached = next(
            (p["seconds"] for p in budget.curve if (p["best"] or 0) >= args.threshold), None
        )
    return {
        "variant": variant,
        "seed": seed,
        "objective": objective,
        "epochs": budget.epochs,
        "trials": len(result.search.trials),
        "pruned": (result.search.pruning or {}).get("pruned", 0),
        "search_s": result.search.wall_time_s,
        "total_s": total,
        "search_s_to_threshold": reached,
        "best_validation": budget.best,
        "test_accuracy": result.final.test_accuracy,
        "test_interval": [result.final.test_accuracy_ci_low, result.final.test_accuracy_ci_high],
        "final_epochs": result.final.epochs,
        "final_s": result.final.wall_time_s,
        "seed_test_accuracies": result.final.seed_test_accuracies,
        "chosen": result.final.hyperparameters,
        "curve": budget.curve,
    }


def log_to_mlflow(runs: list[dict], out: Path) -> None:
    client = MlflowClient(f"sqlite:///{out.resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("tuner-efficiency")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("tuner-efficiency")
    )
    for run in runs:
        logged = client.create_run(experiment_id, run_name=f"{run['variant']} seed {run['seed']}")
        run_id = logged.info.run_id
        client.set_tag(run_id, "variant", run["variant"])
        for point in run["curve"]:
            if point["best"] is not None:
                client.log_metric(run_id, "best_validation", point["best"], step=point["epochs"])
                client.log_metric(run_id, "search_seconds", point["seconds"], step=point["epochs"])
        client.log_metric(run_id, "test_accuracy", run["test_accuracy"])
        client.log_metric(run_id, "total_seconds", run["total_s"])
        client.set_terminated(run_id)


def plot(runs: list[dict], path: Path, objective: str) -> None:
    figure, (by_epochs, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = {}
    for run in runs:
        if run["objective"] != objective:
            continue  # another objective's scale (val_loss): its test accuracy is in the table
        points = [p for p in run["curve"] if p["best"] is not None]
        colour = colours.setdefault(run["variant"], f"C{len(colours)}")
        label = run["variant"] if run["seed"] == min(r["seed"] for r in runs) else None
        kwargs = {"color": colour, "label": label, "drawstyle": "steps-post", "alpha": 0.8}
        by_epochs.plot([p["epochs"] for p in points], [p["best"] for p in points], **kwargs)
        by_time.plot([p["seconds"] / 60 for p in points], [p["best"] for p in points], **kwargs)
    by_epochs.set_xlabel("training epochs spent")
    by_time.set_xlabel("search wall time (min)")
    for axes in (by_epochs, by_time):
        axes.set_ylabel(f"best {objective} so far")
        axes.grid(alpha=0.3)
    by_epochs.legend()
    figure.suptitle("Anytime curves: one line per tuner seed")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def summary(runs: list[dict]) -> str:
    rows = [
        f"{'variant':<22}{'epochs':>7}{'trials':>7}{'pruned':>7}{'search':>8}{'total':>8}"
        f"{'to thr.':>8}{'test acc (median)':>19}{'spread':>8}"
    ]
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        tests = [r["test_accuracy"] for r in mine]
        reached = [r["search_s_to_threshold"] for r in mine if r["search_s_to_threshold"]]
        to_threshold = (
            f"{statistics.median(reached) / 60:.1f}m" if len(reached) == len(mine) else "-"
        )
        rows.append(
            f"{variant:<22}{statistics.median(r['epochs'] for r in mine):>7.0f}"
            f"{statistics.median(r['trials'] for r in mine):>7.0f}"
            f"{statistics.median(r['pruned'] for r in mine):>7.0f}"
            f"{statistics.median(r['search_s'] for r in mine) / 60:>7.1f}m"
            f"{statistics.median(r['total_s'] for r in mine) / 60:>7.1f}m{to_threshold:>8}"
            f"{100 * statistics.median(tests):>18.2f}%"
            f"{100 * (max(tests) - min(tests)):>7.2f}p"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cnn_plus", choices=["cnn", "cnn_plus"])
    parser.add_argument(
        "--variants", nargs="+", default=["random", "bayesian", "tpe", "tpe+median"]
    )
    parser.add_argument("--seeds", type=int, default=3, help="tuner seeds per variant")
    parser.add_argument("--first-seed", type=int, default=1, help="tuner seeds start here")
    parser.add_argument("--budget-epochs", type=int, default=40)
    parser.add_argument(
        "--trials",
        type=int,
        help="run this many trials instead of stopping at --budget-epochs (to compare the "
        "epochs a pruner saves at a fixed number of trials)",
    )
    parser.add_argument("--threshold", type=float, default=0.99, help="validation score to reach")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/tuner_efficiency"))
    parser.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides")
    parser.add_argument("--smoke", action="store_true", help="tiny data and budget")
    args = parser.parse_args()
    if args.smoke:
        args.budget_epochs, args.seeds = 4, 1
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    # As in src.run: SIGTERM ends the search like Ctrl-C, so that its MLflow runs end
    # KILLED in --out's store instead of staying RUNNING.
    signal.signal(signal.SIGTERM, interrupt)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for variant in args.variants:
            try:
                runs.append(run_once(variant, seed, args, args.out))
            except KeyboardInterrupt:
                kept = f"; {len(runs)} finished runs kept in {args.out}" if runs else ""
                sys.exit(f"interrupted during {variant} seed {seed}{kept}")
            print(
                f"{variant} seed {seed}: {runs[-1]['epochs']} epochs, "
                f"{runs[-1]['total_s'] / 60:.1f} min, test {100 * runs[-1]['test_accuracy']:.2f}%",
                flush=True,
            )
            (args.out / "tuner_efficiency.json").write_text(json.dumps(runs, indent=2) + "\n")
    log_to_mlflow(runs, args.out)
    plot(runs, args.out / "tuner_efficiency.png", "val_accuracy")
    budget = f"{args.trials} trials" if args.trials else f"budget {args.budget_epochs} epochs"
    print(f"\n{args.space}, {budget} per search, {args.seeds} seeds")
    print(summary(runs))
    print(f"written: {args.out}/tuner_efficiency.json, .png; MLflow: {args.out}/mlflow.db")


if __name__ == "__main__":
    main()
