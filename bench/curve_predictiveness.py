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
- in how many searches the trial that ended best (or one tied with it) was at or above
  the median of its search after epoch k, i.e. would have survived a median pruner's cut
  there.

With ``--replay SPEC ...`` it also replays each search's trials, in the order the search
ran them, through each Optuna pruner named (``tuner.pruner`` specs, built as the tuner
builds them) and reports the epochs it would have spent, against the unpruned search's,
and in how many searches the trial the unpruned search chose (its best score) would have
survived. It is a first estimate, made on validation curves alone, of what a pruner saves
and what it risks: a real pruned search differs after its first cut, since a guided
sampler then proposes other trials.

    .venv/bin/python bench/curve_predictiveness.py --store sqlite:///outputs/bench/matrix32/mlflow.db
        [sqlite:///another/mlflow.db ...] [--replay "{name: median, n_warmup_steps: 1}" ...]
    .venv/bin/python bench/curve_predictiveness.py   # make reproduce's store (mlruns/)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict

import optuna
import yaml
from common import add_json_option, fisher_interval, write_json
from mlflow import MlflowClient
from scipy.stats import spearmanr

from src.search.optuna.specs import make_pruner


def full_curves(clients: list[MlflowClient], metric: str) -> dict[tuple[str, int], dict[str, list]]:
    """The learning curves of completed trials that trained their search's whole schedule,
    grouped by (search space, epochs per trial) and then by search (parent run id), each
    search's trials in the order it ran them.

    Each curve comes with its trial's hyperparameters, so that a configuration several
    searches drew (trained alike, the same curve) counts once where trials are pooled.
    """
    parents: dict[str, dict] = {}
    groups: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for client in clients:
        _collect(client, metric, parents, groups)
    for searches in groups.values():
        for search in searches.values():
            search.sort(key=lambda entry: entry[0])
    return {
        key: {pid: [entry[1:] for entry in search] for pid, search in searches.items()}
        for key, searches in groups.items()
    }


def _collect(client: MlflowClient, metric: str, parents: dict, groups: dict) -> None:
    experiments = [e.experiment_id for e in client.search_experiments()]
    trials = client.search_runs(experiments, "tags.run_kind = 'trial'", max_results=50_000)
    for trial in trials:
        if trial.data.tags.get("trial_status") != "COMPLETED":
            continue
        parent_id = trial.data.tags["mlflow.parentRunId"]
        if parent_id not in parents:
            parents[parent_id] = client.get_run(parent_id).data.params
        params = parents[parent_id]
        if params.get("tuner.cv_folds", "1") != "1":
            continue  # one curve per fold, not one per trial
        pruned = any(k.startswith("tuner.pruner") and v != "None" for k, v in params.items())
        if pruned or params["tuner.name"] == "hyperband":
            continue  # its full-length trials are the early leaders only: a biased sample
        epochs = int(params["training.epochs"])
        history = {m.step: m.value for m in client.get_metric_history(trial.info.run_id, metric)}
        if sorted(history) != list(range(epochs)):
            continue  # early-stopped, or resumed: not the whole schedule
        key = (params["search_space.name"], epochs)
        configuration = tuple(sorted(trial.data.params.items()))
        curve = [history[step] for step in range(epochs)]
        groups[key][parent_id].append((int(trial.data.tags["trial_id"]), configuration, curve))


def report(groups: dict[tuple[str, int], dict[str, list]], metric: str) -> str:
    """A table per group: for each epoch k, the pooled rank correlation with the last epoch
    and how often each search's best trial would have survived a median cut at k."""
    lines = []
    for (space, epochs), searches in sorted(groups.items()):
        # Pooled, each configuration once; per search, every trial the search ran.
        curves = list(
            {config: curve for search in searches.values() for config, curve in search}.values()
        )
        searches = {pid: [curve for _, curve in search] for pid, search in searches.items()}
        if len(curves) < 5:
            lines.append(f"\n{space}, {epochs}-epoch trials: {len(curves)} full trials, too few")
            continue
        ranked = {pid: search for pid, search in searches.items() if len(search) >= 3}
        lines.append(
            f"\n{space}, {epochs}-epoch trials: {len(curves)} distinct full trials from "
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


def replay(searches: dict[str, list], spec: str) -> tuple[list[float], list[bool]]:
    """Replays each search's curves, in their order, through the pruner ``spec`` names.

    Returns, per search, the share of the unpruned epochs the pruner would have spent and
    whether the trial the unpruned search chose (the best score: its best epoch, as Keras
    Tuner scores a trial; any of several tied ones) would have trained to the end.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shares, kept = [], []
    for search in searches.values():
        curves = [curve for _, curve in search]
        # Optuna's own pruner over a study that sees the recorded curves epoch by epoch, as
        # src.search.optuna reports them (step = epoch - 1; a completed trial's value is its
        # best epoch).
        pruner = make_pruner(yaml.safe_load(spec)) or optuna.pruners.NopPruner()
        study = optuna.create_study(direction="maximize", pruner=pruner)
        spent, survivors = 0, set()
        for index, curve in enumerate(curves):
            trial = study.ask()
            for step, value in enumerate(curve):
                trial.report(value, step)
                spent += 1
                if trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, max(curve))
                survivors.add(index)
        # Kept: a trial with the best score (any of several tied ones) trained to the end.
        best = max(max(curve) for curve in curves)
        kept.append(any(max(curves[index]) == best for index in survivors))
        shares.append(spent / sum(len(curve) for curve in curves))
    return shares, kept


def _best_survives_median(search: list[list[float]], k: int) -> bool:
    # Several trials can end on the same score (900-1,000 validation digits); a cut keeps
    # the best if it keeps any of them. (Taking one of them would depend on trial order.)
    last = max(curve[-1] for curve in search)
    median = statistics.median(curve[k] for curve in search)
    return any(curve[k] >= median for curve in search if curve[-1] == last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        nargs="+",
        default=["sqlite:///mlruns/mlflow.db"],
        help="MLflow tracking URIs to read (their trials pooled)",
    )
    parser.add_argument("--metric", default="val_accuracy")
    parser.add_argument(
        "--replay", nargs="*", default=[], metavar="SPEC", help="tuner.pruner specs to replay"
    )
    add_json_option(parser)
    args = parser.parse_args()
    groups = full_curves([MlflowClient(uri) for uri in args.store], args.metric)
    if not groups:
        sys.exit(f"no completed full-length trial curves of {args.metric!r} in {args.store}")
    print(report(groups, args.metric))
    replays = []
    for (space, epochs), searches in sorted(groups.items()):
        if args.replay:
            print(f"\n{space}, {epochs}-epoch trials, {len(searches)} searches replayed:")
        for spec in args.replay:
            shares, kept = replay(searches, spec)
            print(
                f"{spec:<62} epochs {100 * statistics.median(shares):>3.0f} % (range "
                f"{100 * min(shares):.0f}-{100 * max(shares):.0f} %), "
                f"choice kept in {sum(kept)} of {len(kept)}"
            )
            replays.append(
                {
                    "space": space,
                    "epochs": epochs,
                    "pruner": spec,
                    "epoch_shares": shares,
                    "choice_kept": kept,
                }
            )
    write_json(
        args.json,
        {"metric": args.metric, "report": report(groups, args.metric), "replays": replays},
    )


if __name__ == "__main__":
    main()
