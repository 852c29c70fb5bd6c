"""The budget policy: one wall-clock budget (``budget=4m``) for the search and the final stage.

Keras Tuner counts trials, not time. With a budget, one clock starts when the run (or a
Hydra multirun's job) starts, and five rules, each a method below that logs when it
decides, share the time out:

1. **What an epoch costs** (`RunBudget.epoch_s`): seconds per training digit, measured
   before the first trial (a few timed batches) and after every epoch of every trial.
2. **What the final stage keeps** (`RunBudget.final_kept_s`): ``budget_policy.final_share``
   of the budget, and never less than one epoch of the final model plus
   ``final_overhead_s`` (testing, logging and registering after training).
3. **Whether another trial may start** (`RunBudget.may_start_trial`): while the search's
   time left pays a trial's first epoch; a trial still running at the search's deadline
   stops after the batch it passes it in (``src.model.backend.StopAtDeadline``), so every
   trial that starts is scored.
4. **The final plan** (`plan_final`): epochs and seeds for the time the final stage has,
   seeds given up first; time that pays two whole models buys an ensemble.
5. **The refit after each epoch** (`refit_epochs`): the final model's epoch count, to the
   step, from its own measured epochs, so that it ends at the budget, a last partial epoch
   included (``src.model.backend.ScheduleFittedToTime`` stops it and anneals its rate).

A budget too small to pay ``budget_policy.min_trials`` first epochs and the final stage is
refused before anything trains, naming the smallest that would do (`smallest_budget_s`).
A budget makes what a run does depend on the machine's speed: every budgeted run records
the trials and epochs it spent (``results.json``'s ``budget``, ``final.json``), so that it
can be replayed without one (``tuner.max_trials``, ``final.epochs``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A validation digit costs a forward pass, about a third of a training step's work.
VALIDATION_WEIGHT = 1 / 3
# Saved in the run folder, so that a resumed run counts the time already spent.
BUDGET_FILE = "budget.json"
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"^(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m)?(?:(?P<s>{_NUMBER})s)?$")


def process_started() -> float:
    """``time.monotonic()`` when this process started (Linux), so that a budget counts the
    interpreter's start-up and imports; elsewhere, now."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
    return time.monotonic() - max(age, 0.0)


def parse_duration(value: Any) -> float:
    """Seconds in ``90``, ``90s``, ``3m``, ``1h30m`` or ``2.5m``.

    Raises:
        ValueError: not a positive duration.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 3m, 90s or 1h30m")
    if isinstance(value, int | float) or re.fullmatch(_NUMBER, str(value).strip()):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip().lower())
        if not match or not any(match.groupdict().values()):
            raise ValueError("expected a duration such as 3m, 90s or 1h30m")
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        seconds = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("expected a duration above 0")
    return seconds


@dataclass
class RunBudget:
    """One run's clock and the rules that share it out (the module's docstring lists them).

    Args:
        total_s: The whole run's budget.
        final_share: The share of it kept for the final stage. These three defaults are
            for library use; a run takes them from ``budget_policy`` in ``conf/config.yaml``.
        final_overhead_s: Of that, kept after the final model's training.
        min_trials: The fewest trials a budget must pay (`smallest_budget_s`).
        spent_before_s: Time spent by an earlier attempt of this run (a resume).
        clock: Seconds, monotonic (a fake one in tests).
    """

    total_s: float
    final_share: float = 0.5
    final_overhead_s: float = 12.0
    min_trials: int = 6
    spent_before_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    started: float | None = None
    # Seconds per digit per epoch: the latest estimate, and each trial's own (models differ
    # several times in cost, and the final stage retrains one of them).
    seconds_per_example: float | None = None
    trial_seconds_per_example: dict[str, float] = field(default_factory=dict)
    trial_epoch_rates: dict[str, list[float]] = field(default_factory=dict)
    # A trial's cost beyond its epochs (building, tracing, checkpoints, tracking): measured.
    trial_fixed_s: float = 0.0
    # Digits a trial's epoch and the final model's epoch see (set before the search).
    trial_examples: float = 0.0
    final_examples: int = 0
    # Filled in as the run goes: why the search stopped, and what each part took.
    search_stopped_because: str | None = None
    search_s: float | None = None
    final_s: float | None = None
    final_after_training_s: float | None = None

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def spent(self) -> float:
        """Seconds spent, earlier attempts included."""
        return self.spent_before_s + self.clock() - self.started

    def left(self) -> float:
        """Seconds left of the whole budget (negative once it is overrun)."""
        return self.total_s - self.spent()

    # -- rule 1: what an epoch costs ---------------------------------------------------------

    def rate(self, trial_id: str | None = None) -> float | None:
        """Seconds per digit per epoch: a trial's own where measured, else the estimate."""
        return self.trial_seconds_per_example.get(str(trial_id), self.seconds_per_example)

    def epoch_s(self, examples: float, trial_id: str | None = None) -> float:
        """Seconds one epoch of ``examples`` digits costs (0 before anything was measured)."""
        return (self.rate(trial_id) or 0.0) * examples

    def observe_epoch(
        self, seconds: float, examples: float, trial_id: str | None = None, traced: bool = False
    ) -> None:
        """Fold one trained epoch into the cost estimate (and its trial's own).

        A trial's first epoch carries its tracing (``traced``): it prices that trial only
        until its later ones are timed, and never the estimate for other models. A trial is
        priced at the lower median of its last three later epochs, so that one slow epoch on
        a shared machine is passed over.

        Args:
            seconds: How long the epoch took, validation included.
            examples: Training digits plus `VALIDATION_WEIGHT` per validation digit.
            trial_id: The trial it belongs to; None for the calibration.
            traced: The trial's first epoch.
        """
        if examples <= 0 or seconds <= 0:
            return
        rate = seconds / examples
        if not traced:
            previous = self.seconds_per_example
            self.seconds_per_example = rate if previous is None else 0.5 * (previous + rate)
        if trial_id is not None:
            rates = self.trial_epoch_rates.setdefault(str(trial_id), [])
            rates.append(rate)
            self.trial_seconds_per_example[str(trial_id)] = statistics.median_low(
                rates[1:][-3:] or rates
            )

    def trial_s(self) -> float:
        """What a trial's first epoch costs, its fixed cost included: the search's unit."""
        return self.trial_fixed_s + self.epoch_s(self.trial_examples)

    # -- rule 2: what the final stage keeps --------------------------------------------------

    def final_kept_s(self) -> float:
        """Seconds the search leaves the final stage: its share of the budget, and never less
        than one epoch of the final model and the time kept after it; none where the final
        stage is off (``final_share`` 0)."""
        if not self.final_share:
            return 0.0
        least = self.final_overhead_s + self.epoch_s(self.final_examples)
        return max(self.final_share * self.total_s, least)

    def search_left(self) -> float:
        """Seconds the search may still use."""
        return self.left() - self.final_kept_s()

    # -- rule 3: whether another trial may start -----------------------------------------------

    def may_start_trial(self, trials_so_far: int) -> bool:
        """Whether the search's time left pays another trial's first epoch; the first trial
        always starts. Logs the no, and keeps it as why the search stopped."""
        if trials_so_far == 0 or self.search_left() >= self.trial_s():
            return True
        if self.search_stopped_because is None:
            self.search_stopped_because = (
                f"budget: {max(self.search_left(), 0):.0f} s left in the search's share after "
                f"{trials_so_far} trials, where a trial's first epoch costs about "
                f"{self.trial_s():.1f} s; {self.final_kept_s():.0f} s kept for the final stage"
            )
            log.info("%s", self.search_stopped_because)
        return False

    def smallest_budget_s(self, trials: int | None = None) -> float:
        """The smallest budget that pays, at the costs measured, the start-up spent so far
        and ``trials`` first epochs one after another (default `min_trials`) in the search's
        share, and one final epoch and the time kept after it in the final stage's."""
        trials = self.min_trials if trials is None else trials
        search = (self.spent() + trials * self.trial_s()) / (1 - self.final_share)
        if not self.final_share:
            return search
        final = (self.final_overhead_s + self.epoch_s(self.final_examples)) / self.final_share
        return max(search, final)

    # -- the record -----------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Record the time spent so far in ``folder`` (a resumed run starts from it)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BUDGET_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def start(
        cls,
        total: Any,
        folder: Path,
        policy: Any = None,
        resume: bool = False,
        started: float | None = None,
    ) -> RunBudget:
        """A budget of ``total`` (a duration), counting what a resumed run spent before.

        Args:
            total: The budget, as ``budget`` gives it.
            folder: The run folder, where the time spent is saved.
            policy: The ``budget_policy`` config node (None: the defaults above).
            resume: Count the time an earlier attempt of this run saved there.
            started: When the clock started (``time.monotonic()``); ``src.run`` passes the
                process's or the multirun job's start. Default: now.
        """
        spent_before = 0.0
        saved = folder / BUDGET_FILE
        if resume and saved.is_file():
            try:
                spent_before = float(json.loads(saved.read_text()).get("spent_s", 0.0))
            except (ValueError, AttributeError):  # a damaged record: count from now
                spent_before = 0.0
        rules = dict(policy or {})
        return cls(parse_duration(total), spent_before_s=spent_before, started=started, **rules)

    def to_dict(self) -> dict[str, Any]:
        """What ``results.json``, ``final.json`` and MLflow record of the budget."""
        record = asdict(self)
        for internal in ("clock", "started", "trial_epoch_rates"):
            record.pop(internal)
        return {
            **record,
            "spent_s": round(self.spent(), 2),
            "final_kept_s": round(self.final_kept_s(), 2),
        }


# -- rule 4: the final plan ----------------------------------------------------------------


@dataclass
class FinalPlan:
    """The final stage's epochs and seeds, fitted into what the budget leaves."""

    epochs: int
    seeds: list[int]
    ensemble: bool
    note: str | None = None
    # The most epochs a model may train once its measured epochs say the time allows more
    # (`refit_epochs`); None: exactly ``epochs``.
    most_epochs: int | None = None


def plan_final(
    budget: RunBudget | None,
    epochs: int,
    seeds: list[int],
    ensemble: bool,
    examples: int,
    fill_up_to: int | None = None,
    trial_id: str | None = None,
    ensemble_epochs: int | None = None,
    max_members: int = 1,
) -> FinalPlan:
    """The final stage's epochs and seeds for the time left (rule 4).

    The time left, less the overhead kept after training, is counted in epochs of the
    retrained trial (``trial_id``) on ``examples`` digits. Where it pays two or more
    models of ``ensemble_epochs`` (at most ``max_members``, one seed given), it trains
    that many seeds and their ensemble; else it fills one schedule up to ``fill_up_to``
    epochs; where it pays less than ``epochs`` x ``seeds``, the extra seeds go first, then
    epochs, down to one epoch of one seed. Without a budget, or before anything was
    measured: exactly ``epochs`` x ``seeds``.
    """
    if budget is None or budget.rate(trial_id) is None:
        return FinalPlan(epochs, seeds, ensemble)
    per_epoch = budget.epoch_s(examples, trial_id)
    affordable = int(max(budget.left() - budget.final_overhead_s, 0) // per_epoch)
    most = max(fill_up_to or epochs, epochs)
    left = f"{max(budget.left(), 0):.0f} s left, epochs of about {per_epoch:.1f} s"
    members = min(max_members, affordable // ensemble_epochs) if ensemble_epochs else 0
    if len(seeds) == 1 and members >= 2:
        each = max(ensemble_epochs, min(most, affordable // members))
        note = f"{left}: an ensemble of {members} seeds x {each} epochs"
        member_seeds = [seeds[0] + offset for offset in range(members)]
        plan = FinalPlan(each, member_seeds, True, note, max(most, each))
    elif affordable >= epochs * len(seeds):
        filled = min(most, affordable // len(seeds))
        note = f"{left}: {filled} epochs" + (f" (up to {most})" if filled < most else "")
        plan = FinalPlan(filled, seeds, ensemble, note, most)
    else:
        kept = seeds[: max(1, min(len(seeds), affordable // max(epochs, 1)))]
        fitted = max(1, min(epochs, affordable // len(kept)))
        note = f"{left}: {fitted} epoch(s) x {len(kept)} seed(s) instead of {epochs} x {len(seeds)}"
        plan = FinalPlan(fitted, kept, ensemble and len(kept) > 1, note, most)
    log.info("budget: final plan: %s", plan.note)
    return plan


# -- rule 5: the refit after each epoch ------------------------------------------------------


def refit_epochs(
    done: int,
    epoch_seconds: list[float],
    seconds_left: float,
    most: int,
    models_after: int = 0,
) -> float:
    """A final model's epoch count, fractional, after its ``done``-th epoch (rule 5).

    The count becomes what ``seconds_left`` pays at the epochs' measured cost (the lower
    median of the last three after the first, which carries tracing), shared evenly with
    the ``models_after`` still to train: left = (n - done) * took + models_after * n *
    took, solved for n. It is at most ``most`` and at least ``done`` (stop now).
    """
    took = statistics.median_low(epoch_seconds[1:][-3:] or epoch_seconds)
    affordable = (max(seconds_left, 0.0) / took + done) / (1 + models_after)
    return float(min(max(affordable, done), most))
