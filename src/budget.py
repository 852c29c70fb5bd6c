"""A wall-clock budget for a whole run (``budget=10m``): the search and the final stage share it.

Keras Tuner counts trials (``max_trials``), not time. With a budget, one clock starts when
the run starts; the search starts trials only while the time left exceeds what the final
stage is expected to need (`RunBudget.final_reserve_s`, re-estimated from every epoch the
search trains), a trial still running at the search's deadline is stopped as Keras Tuner
stops any trial (``src.model.backend.StopAtDeadline``), and the final stage fits its
epochs and seeds into what is left (`fit_final_stage`). Each final model's epoch count is
then refitted from its own first epochs' measured time
(``src.model.backend.EpochsFittedToTime``), and a model stops after an epoch when the next
would end past the time kept for testing and registering: a run overruns its budget only
where those take longer than `FINAL_OVERHEAD_S`, and by less than one epoch of the final
model unless the machine slows down mid-epoch.

A budget makes what a run does depend on the machine's speed: every budgeted run records
the trials and epochs it spent (``results.json``'s ``budget``, ``final.json``), so that the
same run can be replayed without a budget (``tuner.max_trials``, ``final.epochs``).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# What a final stage costs beyond its epochs: building, evaluating the test split, logging
# and registering the model, comparing it with the champion (seconds). In the 4-minute
# `bench/anytime.py` run on 2 cores, logging, registering and deciding took 5.3 s after the
# test score (its log); 12 leaves room for testing 10,000 digits, a slower machine, or a
# champion to re-evaluate.
FINAL_OVERHEAD_S = 12.0
# A validation digit costs a forward pass, about a third of a training step's work.
VALIDATION_WEIGHT = 1 / 3
# Epochs are planned at this multiple of their measured cost: in the 4-minute
# `bench/anytime.py` run (2 cores, docs/benchmarks.md) the final model's epochs took about
# 21 s where its trial's had measured 14 s per 10,000 digits, and the run overran by 29 s.
COST_MARGIN = 1.25
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
    """One run's clock: how much was given, spent and left, and what the final stage needs.

    Args:
        total_s: The whole run's budget.
        spent_before_s: Time spent by an earlier attempt of this run (a resume).
    """

    total_s: float
    spent_before_s: float = 0.0
    started: float = field(default_factory=time.monotonic)
    # Seconds per training example per epoch, as the search has measured it so far, and
    # per trial: models differ several times in cost, and the final stage retrains one.
    seconds_per_example: float | None = None
    trial_seconds_per_example: dict[str, float] = field(default_factory=dict)
    # Each trial's epochs as measured, which its rate above sums up.
    trial_epoch_rates: dict[str, list[float]] = field(default_factory=dict)
    final_examples: int = 0
    # Epochs of the final model its reserve pays: the planned ones, or final.reserve_epochs.
    final_epochs: int = 1
    final_seeds: int = 1
    final_overhead_s: float = FINAL_OVERHEAD_S  # 0 where the final stage is off
    # The share of the budget kept for the final stage however little it is expected to need,
    # and the most epochs its model may train (final.max_epochs with fill_budget): the share
    # never keeps more than pays those, which the final stage could not use.
    final_share: float = 0.0
    final_most_epochs: int | None = None
    # The most models the final stage may train for those epochs each: final.max_members
    # where final.ensemble_epochs lets the budget train an ensemble, else 1.
    final_most_members: int = 1
    # The trial the final stage would retrain now, the search's best so far: its cost prices
    # the reserve. None: the dearest trial measured.
    final_trial: str | None = None
    # Filled in as the run goes: why the search stopped, and what each part took.
    search_stopped_because: str | None = None
    search_s: float | None = None
    final_s: float | None = None
    # The final stage's time after its last model trained: what FINAL_OVERHEAD_S keeps.
    final_after_training_s: float | None = None
    # Set where the budget narrowed the trials' digits below tuner.search_examples.
    trial_examples_note: str | None = None

    def spent(self) -> float:
        """Seconds spent, earlier attempts included."""
        return self.spent_before_s + time.monotonic() - self.started

    def left(self) -> float:
        """Seconds left of the whole budget (negative once it is overrun)."""
        return self.total_s - self.spent()

    def rate(self, trial_id: str | None = None) -> float | None:
        """Seconds per example per epoch: a trial's own where measured, else the estimate."""
        return self.trial_seconds_per_example.get(str(trial_id), self.seconds_per_example)

    def _final_s(self, epochs: int, margin: float = 1.0) -> float:
        """The final stage's fixed costs and ``epochs`` of its seeds on every training digit,
        times ``margin``, at the measured rate of the trial it would retrain now
        (``final_trial``), else at the dearest rate measured.

        Only the best is priced, not the trials tied with it: the final stage retrains the
        best or, by its rules (`src.final.choose`), a cheaper one or the warm start's first
        configuration tied with it. A dearer trial that becomes best later raises the price
        then and ends the search; the final stage trains it (or the tied configuration its
        rule prefers) for what is left. Priced at the dearest trial measured, a 10-minute
        bundled run kept 300 s for the 30 epochs it then trained in 146 s."""
        measured = self.trial_seconds_per_example
        if self.final_trial in measured:
            rate = measured[self.final_trial]
        else:
            rate = max([self.seconds_per_example or 0.0, *measured.values()])
        per_epoch = margin * rate * self.final_examples
        return self.final_overhead_s + per_epoch * epochs * self.final_seeds

    @property
    def final_reserve_s(self) -> float:
        """What the final stage is expected to need: its planned epochs (`_final_s`) as its
        plan prices them, with `COST_MARGIN`, so that the plan then pays them all (without
        it, a 10-minute full-MNIST run kept 10 epochs and its plan paid 7)."""
        return self._final_s(self.final_epochs, COST_MARGIN)

    def affordable_epochs(self, examples: int, trial_id: str | None = None) -> int | None:
        """Epochs of one model on ``examples`` digits the time left pays beside the final
        stage's fixed costs, at a trial's measured rate (``COST_MARGIN`` over it); None
        before anything was measured."""
        rate = self.rate(trial_id)
        if rate is None:
            return None
        per_epoch = COST_MARGIN * rate * examples
        return int((self.left() - FINAL_OVERHEAD_S) // per_epoch) if per_epoch > 0 else 0

    @property
    def final_kept_s(self) -> float:
        """Seconds the search leaves the final stage: what it is expected to need, or its
        share of the budget, whichever is more. The share keeps no more than pays its most
        epochs (``final_most_epochs``, with the plan's `COST_MARGIN`) for as many whole
        models as it pays, up to ``final_most_members``: the final stage could not use the
        rest, which is the search's."""
        share = self.final_share * self.total_s
        if self.final_most_epochs is not None:
            epoch = self._final_s(1, COST_MARGIN) - self.final_overhead_s
            models = 1
            if epoch > 0 and self.final_most_members > 1:
                # An ensemble keeps one epoch more: the search's last trial ends a little past
                # its deadline, and one epoch short of its members the plan trains one model.
                room = share - self.final_overhead_s - epoch
                whole = int(room // (epoch * self.final_most_epochs))
                models = max(1, min(self.final_most_members, whole))
            most = self.final_most_epochs * models + (1 if models > 1 else 0)
            share = min(share, self._final_s(most, COST_MARGIN))
        return max(self.final_reserve_s, share)

    def search_left(self) -> float:
        """Seconds the search may still use: what is left after the final stage's share."""
        return self.left() - self.final_kept_s

    def observe_epoch(self, seconds: float, examples: float, trial_id: str | None = None) -> None:
        """Fold one trained epoch into the cost estimate (and the trial's own).

        Args:
            seconds: How long the epoch took, validation included.
            examples: Training examples plus `VALIDATION_WEIGHT` per validation example.
            trial_id: The trial it belongs to; None for the calibration.
        """
        if examples <= 0 or seconds <= 0:
            return
        rate = seconds / examples
        previous = self.seconds_per_example
        # The latest epochs weigh most: later trials are what the final stage will retrain.
        self.seconds_per_example = rate if previous is None else 0.5 * previous + 0.5 * rate
        if trial_id is not None:
            # A trial's first epoch carries its tracing, so the later ones price it: their
            # lower median of the last three, as `EpochsFittedToTime` reads a final model's,
            # so that one slow epoch on a shared machine is passed over (the shipped best's
            # fourth took 5.1 s where its second and third took 3.6).
            rates = self.trial_epoch_rates.setdefault(str(trial_id), [])
            rates.append(rate)
            self.trial_seconds_per_example[str(trial_id)] = statistics.median_low(
                rates[1:][-3:] or rates
            )

    def save(self, folder: Path) -> None:
        """Record the time spent so far in ``folder`` (a resumed run starts from it)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / BUDGET_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def start(
        cls, total: Any, folder: Path, resume: bool = False, started: float | None = None
    ) -> RunBudget:
        """A budget of ``total`` (a duration), counting what a resumed run spent before.

        Args:
            total: The budget, as ``budget`` gives it.
            folder: The run folder, where the time spent is saved.
            resume: Count the time an earlier attempt of this run saved there.
            started: When the clock started (``time.monotonic()``); ``src.run`` passes its
                own start, so that start-up counts too. Default: now.
        """
        spent_before = 0.0
        saved = folder / BUDGET_FILE
        if resume and saved.is_file():
            try:
                spent_before = float(json.loads(saved.read_text()).get("spent_s", 0.0))
            except (ValueError, AttributeError):  # a damaged record: count from now
                spent_before = 0.0
        clock = time.monotonic() if started is None else started
        return cls(parse_duration(total), spent_before_s=spent_before, started=clock)

    def to_dict(self) -> dict[str, Any]:
        """What ``results.json``, ``final.json`` and MLflow record of the budget."""
        record = asdict(self)
        record.pop("started")
        record.pop("trial_epoch_rates")  # trial_seconds_per_example sums them up
        return {
            **record,
            "spent_s": round(self.spent(), 2),
            "final_reserve_s": round(self.final_reserve_s, 2),
            "final_kept_s": round(self.final_kept_s, 2),
        }


def fill_epochs(final: Any) -> int | None:
    """The most epochs a budgeted final model trains where the time allows
    (``final.max_epochs``), or None where its epochs are not the budget's to lengthen:
    ``final.fill_budget`` off, or ``final.epochs`` fixed by the user. ``final``: the
    run's ``final`` config."""
    return final.max_epochs if final.fill_budget and not final.epochs else None


@dataclass
class FinalPlan:
    """The final stage's epochs and seeds, fitted into what the budget leaves."""

    epochs: int
    seeds: list[int]
    ensemble: bool
    note: str | None = None
    # The most epochs a model may train once its measured epochs say the time allows more
    # (`src.model.backend.EpochsFittedToTime`); None: exactly ``epochs``.
    most_epochs: int | None = None


def fit_final_stage(
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
    """The most of ``epochs`` x ``seeds`` that fits the time left, seeds given up first.

    More seeds buy a spread (and an ensemble); more epochs buy accuracy, so when time is
    short the extra seeds go first, then epochs, down to one epoch of one seed. With
    ``fill_up_to``, time left over after ``epochs`` lengthens every seed's schedule, up to
    that many epochs. ``trial_id``: the retrained trial, whose own epochs were measured.
    With ``ensemble_epochs`` and one seed given: where the time pays two or more models
    (at most ``max_members``) that many epochs each, it trains that many seeds (the given
    one and the next ones) and their ensemble instead of one longer schedule.
    """
    if budget is None or budget.rate(trial_id) is None:
        return FinalPlan(epochs, seeds, ensemble)
    most = max(fill_up_to or epochs, epochs)
    per_epoch = COST_MARGIN * budget.rate(trial_id) * examples
    affordable = budget.affordable_epochs(examples, trial_id)
    left = f"the budget left {max(budget.left(), 0):.0f} s, epochs of about {per_epoch:.1f} s"
    members = min(max_members, affordable // ensemble_epochs) if ensemble_epochs else 0
    if len(seeds) == 1 and members >= 2:
        each = max(ensemble_epochs, min(most, affordable // members))
        note = (
            f"{left}: an ensemble of {members} seeds x {each} epochs "
            f"(final.ensemble_epochs={ensemble_epochs})"
        )
        member_seeds = [seeds[0] + offset for offset in range(members)]
        return FinalPlan(each, member_seeds, True, note, max(most, each))
    if affordable >= epochs * len(seeds):
        filled = min(fill_up_to or epochs, affordable // len(seeds))
        if filled > epochs:
            note = f"{left}: {filled} epochs instead of {epochs} (final.fill_budget)"
            return FinalPlan(filled, seeds, ensemble, note, most)
        return FinalPlan(epochs, seeds, ensemble, None, most)
    kept_seeds = seeds[: max(1, min(len(seeds), affordable // max(epochs, 1)))]
    fitted_epochs = max(1, min(epochs, affordable // len(kept_seeds)))
    keeps_ensemble = ensemble and len(kept_seeds) > 1
    if fitted_epochs == epochs and len(kept_seeds) == len(seeds):
        note = f"{left}: less than the planned {epochs} epoch(s); trained anyway"
    else:
        note = (
            f"{left}: {fitted_epochs} epoch(s) x {len(kept_seeds)} seed(s) instead of "
            f"{epochs} x {len(seeds)}"
        )
    return FinalPlan(fitted_epochs, kept_seeds, keeps_ensemble, note, most)
