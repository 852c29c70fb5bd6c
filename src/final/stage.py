"""The final stage: retrain the chosen configuration, test it once, hand it to the registry.

The seed study's protocol: the best trial's hyperparameters and its best epoch count,
retrained from scratch on train + validation, then evaluated once on the held-out test split
(``src.final.evaluation.evaluate``, a pure function of a model and a split), with the number
of errors and a 95 % Wilson interval. With ``final.seeds`` it is retrained once per training
seed and the spread of test accuracy across seeds is reported; the model of the *first* seed
is the one registered, a choice fixed before any test score is seen (picking the best-
scoring seed would select on the test set and overstate its accuracy). Figures,
``model_card.md`` and ``final.json`` go to ``<run folder>/final/``; with tracking on, a
``final`` child run holds them and the model is registered (``src.final.register``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.budget import RunBudget, plan_final
from src.data.dataset import Dataset
from src.final import report
from src.final.choose import COST_LIMITS, choose_trial
from src.final.evaluation import Evaluation, evaluate
from src.final.register import register_final_model
from src.final.result import FinalResult
from src.final.retrain import ensemble_of, train_and_test
from src.final.robustness import robustness
from src.model.backend import ScheduleFittedToTime
from src.model.cost import measure_cost
from src.model.hypermodel import CNNHyperModel
from src.search.budgeting import time_model
from src.search.results import SearchResult
from src.search.warm_start import model_hyperparameters, preferred_configuration
from src.stats import packed_bits
from src.tracking.final_run import close_final_run, log_final_run
from src.tracking.tracker import MLflowTracker

log = logging.getLogger(__name__)


def run_final_stage(
    cfg: DictConfig,
    dataset: Dataset,
    search: SearchResult,
    tracker: MLflowTracker | None = None,
    budget: RunBudget | None = None,
) -> FinalResult:
    """Retrain the chosen trial's configuration on train + validation, test it, register it.

    Args:
        cfg: The validated root config.
        dataset: The dataset the search ran on.
        search: The search's result (its best trial, or the one ``final.choose`` picks, is
            retrained).
        tracker: The search's MLflow tracker; None when tracking is off (nothing registered).
        budget: The run's time budget: the epochs and seeds shrink to fit what is left.

    Returns:
        The test metrics and the registry's decision.
    """
    start = time.perf_counter()
    training = OmegaConf.to_container(cfg.training, resolve=True)
    hypermodel = CNNHyperModel.from_config(cfg.search_space, cfg.training, dataset)
    examples = len(dataset.train) + len(dataset.val)
    preferred = preferred_configuration(cfg)
    limits = {key: cfg.final.get(key) for key in COST_LIMITS}
    chosen, chosen_by = choose_trial(search, cfg.final.choose, hypermodel, preferred, limits)
    log.info("final stage: retraining trial %s, %s", chosen.trial_id, chosen_by)
    values = model_hyperparameters(chosen.hyperparameters)
    epochs = cfg.final.epochs or (chosen.best_step + 1 if chosen.best_step is not None else None)
    epochs = epochs or training["epochs"]

    seeds = list(cfg.final.seeds or [training["seed"]])
    if budget is not None and budget.rate() is None:  # no search timed a model (from_results)
        _, seconds, digits = time_model(hypermodel, dataset.train, training["batch_size"], values)
        budget.observe_epoch(seconds, digits)
    plan = plan_final(
        budget,
        epochs,
        seeds,
        bool(cfg.final.ensemble),
        examples,
        # Epochs the user fixed are kept; else the schedule fills the time, up to its cap.
        None if cfg.final.epochs else cfg.final.max_epochs,
        chosen.trial_id,
        # Only where the seeds are the budget's to choose.
        ensemble_epochs=None if cfg.final.seeds else cfg.final.ensemble_epochs,
        max_members=cfg.final.max_members,
    )
    seeds = plan.seeds
    trained, fits = [], []
    for index, seed in enumerate(seeds):
        seed_training = {**training, "seed": seed}
        if plan.most_epochs is None:
            trained.append(train_and_test(hypermodel, values, dataset, seed_training, plan.epochs))
            continue
        # Testing, logging and registering keep their time; the epochs fit the rest.
        fitted = ScheduleFittedToTime(
            lambda: budget.left() - budget.final_overhead_s,
            plan.epochs,
            plan.most_epochs,
            models_after=len(seeds) - 1 - index,
        )
        fits.append(fitted)
        trained.append(
            train_and_test(
                hypermodel, values, dataset, seed_training, plan.most_epochs, fitted=fitted
            )
        )
    parts = _PartTimer(start)
    parts.done("training")  # each model tested as it was trained
    model, history, evaluation = trained[0]  # the first seed's model is the one registered
    epochs = len(history["loss"])  # a partial last epoch counts as one
    note = plan.note
    if fits and fits[0].trained_epochs != plan.epochs:
        fitted_note = (
            f"{fits[0].trained_epochs:.2f} epochs ({fits[0].step} steps), not the planned "
            f"{plan.epochs}, fitted to their time"
        )
        log.info("final stage: %s", fitted_note)
        note = f"{note}; {fitted_note}" if note else fitted_note
    if plan.ensemble:
        model = ensemble_of([member for member, _, _ in trained], seeds, hypermodel.name)
        evaluation = evaluate(model, dataset.test, dataset.num_classes)
    parts.done("testing")
    damaged = robustness(model, dataset.test)
    log.info(
        "final stage: on %d damaged test digits, %.4f on average (clean %.4f); %s",
        damaged.digits,
        damaged.mean,
        damaged.clean,
        ", ".join(f"{kind} {value:.3f}" for kind, value in damaged.accuracy.items()),
    )
    parts.done("robustness")
    interval = evaluation.interval
    final = FinalResult(
        test_accuracy=evaluation.accuracy,
        test_loss=evaluation.loss,
        test_errors=interval.errors,
        test_size=interval.total,
        test_accuracy_ci_low=interval.ci_low,
        test_accuracy_ci_high=interval.ci_high,
        per_class_accuracy=evaluation.per_class_accuracy,
        epochs=epochs,
        hyperparameters=values,
        seeds=seeds,
        seed_test_accuracies=[result.accuracy for _, _, result in trained],
        ensemble=plan.ensemble,
        budget_note=note,
        trial_id=chosen.trial_id,
        chosen_by=chosen_by,
        cost=measure_cost(model).to_dict(),
        robustness=damaged.to_dict(),
    )
    log.info(
        "final stage: test accuracy %s, loss %.4f%s",
        interval,
        final.test_loss,
        f"; over seeds {seeds}: mean {final.test_accuracy_mean:.4f}, "
        f"std {final.test_accuracy_std:.4f}"
        if len(seeds) > 1
        else "",
    )
    out = Path(cfg.paths.output_dir) / "final"
    out.mkdir(parents=True, exist_ok=True)
    figures = _draw_figures(out, history, evaluation, dataset, search, cfg)
    parts.done("reporting")
    if tracker is not None:
        log_final_run(tracker, final, history, figures)
        if cfg.final.register:
            register_final_model(cfg, tracker, model, final, evaluation, dataset)
        else:
            final.decision = "not registered (final.register=false)"
    parts.done("registering")
    final.wall_time_s = round(time.perf_counter() - start, 2)
    final.parts_s = parts.seconds
    log.info("final stage: %s", parts.describe())
    if budget is not None:
        budget.final_s = final.wall_time_s
        # What final_overhead_s keeps time for: where this exceeds it, the run overran.
        budget.final_after_training_s = round(final.wall_time_s - parts.seconds["training"], 2)
        final.budget = budget.to_dict()
        if tracker is not None:
            tracker.record_budget(final.budget)
    facts = _facts(cfg, final, dataset)
    # Per test digit, in order: anyone can recompute the interval and McNemar tests.
    facts["test_right_bits"] = packed_bits(evaluation.right)
    card = report.write_model_card(out / "model_card.md", facts)
    (out / "final.json").write_text(json.dumps(facts, indent=2) + "\n")
    if tracker is not None:
        close_final_run(tracker.client, final.run_id, [card, out / "final.json"])
    log.info("final stage: %s", final.decision)
    return final


class _PartTimer:
    """Seconds each part of the final stage took, each from the end of the one before."""

    def __init__(self, start: float) -> None:
        self._last = start
        self.seconds: dict[str, float] = {}

    def done(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] = round(now - self._last, 2)
        self._last = now

    def describe(self) -> str:
        return ", ".join(f"{part} {seconds:.1f} s" for part, seconds in self.seconds.items())


def _draw_figures(
    out: Path,
    history: dict[str, list[float]],
    evaluation: Evaluation,
    dataset: Dataset,
    search: SearchResult,
    cfg: DictConfig,
) -> list[Path]:
    """The final stage's four figures, written to ``out``."""
    test = dataset.test
    return [
        report.plot_learning_curves(history, out / "learning_curves.png"),
        report.plot_confusion_matrix(evaluation.confusion, out / "confusion_matrix.png"),
        report.plot_worst_misclassified(
            test.images, test.labels, evaluation.probabilities, out / "worst_misclassified.png"
        ),
        report.plot_trial_scores(
            [asdict(t) for t in search.trials],
            search.objective,
            out / "trial_scores.png",
            OmegaConf.to_container(cfg.search_space, resolve=True),
        ),
    ]


def _facts(cfg: DictConfig, final: FinalResult, dataset: Dataset) -> dict[str, Any]:
    """What ``final.json`` and the model card record."""
    return {
        **final.to_dict(),
        "model_name": cfg.final.model_name,
        "epochs_chosen_by": "final.epochs"
        if cfg.final.epochs
        else "the chosen trial's best epoch count",
        "tuner": cfg.tuner.name,
        "search_space": cfg.search_space.name,
        "data": dataset.describe(),
        # test: the official test set (reporting) | development: digits held out to choose by
        "evaluated_on": cfg.evaluate_on,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "model_uri": (
            f"models:/{cfg.final.model_name}/{final.model_version}" if final.model_version else None
        ),
    }
