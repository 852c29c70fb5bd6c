"""Do a trial's early epochs predict its last one? What a pruner bets on, read from MLflow.

A pruner (``tuner.pruner=median``, Hyperband's brackets) stops trials whose score after a
few epochs is low, betting that they would also have ended low. This script measures the
bet on searches already tracked: it reads every trial's learning curve from an MLflow
store (the per-epoch metrics the tracker logs), keeps the trials that trained the whole
schedule, and for each epoch k reports

- Spearman's rank correlation between the trials' scores after epoch k and after the last
  epoch (pooled over the searches of one space and schedule), with a 95 % interval (Fisher
  z); near 1: an early cut keeps the trials that would have ended best; near 0: it cuts by
  chance;
- in how many searches the trial that ended best was at or above the median of its
  search after epoch k, i.e. would have survived a median pruner's cut there.

    .venv/bin/python bench/curve_predictiveness.py --store sqlite:///outputs/bench/matrix32/mlflow.db
    .venv/bin/python bench/curve_predictiveness.py   # make reproduce's store (mlruns/)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlflow import MlflowClient
from scipy.stats import spearmanr


def full_curves(client: MlflowClient, metric: str) -> dict[tuple[str, int], dict[str, list]]:
    """The learning curves of completed trials that trained their search's whole schedule,
    grouped by (search space, epochs per trial) and then by search (parent run id)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    trials = client.search_runs(experiments, "tags.run_kind = 'trial'", max_results=50_000)
    parents: dict[str, dict] = {}
    groups: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for trial in trials:
        if trial.data.tags.get("trial_status") != "COMPLETED":
            continue
        parent_id = trial.data.tags["mlflow.parentRunId"]
        if parent_id not in parents:
            parents[parent_id] = client.get_run(parent_id).data.params
        params = parents[parent_id]
        if params.get("tuner.cv_folds", "1") != "1":
            continue  # one curve per fold, not one per trial
        epochs = int(params["training.epochs"])
        history = {m.step: m.value for m in client.get_metric_history(trial.info.run_id, metric)}
        if sorted(history) != list(range(epochs)):
            continue  # a Hyperband round that trained part of the schedule, or resumed
        key = (params["search_space.name"], epochs)
        groups[key][parent_id].append([history[step] for step in range(epochs)])
    return groups


def fisher_interval(rho: float, n: int) -> tuple[float, float]:
    """95 % interval of a Spearman correlation from n pairs (Fisher z, Bonett-Wright's
    standard error for ranks)."""
    if n < 4 or abs(rho) >= 1:
        return (rho, rho)
    half = 1.96 * math.sqrt(1 + rho**2 / 2) / math.sqrt(n - 3)
    z = math.atanh(rho)
    return (math.tanh(z - half), math.tanh(z + half))


def report(groups: dict[tuple[str, int], dict[str, list]], metric: str) -> str:
    """A table per group: for each epoch k, the pooled rank correlation with the last epoch
    and how often each search's best trial would have survived a median cut at k."""
    lines = []
    for (space, epochs), searches in sorted(groups.items()):
        curves = [curve for search in searches.values() for curve in search]
        if len(curves) < 5:
            lines.append(f"\n{space}, {epochs}-epoch trials: {len(curves)} full trials, too few")
            continue
        ranked = {pid: search for pid, search in searches.items() if len(search) >= 3}
        lines.append(
            f"\n{space}, {epochs}-epoch trials: {len(curves)} full trials from "
            f"{len(searches)} searches ({metric})"
        )
        lines.append(
            f"{'after epoch':>12}{'rho with last':>15}{'95 % interval':>18}"
            f"{'best survives median cut':>27}"
        )
        last = [curve[-1] for curve in curves]
        for k in range(epochs - 1):
            early = [curve[k] for curve in curves]
            rho = float(spearmanr(early, last).statistic)
            low, high = fisher_interval(rho, len(curves))
            survived = sum(_best_survives_median(search, k) for search in ranked.values())
            lines.append(
                f"{k + 1:>12}{rho:>+15.2f}{f'[{low:+.2f}, {high:+.2f}]':>18}"
                f"{f'{survived} of {len(ranked)}':>27}"
            )
    return "\n".join(lines)


def _best_survives_median(search: list[list[float]], k: int) -> bool:
    best = max(search, key=lambda curve: curve[-1])
    return best[k] >= statistics.median(curve[k] for curve in search)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", default="sqlite:///mlruns/mlflow.db", help="MLflow tracking URI to read"
    )
    parser.add_argument("--metric", default="val_accuracy")
    args = parser.parse_args()
    client = MlflowClient(args.store)
    groups = full_curves(client, args.metric)
    if not groups:
        sys.exit(f"no completed full-length trial curves of {args.metric!r} in {args.store}")
    print(report(groups, args.metric))


if __name__ == "__main__":
    main()
