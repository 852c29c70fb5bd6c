"""The search's side of a time budget: what trials train on, and what the budget can pay.

``src.budget`` keeps the clock; this module measures a model's cost before the first trial
(`plan_budget`), narrows the trials' digits (`search_subset`, ``tuner.search_examples``)
and says why a budgeted search ended.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner
from keras_tuner.engine.trial import TrialStatus
from omegaconf import DictConfig, OmegaConf

from src.budget import FINAL_OVERHEAD_S, VALIDATION_WEIGHT, RunBudget, fill_epochs
from src.data.dataset import Dataset, Split, stratified_subset
from src.errors import ConfigError
from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters
from src.search.results import SearchResult, TrialSummary
from src.search.warm_start import ranked_for, score_sign

log = logging.getLogger(__name__)

# The fewest digits a trial trains on when the budget narrows them: 50 of each class.
MIN_TRIAL_EXAMPLES = 500
# Batches timed to measure a model's cost before any trial (about a second here), and how
# many times: a shared machine's speed changes within seconds, and the median passes over
# one slow pass (not over a machine slow for minutes: docs/benchmarks.md, full MNIST at 3
# minutes on the slower machine).
CALIBRATION_STEPS = 8
CALIBRATION_PASSES = 3


@dataclass
class BudgetedStart:
    """What a budget decides before the first trial."""

    train: Split  # the digits trials train on
    # The warm start's configurations, best first; where no search runs without one, the
    # space's default configuration (no score).
    known: list[tuple[float | None, dict[str, Any]]]
    no_search_because: str | None  # set where the final stage retrains the best known one


def start_within_budget(
    budget: RunBudget, cfg: DictConfig, dataset: Dataset, hypermodel: CNNHyperModel, train: Split
) -> BudgetedStart:
    """Measure a model's cost (`plan_budget`), narrow the trials' digits where the budget
    asks, and say whether a search could add anything to the warm start's configurations
    (`search_adds_nothing`; a distributed chief's workers wait for trials, so it searches).

    Raises:
        ConfigError: `plan_budget`'s refusal of a budget too small for one epoch of each.
    """
    tuner_cfg = OmegaConf.to_container(cfg.tuner, resolve=True)
    space = OmegaConf.to_container(cfg.search_space, resolve=True)
    known = ranked_for(tuner_cfg.get("warm_start"), space, tuner_cfg["_target_"])
    train = plan_budget(budget, cfg, dataset, hypermodel, train, known[0][1] if known else None)
    if budget.trial_examples_note:
        log.info("budget: %s", budget.trial_examples_note)
    why = None
    if cfg.distributed.role is None:
        examples_per_epoch = len(train) + VALIDATION_WEIGHT * len(dataset.val)
        why = search_adds_nothing(budget, examples_per_epoch, cfg.training.epochs, len(known))
    if why and not known:
        known = [(None, default_configuration(hypermodel))]
    return BudgetedStart(train, known, why)


# The trial id of the space's default configuration where no search names one.
DEFAULT_TRIAL_ID = "default"


def default_configuration(hypermodel: CNNHyperModel) -> dict[str, Any]:
    """The search space's default point (each knob's first choice or lower bound): the
    model `plan_budget` measures where no warm start names one."""
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    keras.backend.clear_session()
    return dict(hp.values)


def search_subset(split: Split, examples: int | None, seed: int) -> Split:
    """The training digits trials train on (``tuner.search_examples``): a stratified subset,
    or all of them. The final stage always trains on every digit."""
    if examples is None or examples >= len(split):
        return split
    return Split(*stratified_subset(split.images, split.labels, examples, seed))


def plan_budget(
    budget: RunBudget,
    cfg: DictConfig,
    dataset: Dataset,
    hypermodel: CNNHyperModel,
    train: Split,
    first: Mapping[str, Any] | None = None,
) -> Split:
    """Tell the budget what the final stage will train, measure a model's cost, and return
    the digits trials train on: ``train``, or fewer where one epoch of it would not fit
    beside the final model's first epoch (at least `MIN_TRIAL_EXAMPLES`, stratified).

    ``first``: the configuration the search starts from (the warm start's best), whose
    model is the one measured; None: the search space's default model.

    Raises:
        ConfigError: the budget cannot pay for one epoch of a trial on `MIN_TRIAL_EXAMPLES`
            digits and one of the final model (and the final stage's fixed costs), refused
            before anything trains.
    """
    final, training = cfg.final, cfg.training
    budget.final_examples = len(dataset.train) + len(dataset.val)
    budget.final_epochs = final.epochs or training.epochs
    if final.fill_budget and final.reserve_epochs:
        # Kept for a final model that trains as many epochs as the time allows: the epochs
        # it needs to be at its best, which the search must not spend (docs/usage.md).
        reserve = min(final.reserve_epochs, final.max_epochs)
        budget.final_epochs = max(budget.final_epochs, reserve)
    budget.final_seeds = len(final.seeds or [training.seed]) if final.enabled else 0
    budget.final_overhead_s = FINAL_OVERHEAD_S if final.enabled else 0.0
    budget.final_share = final.budget_share if final.enabled else 0.0
    fill = fill_epochs(final) if final.enabled else None
    budget.final_most_epochs = max(fill, budget.final_epochs) if fill else None
    if fill and final.ensemble_epochs and not final.seeds:  # seeds given are the user's
        budget.final_most_epochs = max(budget.final_most_epochs, final.ensemble_epochs)
        budget.final_most_members = final.max_members
    if budget.seconds_per_example is None:
        budget.observe_epoch(*_calibrate(hypermodel, train, training.batch_size, first))
    per_example = budget.seconds_per_example
    final_epoch = per_example * budget.final_examples if final.enabled else 0.0
    # What one trial epoch may cost: half of what is left beside the final stage's minimum.
    room = (budget.left() - budget.final_overhead_s - final_epoch) / 2
    affordable = int(room // per_example) if room > 0 else 0
    if affordable < min(MIN_TRIAL_EXAMPLES, len(train)):
        least = per_example * min(MIN_TRIAL_EXAMPLES, len(train)) * 2
        least += budget.final_overhead_s + final_epoch
        raise ConfigError(
            f"budget={cfg.budget}: one epoch of a trial and one of the final model need about "
            f"{least:.0f} s on this machine ({budget.left():.0f} s left); give "
            f"budget={math.ceil(least + budget.spent()) + 1}s or more"
        )
    if affordable < len(train):
        budget.trial_examples_note = (
            f"trials train on {affordable} of {len(train)} digits: one epoch of all of them "
            "would not fit beside the final model"
        )
        return search_subset(train, affordable, cfg.data.split_seed)
    return train


def _calibrate(
    hypermodel: CNNHyperModel,
    train: Split,
    batch_size: int,
    values: Mapping[str, Any] | None = None,
) -> tuple[float, int]:
    """Seconds and examples of a short training run of one configuration's model (the
    space's default where ``values`` is None), the median of `CALIBRATION_PASSES` after
    one of tracing: the budget's first cost estimate, before any trial.

    Timed through ``fit``, as trials and the final model train: ``train_on_batch`` adds a
    dispatch per call that made three steps measure about twice a fitted epoch's rate
    (docs/benchmarks.md), and a budget that retrains a known configuration without a search
    plans the final model on this figure alone.
    """
    hp = fixed_hyperparameters(dict(values)) if values else keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    batch = min(batch_size, len(train))
    # Whole batches only: a last, smaller batch would trace the step again.
    count = batch * max(1, min(CALIBRATION_STEPS, len(train) // batch))
    images, labels = train.images[:count], train.labels[:count]
    model.fit(images[:batch], labels[:batch], batch_size=batch, epochs=1, verbose=0)
    passes = []
    for _ in range(CALIBRATION_PASSES):
        start = time.perf_counter()
        model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)
        passes.append(time.perf_counter() - start)
    keras.backend.clear_session()
    return statistics.median(passes), count


def search_adds_nothing(
    budget: RunBudget, examples_per_epoch: float, epochs: int, known: int
) -> str | None:
    """Why a search within this budget could not try a configuration beyond the ``known``
    ones (the warm start's), or None where it could.

    A search first re-measures the known configurations, whose recorded scores already rank
    them; one that cannot afford another trial after them spends the final stage's time and
    changes nothing but noise. Then the final stage retrains the best known configuration
    with all of the budget (`known_best`). With nothing known, a search that cannot pay for
    two trials of the measured model (the space's default one) is skipped too: its first
    trial is a random draw, which can cost several times that model (a 1-minute cold run
    drew one more than twice as dear and ended 20 s late), so the final stage trains the
    space's default configuration instead (`default_configuration`).
    """
    if budget.seconds_per_example is None:
        return None
    trial_s = budget.seconds_per_example * examples_per_epoch * epochs
    if trial_s <= 0:
        return None
    affordable = int(max(budget.search_left(), 0) // trial_s)
    if affordable > max(known, 1):
        return None
    if not known:
        return (
            f"budget: the {max(budget.search_left(), 0):.0f} s left beside the final stage do "
            f"not pay for two trials of about {trial_s:.0f} s, and no warm start names a "
            "configuration: no search, the final stage trains the search space's default one"
        )
    return (
        f"budget: the {max(budget.search_left(), 0):.0f} s left beside the final stage pay "
        f"for {affordable} trial(s) of about {trial_s:.0f} s, no more than the {known} "
        "warm-start configuration(s) whose scores are known: no search, the final stage "
        "retrains the best of them"
    )


def known_best(
    ranked: list[tuple[float | None, dict[str, Any]]],
    objective: str,
    epochs: int,
    why: str,
    data: dict,
) -> SearchResult:
    """A search result holding the best warm-start configuration and its recorded score, as
    the final stage retrains it (``epochs``: the protocol it was scored with); a
    configuration without a score is the space's default, trial `DEFAULT_TRIAL_ID`."""
    ranking_score, values = ranked[0]
    if ranking_score is None:
        trial = TrialSummary(
            DEFAULT_TRIAL_ID, TrialStatus.COMPLETED, None, epochs - 1, dict(values)
        )
    else:
        # The warm start ranks higher-is-better, a loss negated; the trial keeps the
        # objective's own.
        score = score_sign(objective) * ranking_score
        trial = TrialSummary("warm_start", TrialStatus.COMPLETED, score, epochs - 1, dict(values))
    return SearchResult(
        trials=[trial],
        objective=objective,
        wall_time_s=0.0,
        best_trial_id=trial.trial_id,
        data={**data, "search_skipped": why},
    )


def why_the_search_ended(tuner: keras_tuner.Tuner) -> str:
    """Why a budgeted search ended before its budget did: its trial cap, or its tuner."""
    trials = len(getattr(tuner.oracle, "trials", {}) or {})
    cap = getattr(tuner.oracle, "max_trials", None)
    if cap and trials >= cap:
        return f"tuner.max_trials={cap} reached within the budget"
    return f"the tuner proposed no more trials after {trials}"
