"""The final stage's MLflow run: its metrics, figures and files, and the registry's decision.

Every run write of the project is in ``src.tracking``: the search and its trials in
``tracker``, the ``final`` child run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from src.tracking.records import MAX_TAG_LENGTH, now_ms
from src.tracking.tracker import MLflowTracker

if TYPE_CHECKING:  # the final stage imports this module, not the other way round
    from src.final.result import FinalResult
    from src.registry.promote import Promotion


def log_final_run(
    tracker: MLflowTracker,
    final: FinalResult,
    history: dict[str, list[float]],
    figures: list[Path],
) -> None:
    """Open the ``final`` run under the search's parent and log what was measured."""
    client = tracker.client
    run = client.create_run(
        tracker.experiment_id,
        run_name="final",
        tags={MLFLOW_PARENT_RUN_ID: tracker.parent_run_id, "run_kind": "final"},
    )
    final.run_id = run.info.run_id
    now = now_ms()
    params = [Param(name, str(value)) for name, value in final.hyperparameters.items()]
    params.append(Param("final_epochs", str(final.epochs)))
    params.append(Param("final_trial_id", str(final.trial_id)))
    params.append(Param("final_chosen_by", final.chosen_by[:500]))
    params.append(Param("final_seeds", ",".join(map(str, final.seeds))))
    headline = [
        Metric(name, float(value), now, 0)
        for name, value in {
            "test_accuracy": final.test_accuracy,
            "test_loss": final.test_loss,
            "test_errors": final.test_errors,
            "test_accuracy_ci_low": final.test_accuracy_ci_low,
            "test_accuracy_ci_high": final.test_accuracy_ci_high,
            "test_accuracy_mean": final.test_accuracy_mean,
            "test_accuracy_std": final.test_accuracy_std,
        }.items()
    ]
    metrics = [*headline]
    metrics += [
        Metric(f"cost_{name}", float(value), now, 0) for name, value in (final.cost or {}).items()
    ]
    if final.robustness:
        damaged = {**final.robustness["accuracy"], "mean": final.robustness["mean"]}
        metrics += [
            Metric(f"corrupted_accuracy_{kind}", float(value), now, 0)
            for kind, value in damaged.items()
        ]
    metrics += [
        Metric(f"test_accuracy_digit_{digit}", accuracy, now, 0)
        for digit, accuracy in enumerate(final.per_class_accuracy)
    ]
    metrics += [
        Metric(f"test_accuracy_seed_{seed}", accuracy, now, 0)
        for seed, accuracy in zip(final.seeds, final.seed_test_accuracies, strict=True)
    ]
    metrics += [
        Metric(f"final_{name}", float(value), now, epoch)
        for name, values in history.items()
        for epoch, value in enumerate(values)
    ]
    client.log_batch(final.run_id, metrics=metrics, params=params)
    for figure in figures:
        client.log_artifact(final.run_id, str(figure))
    # The parent carries the headline figures too, so the search list shows them.
    client.log_batch(tracker.parent_run_id, metrics=headline)


def record_promotion(client: MlflowClient, run_id: str, outcome: Promotion) -> None:
    """Log the registry's decision and its evidence on the final run."""
    tags = [
        RunTag("registry.decision", outcome.decision[:MAX_TAG_LENGTH]),
        RunTag("registry.model_version", outcome.model_version),
        RunTag("registry.promoted", str(outcome.promoted).lower()),
    ]
    values: dict[str, float] = {}
    if outcome.champion_accuracy is not None:
        values["champion_test_accuracy"] = outcome.champion_accuracy.value
        values["champion_test_errors"] = outcome.champion_accuracy.errors
    if outcome.comparison is not None:
        values["mcnemar_only_challenger_right"] = outcome.comparison.only_challenger_right
        values["mcnemar_only_champion_right"] = outcome.comparison.only_champion_right
        values["mcnemar_p_value"] = outcome.comparison.p_value
    metrics = [Metric(key, float(value), now_ms(), 0) for key, value in values.items()]
    client.log_batch(run_id, metrics=metrics, tags=tags)


def close_final_run(client: MlflowClient, run_id: str, files: list[Path]) -> None:
    """Attach the final stage's last files (model card, ``final.json``) and end its run."""
    for file in files:
        client.log_artifact(run_id, str(file))
    client.set_terminated(run_id, "FINISHED")
