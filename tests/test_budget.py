"""`budget=`: one wall-clock budget for the search and the final stage."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest
from helpers import compose_config, run_cli
from mlflow import MlflowClient

from src.budget import (
    BUDGET_FILE,
    COST_MARGIN,
    FINAL_OVERHEAD_S,
    RunBudget,
    fit_final_stage,
    parse_duration,
)
from src.config.rules import validate_config
from src.data.dataset import Split
from src.errors import ConfigError
from src.model.backend import EpochsFittedToTime, StopAtDeadline, most_without_rising
from src.pipeline import run_pipeline
from src.search.budgeting import plan_budget, search_adds_nothing, search_subset


@pytest.fixture
def exact_costs(monkeypatch):
    """Plan epochs at their measured cost (no safety margin), for round arithmetic."""
    import src.budget

    monkeypatch.setattr(src.budget, "COST_MARGIN", 1.0)


def test_epochs_are_planned_with_a_margin_over_their_measured_cost():
    budget = RunBudget(200.0, seconds_per_example=0.001)  # 10 s an epoch, measured
    plan = fit_final_stage(budget, 4, [1], False, 10_000, fill_up_to=100)
    assert plan.epochs == int((200 - FINAL_OVERHEAD_S) // (10 * COST_MARGIN))


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("3m", 180), ("1h30m", 5400), ("2.5m", 150), (45, 45)]
)
def test_durations_read_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "0s", "-3m", "m", "", True])
def test_a_budget_that_is_no_duration_is_refused_with_its_key(text):
    cfg = compose_config([f"budget={text}" if text != "" else "budget=''"])
    if isinstance(text, bool):
        cfg.budget = True
    with pytest.raises(ConfigError, match=r"^budget=") as error:
        validate_config(cfg)
    assert "\n" not in str(error.value)


def test_a_budget_below_the_final_stages_fixed_cost_is_refused_before_anything_loads(tmp_path):
    start = time.perf_counter()
    result = run_cli("experiment=quick", "budget=10s", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: budget='10s': the final stage alone needs about "
        f"{FINAL_OVERHEAD_S:.0f} s (evaluating, logging and registering); give budget="
        f"{2 * FINAL_OVERHEAD_S:.0f}s or more"
    ]
    assert time.perf_counter() - start < 10
    assert not list(tmp_path.rglob("results.json"))


def test_a_budget_too_small_for_one_epoch_of_each_is_refused_before_training(tiny_config):
    """The estimate comes from a calibration of a few training steps; here it is given."""
    cfg = tiny_config("budget=30s")
    budget = RunBudget(30.0, seconds_per_example=0.05)  # 300 digits: 15 s an epoch
    dataset = _digits(300)
    with pytest.raises(ConfigError, match=r"^budget=30s: one epoch of a trial and one of"):
        plan_budget(budget, cfg, _dataset(dataset), None, dataset)


def test_the_final_stage_gives_up_seeds_first_then_epochs(exact_costs):
    budget = RunBudget(200.0, seconds_per_example=0.001)  # 10 s an epoch of 10,000 digits
    plenty = fit_final_stage(budget, 4, [1, 2, 3], True, 10_000)
    assert (plenty.epochs, plenty.seeds, plenty.ensemble, plenty.note) == (4, [1, 2, 3], True, None)
    budget.spent_before_s = 200 - FINAL_OVERHEAD_S - 45  # 45 s: four epochs of one seed
    tight = fit_final_stage(budget, 4, [1, 2, 3], True, 10_000)
    assert (tight.epochs, tight.seeds, tight.ensemble) == (4, [1], False)
    budget.spent_before_s = 200 - FINAL_OVERHEAD_S - 25  # two epochs
    tighter = fit_final_stage(budget, 4, [1, 2, 3], True, 10_000)
    assert (tighter.epochs, tighter.seeds) == (2, [1])
    assert "2 epoch(s) x 1 seed(s) instead of 4 x 3" in tighter.note
    budget.spent_before_s = 200  # nothing left: one epoch of one seed all the same
    spent = fit_final_stage(budget, 4, [1, 2], False, 10_000)
    assert (spent.epochs, spent.seeds) == (1, [1])
    assert fit_final_stage(None, 4, [1, 2], True, 10_000).seeds == [1, 2]  # no budget


def test_a_resumed_run_counts_the_time_spent_before(tmp_path):
    first = RunBudget.start("5m", tmp_path, started=time.monotonic() - 40)
    first.save(tmp_path)
    assert json.loads((tmp_path / BUDGET_FILE).read_text())["spent_s"] >= 40
    resumed = RunBudget.start("5m", tmp_path, resume=True)
    assert resumed.spent() >= 40 and resumed.left() <= 260
    assert RunBudget.start("5m", tmp_path).spent() < 5  # a fresh run starts from zero
    (tmp_path / BUDGET_FILE).write_text("{damaged")
    assert RunBudget.start("5m", tmp_path, resume=True).spent() < 5


def test_a_trial_past_its_deadline_stops_after_a_batch_but_never_in_its_first_epoch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int32")
    deadline = StopAtDeadline(lambda: -1.0)  # already past
    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[deadline])
    assert len(history.history["loss"]) == 1 and deadline.stopped  # the first epoch, whole
    epochs_seen = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            epochs_seen.append(batch)

    clock = iter([1.0] + [-1.0] * 100)  # checked at epoch 1's end, then after each batch
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=5,
        verbose=0,
        callbacks=[StopAtDeadline(lambda: next(clock)), Count()],
    )
    assert len(epochs_seen) == 8 + 1  # the first epoch's eight batches, one of the second


def _cosine_fit(fitted: EpochsFittedToTime, most: int, slow_s: float = 0.0) -> dict:
    """A tiny model trained through the hypermodel's cosine schedule, read from ``fitted``."""
    from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int32")

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(slow_s)

    hp = fixed_hyperparameters({"learning_rate": 0.01, "lr_schedule": "cosine"})
    return CNNHyperModel.fit(
        None,
        hp,
        model,
        x,
        y,
        epochs=most,
        batch_size=8,
        verbose=0,
        callbacks=[Slow(), fitted],
        schedule_epochs=lambda: fitted.epochs,
    ).history


def test_a_final_model_trains_the_epochs_its_measured_time_pays():
    """Planned from an estimate, a final model's epoch count is refitted after its first
    epochs from their measured time: up to its cap where time is plentiful, with the cosine
    schedule decaying over the epochs that really run; down to the epochs done where the
    next would end past the deadline."""
    plenty = EpochsFittedToTime(lambda: 1e6, planned=2, most=6)
    history = _cosine_fit(plenty, most=6)
    assert len(history["loss"]) == 6 and plenty.epochs == 6
    expected = [0.01 * 0.5 * (1 + np.cos(np.pi * epoch / 6)) for epoch in range(6)]
    np.testing.assert_allclose(history["learning_rate"], expected, rtol=1e-5)

    none_left = EpochsFittedToTime(lambda: 0.0, planned=5, most=5)
    assert len(_cosine_fit(none_left, most=5)["loss"]) == 1  # the first epoch, then stop

    # Epochs of at least 0.2 s and 5 s to the deadline (a first epoch slow with tracing on a
    # loaded machine still leaves room for a second), shared with one more model of the
    # same count: at most 5 / 0.2 // 2 = 12 epochs each, where alone it would train 25.
    deadline = time.perf_counter() + 5.0
    shared = EpochsFittedToTime(
        lambda: deadline - time.perf_counter(), planned=30, most=30, models_after=1
    )
    trained = len(_cosine_fit(shared, most=30, slow_s=0.2)["loss"])
    assert 2 <= trained <= 12, trained


class _Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _train_epochs(
    fitted: EpochsFittedToTime,
    clock: _Clock,
    seconds: list[float],
    before: keras.callbacks.Callback | None = None,
) -> int:
    """Drive the callback through epochs of the given lengths, as `fit` would (``before``
    called at each epoch's start first); the count trained before it stops the model."""
    model = keras.Sequential([keras.Input((1,))])
    model.stop_training = False  # as fit sets it
    fitted.set_model(model)
    for epoch, took in enumerate(seconds):
        if before is not None:
            before.on_epoch_begin(epoch)
        fitted.on_epoch_begin(epoch)
        clock.now += took
        fitted.on_epoch_end(epoch)
        if model.stop_training:
            return epoch + 1
    return len(seconds)


def test_one_slow_epoch_does_not_cut_the_final_models_schedule():
    """Epochs of 10 s (the first 14: tracing) and 100 s to the deadline when training
    starts: 9 or 10 epochs fit. One epoch of 25 s on a shared machine costs the schedule
    the 15 s it lost, not the two epochs that timing by the last epoch would cut."""
    clock = _Clock()
    deadline = 100.0
    fitted = EpochsFittedToTime(lambda: deadline - clock.now, planned=4, most=30, clock=clock)
    trained = _train_epochs(fitted, clock, [14, 10, 25, 10, 10, 10, 10, 10, 10, 10])
    assert trained == 8 and clock.now <= deadline  # 14 + 10 + 25 + 5 x 10 = 99 s
    # Timed by the last epoch alone, the 25-s epoch would have left (100 - 49) / 25 = 2
    # more: 5 epochs in all.


def test_the_count_grows_as_far_as_the_rate_never_rises_and_shrinks_in_time():
    """A machine that speeds up late: the count grows into the time that frees (the
    schedule's tail stretched, its cosine rate never rising), up to the deadline; one that
    slows down late still stops in time."""
    clock = _Clock()
    fitted = EpochsFittedToTime(lambda: 300.0 - clock.now, planned=3, most=30, clock=clock)
    rates = []

    class Rate(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rates.append(0.5 * (1 + np.cos(np.pi * epoch / fitted.epochs)))

    # 30-s epochs at first: (300 - 60) / 30 + 2 = 10 epochs; then 10-s epochs pay 22 in all.
    trained = _train_epochs(fitted, clock, [30] * 4 + [10] * 30, before=Rate())
    assert trained == 22 and clock.now == pytest.approx(300.0)
    assert (np.diff(rates) <= 1e-12).all()
    assert rates[-1] < 0.01  # the schedule still decays to (about) zero
    clock = _Clock()
    slowing = EpochsFittedToTime(lambda: 120.0 - clock.now, planned=10, most=10, clock=clock)
    trained = _train_epochs(slowing, clock, [10, 10, 10, 10, 40, 40, 40, 40, 40, 40])
    assert clock.now <= 120.0 + 40 and trained < 10


def test_the_count_never_grows_past_where_the_rate_would_rise():
    assert most_without_rising(1, 4) == math.inf
    # After 10 of 11 epochs (progress 9/11 last), 12 keep 10/12 >= 9/11; 13 would not.
    assert most_without_rising(10, 11) == 12
    assert most_without_rising(2, 5) == 10


def test_search_examples_is_a_stratified_subset():
    split = _digits(1000)
    subset = search_subset(split, 200, seed=0)
    assert len(subset) == 200
    assert np.bincount(subset.labels, minlength=10).min() >= 18
    assert search_subset(split, None, seed=0) is split
    assert search_subset(split, 5000, seed=0) is split


def test_a_budgeted_run_stops_its_search_in_time_and_still_registers(tiny_config):
    """With no trial cap the budget alone ends the search; the final stage still trains on
    every digit and registers its model; the recorded parts add up within the budget."""
    cfg = tiny_config(
        "budget=35s", "tuner.max_trials=null", "tuner.search_examples=150", "training.epochs=1"
    )
    start = time.monotonic()
    result = run_pipeline(cfg, started=start)
    elapsed = time.monotonic() - start
    search, final = result.search, result.final
    budget = search.budget
    assert budget["search_stopped_because"].startswith("budget:"), budget
    assert len(search.trials) >= 1
    assert search.data["search_examples"] == 150
    assert final.model_version is not None
    recorded = final.budget
    assert recorded["search_s"] + recorded["final_s"] <= recorded["spent_s"] + 1
    # The final stage's parts make up its time; what followed training is what the budget
    # keeps FINAL_OVERHEAD_S for.
    assert list(final.parts_s) == ["training", "testing", "reporting", "registering"]
    assert sum(final.parts_s.values()) == pytest.approx(recorded["final_s"], abs=0.1)
    after = recorded["final_s"] - final.parts_s["training"]
    assert recorded["final_after_training_s"] == pytest.approx(after, abs=0.05)
    client = MlflowClient(cfg.mlflow.tracking_uri)
    parent_id = client.get_run(final.run_id).data.tags["mlflow.parentRunId"]
    metrics = client.get_run(parent_id).data.metrics
    assert metrics["budget_s"] == 35
    assert metrics["budget_final_s"] == pytest.approx(recorded["final_s"])
    assert metrics["budget_final_after_training_s"] == pytest.approx(after, abs=0.05)
    # At most one epoch of the final model over (tiny data: seconds, more when the other
    # test worker shares the cores).
    assert elapsed <= 35 + 25, (elapsed, recorded)
    folder = Path(cfg.paths.output_dir)
    saved = json.loads((folder / "results.json").read_text())
    assert saved["budget"]["search_stopped_because"] == budget["search_stopped_because"]
    card = (folder / "final" / "model_card.md").read_text()
    assert "## Time budget" in card


def _digits(count: int) -> Split:
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 10
    return Split(rng.random((count, 28, 28, 1), dtype=np.float32), labels.astype(np.int32))


def _dataset(split: Split):
    from src.data.dataset import Dataset

    return Dataset("tiny", "test", "digest", split, split, split)


def test_time_left_over_lengthens_the_final_schedule_up_to_its_cap(exact_costs):
    budget = RunBudget(200.0, seconds_per_example=0.001)  # 10 s an epoch: 18 affordable
    filled = fit_final_stage(budget, 4, [1, 2], False, 10_000, fill_up_to=30)
    assert (filled.epochs, filled.seeds) == (9, [1, 2]) and "final.fill_budget" in filled.note
    assert fit_final_stage(budget, 4, [1], False, 10_000, fill_up_to=12).epochs == 12
    assert fit_final_stage(budget, 4, [1], False, 10_000).epochs == 4  # no fill asked


def test_a_long_budget_buys_an_ensemble_of_seeds_once_each_gets_its_epochs(exact_costs):
    """final.ensemble_epochs: 18 affordable epochs of 10 s make three seeds of 6 epochs,
    or with 10 per member a single 18-epoch model; seeds a user gave are kept as given."""
    budget = RunBudget(200.0, seconds_per_example=0.001)  # (200 - 12) // 10 = 18 epochs
    three = fit_final_stage(budget, 4, [42], False, 10_000, 30, ensemble_epochs=6, max_members=3)
    assert (three.epochs, three.seeds, three.ensemble) == (6, [42, 43, 44], True)
    assert "an ensemble of 3 seeds x 6 epochs" in three.note
    two = fit_final_stage(budget, 4, [42], False, 10_000, 30, ensemble_epochs=6, max_members=2)
    assert (two.epochs, two.seeds, two.ensemble) == (9, [42, 43], True)
    one = fit_final_stage(budget, 4, [42], False, 10_000, 30, ensemble_epochs=10, max_members=3)
    assert (one.epochs, one.seeds, one.ensemble) == (18, [42], False)
    given = fit_final_stage(budget, 4, [1, 2], False, 10_000, 30, ensemble_epochs=6)
    assert (given.seeds, given.ensemble) == ([1, 2], False)


def test_the_search_keeps_the_final_stages_share_of_the_budget():
    budget = RunBudget(100.0, seconds_per_example=0.0001, final_examples=1000)
    assert budget.search_left() == pytest.approx(100 - FINAL_OVERHEAD_S - 0.1, abs=0.5)
    budget.final_share = 0.5
    assert budget.search_left() == pytest.approx(50, abs=0.5)
    # What the progress line and results.json say is kept is what the search leaves.
    assert budget.final_kept_s == pytest.approx(50)
    assert budget.to_dict()["final_kept_s"] == pytest.approx(50)


def test_the_final_stages_reserve_is_priced_at_the_best_trial_so_far():
    """The final stage retrains the best trial (or, by its rules, a cheaper one): a dear
    trial the search has left behind does not shrink the search. Before a trial is ranked,
    or where the best was not measured, the dearest trial measured sets the price."""
    budget = RunBudget(1000.0, final_examples=10_000, final_epochs=10, final_overhead_s=0.0)
    for trial_id, rate in (("0", 0.001), ("1", 0.004)):
        budget.observe_epoch(rate * 10_000, 10_000, trial_id)
    assert budget.final_reserve_s == pytest.approx(10 * 40 * COST_MARGIN)  # trial 1's 40 s
    budget.final_trial = "0"
    assert budget.final_reserve_s == pytest.approx(10 * 10 * COST_MARGIN)
    budget.final_most_epochs, budget.final_share = 30, 0.5  # 30 epochs, with the margin
    assert budget.final_kept_s == pytest.approx(30 * 10 * COST_MARGIN)
    budget.final_trial = "never measured"
    assert budget.final_reserve_s == pytest.approx(10 * 40 * COST_MARGIN)


def test_an_epoch_the_searchs_deadline_cut_short_does_not_price_the_trial():
    """A trial stopped mid-epoch at the search's deadline ran a fraction of its batches: read
    as a whole epoch it would make the trial look cheap, and the final stage's reserve with
    it."""
    from types import SimpleNamespace

    from src.search.behaviours import SpendsBudget

    class Hooks:  # what Keras Tuner's Tuner gives SpendsBudget to extend
        def on_epoch_begin(self, *args):
            pass

        def on_epoch_end(self, *args):
            pass

    class Measuring(SpendsBudget, Hooks):
        pass

    budget = RunBudget(100.0, final_examples=1000, final_overhead_s=0.0)
    tuner = Measuring(budget=budget, examples_per_epoch=1000)
    trial = SimpleNamespace(trial_id="0")

    def measured(stop_training: bool, search_left_s: float) -> bool:
        budget.total_s = budget.spent() + search_left_s
        budget.trial_seconds_per_example.clear()
        tuner.on_epoch_begin(trial, None, 1)
        tuner.on_epoch_end(trial, SimpleNamespace(stop_training=stop_training), 1)
        return "0" in budget.trial_seconds_per_example

    assert measured(False, 50.0)  # a whole epoch
    assert measured(True, 50.0)  # a whole one that EarlyStopping ended the trial after
    assert not measured(True, -1.0)  # cut at the deadline


def test_a_trial_is_priced_at_its_later_epochs_one_slow_epoch_passed_over():
    """The first epoch carries tracing; of the later ones, the lower median of the last
    three prices the trial, so one slow epoch (the shipped best's fourth: 5.1 s against
    3.6) does not, and two in a row do."""
    budget = RunBudget(600.0)
    for seconds in (5.4, 3.6, 3.6, 5.1):
        budget.observe_epoch(seconds, 1000, trial_id="0")
    assert budget.trial_seconds_per_example["0"] == pytest.approx(0.0036)
    budget.observe_epoch(5.1, 1000, trial_id="0")
    assert budget.trial_seconds_per_example["0"] == pytest.approx(0.0051)
    budget.observe_epoch(5.4, 1000, trial_id="1")  # only one epoch: it is all there is
    assert budget.trial_seconds_per_example["1"] == pytest.approx(0.0054)
    assert "trial_epoch_rates" not in budget.to_dict()


def test_the_reserve_is_priced_at_the_warm_starts_best_where_the_final_stage_keeps_it():
    """With `final.choose=warm_start_tied` the final stage retrains the warm start's best
    unless the search's best beats it once chosen (`earlier_best_trial`): that is the trial
    whose cost prices the reserve after every trial."""
    from types import SimpleNamespace

    from src.search.behaviours import SpendsBudget

    def trial(trial_id: str, score: float, filters: int) -> SimpleNamespace:
        values = SimpleNamespace(values={"filters_0": filters})
        return SimpleNamespace(
            trial_id=trial_id, status="COMPLETED", score=score, hyperparameters=values
        )

    earlier, best = trial("0", 0.980, 32), trial("1", 0.994, 64)
    oracle = SimpleNamespace(
        trials={"0": earlier, "1": best},
        get_best_trials=lambda n: [best],
        objective=SimpleNamespace(name="val_accuracy"),
    )
    search = SpendsBudget(earlier_best={"filters_0": 32}, scored_digits=1000)
    search.oracle = oracle
    assert search._retrained_now() == "1"  # two trials: 0.994 beats 0.980
    oracle.trials |= {str(i): trial(str(i), 0.9, 16) for i in range(2, 18)}
    assert search._retrained_now() == "0"  # chosen from 18, it does not
    search.earlier_best = None  # another rule, or no warm start
    assert search._retrained_now() == "1"


def test_the_search_leaves_the_final_model_its_reserve_epochs_where_they_cost_more(tiny_config):
    """final.reserve_epochs: where epochs of every training digit are dear (full MNIST's
    scale), the search leaves the final stage what pays it that many; where they are cheap,
    budget_share decides, but keeps no more than pays the final model final.max_epochs (with
    the plan's margin): those it could not use."""
    train = _digits(3000)  # the final stage trains 6,000 digits

    def kept(rate: float, *overrides: str) -> float:
        budget = RunBudget(600.0, seconds_per_example=rate)
        plan_budget(budget, tiny_config("budget=600s", *overrides), _dataset(train), None, train)
        return budget.final_kept_s

    # 48 s an epoch: 10 of them and the fixed cost, more than budget_share keeps (0.75 x 600).
    reserve = 10 * 48 * COST_MARGIN + FINAL_OVERHEAD_S  # as the final stage's plan prices them
    share = 0.75 * 600  # final.budget_share's default
    assert kept(0.008, "final.reserve_epochs=10") == pytest.approx(reserve)
    assert kept(0.008, "final.reserve_epochs=null") == pytest.approx(share)
    # A final stage that trains only its planned epochs is kept nothing beyond them.
    assert kept(0.008, "final.reserve_epochs=10", "final.fill_budget=false") == pytest.approx(share)
    # 6 s an epoch: 30 of them, as the plan prices them, are less than budget_share keeps...
    most = FINAL_OVERHEAD_S + 30 * COST_MARGIN * 6
    assert kept(0.001, "final.reserve_epochs=10", "final.max_epochs=30") == pytest.approx(most)
    # ...and 60 of them more.
    assert kept(0.001, "final.reserve_epochs=10", "final.max_epochs=60") == pytest.approx(share)
    # Where the final stage may train an ensemble of 30-epoch members (final.ensemble_epochs),
    # the share keeps the whole members it pays, one epoch more, up to final.max_members.
    members = ("final.max_epochs=30", "final.ensemble_epochs=30", "final.max_members=3")
    assert kept(0.001, *members) == pytest.approx(most)  # 450 s pay one member of 225
    two = kept(0.0005, *members[:2], "final.max_members=2")
    assert two == pytest.approx(FINAL_OVERHEAD_S + 61 * COST_MARGIN * 3)
    assert kept(0.0001, *members) == pytest.approx(FINAL_OVERHEAD_S + 91 * COST_MARGIN * 0.6)
    # Seeds the user gives are trained as given: one model's epochs each.
    given = kept(0.0005, *members, "final.seeds=[1,2]")
    assert given == pytest.approx(FINAL_OVERHEAD_S + 2 * 30 * COST_MARGIN * 3)


def test_a_tight_budget_narrows_the_trials_digits_rather_than_refusing(tiny_config):
    cfg = tiny_config("budget=100s")
    budget = RunBudget(100.0, seconds_per_example=0.01)
    train = _digits(3000)  # final stage: 6,000 digits, 60 s an epoch; a trial epoch: 30 s
    narrowed = plan_budget(budget, cfg, _dataset(train), None, train)
    # Half of what is left beside the final model's first epoch: (100 - 12 - 60) / 2 s.
    assert 1350 <= len(narrowed) <= 1400
    assert f"trials train on {len(narrowed)} of 3000 digits" in budget.trial_examples_note


def test_the_final_stage_is_fitted_at_the_retrained_trials_own_cost(exact_costs):
    """Models differ several times in cost: the final stage's epochs are planned at what the
    chosen trial's epochs cost, and the search's reserve, before the trials are ranked, at
    the costliest trial's."""
    budget = RunBudget(200.0, final_examples=10_000)
    budget.observe_epoch(1.0, 1000, trial_id="0")  # 10 s an epoch of 10,000 digits
    budget.observe_epoch(3.0, 1000, trial_id="1")  # 30 s
    cheap = fit_final_stage(budget, 4, [1], False, 10_000, fill_up_to=30, trial_id="0")
    costly = fit_final_stage(budget, 4, [1], False, 10_000, fill_up_to=30, trial_id="1")
    assert (cheap.epochs, costly.epochs) == (18, 6)
    assert budget.final_reserve_s == pytest.approx(FINAL_OVERHEAD_S + 30 * 1, abs=0.01)


def test_a_search_that_could_only_remeasure_the_known_configurations_is_skipped():
    budget = RunBudget(100.0, seconds_per_example=0.001, final_examples=1000)
    # 100 s left, a 13 s reserve: 87 s of search, trials of 4 epochs x 5,000 digits = 20 s.
    assert budget.search_left() == pytest.approx(87, abs=0.5)
    assert search_adds_nothing(budget, 5000, epochs=4, known=3) is None  # 4 trials: 1 new
    why = search_adds_nothing(budget, 5000, epochs=4, known=4)
    assert "4 trial(s) of about 20 s" in why and "4 warm-start" in why
    assert search_adds_nothing(budget, 5000, epochs=4, known=0) is None  # nothing known


def test_a_cold_search_that_cannot_pay_for_two_trials_is_skipped():
    """Without a warm start, the first trial is a random draw that may cost several times
    the measured model: a search that cannot afford two trials of that model would overrun
    with its one obligatory trial, so it is skipped instead."""
    budget = RunBudget(100.0, seconds_per_example=0.001, final_examples=1000)
    why = search_adds_nothing(budget, 5000, epochs=10, known=0)  # trials of 50 s, 87 s left
    assert "do not pay for two trials of about 50 s" in why and "default one" in why
    assert search_adds_nothing(budget, 5000, epochs=8, known=0) is None  # 40 s: two trials


def test_a_cold_budget_that_affords_no_trial_trains_the_default_configuration(tiny_config):
    """No warm start and no time for a trial: the final stage trains the space's default
    point for the whole budget, registers it, and the run says why it searched nothing."""
    from src.data.dataset import load_dataset
    from src.model.hypermodel import CNNHyperModel

    # A share that is not capped by the final model's most epochs: tiny data's 30 are cheap.
    cfg = tiny_config(
        "budget=40s", "final.budget_share=0.95", "final.max_epochs=1000", "tuner.max_trials=null"
    )
    assert cfg.tuner.warm_start is None
    dataset = load_dataset(cfg.data, cfg.training.val_fraction)
    hp = keras_tuner.HyperParameters()
    CNNHyperModel(dict(cfg.search_space), dataset.input_shape, dataset.num_classes).build(hp)

    start = time.monotonic()
    result = run_pipeline(cfg, started=start)
    assert time.monotonic() - start <= 40 + 5
    search = result.search
    assert [(t.trial_id, t.score) for t in search.trials] == [("default", None)]
    assert "no warm start" in search.data["search_skipped"]
    assert search.budget["search_stopped_because"] == search.data["search_skipped"]
    assert result.final.hyperparameters == hp.values
    assert result.final.chosen_by == "the search space's default configuration"
    assert result.final.model_version is not None


def test_a_budget_that_affords_no_new_trial_retrains_the_warm_starts_best(tiny_config, tmp_path):
    """The final stage gets the whole budget and retrains the best recorded configuration;
    the run records that it searched nothing, and why."""
    from src.data.dataset import load_dataset
    from src.model.hypermodel import CNNHyperModel

    # A share that is not capped by the final model's most epochs: tiny data's 30 are cheap.
    cfg = tiny_config(
        "budget=40s", "final.budget_share=0.95", "final.max_epochs=1000", "tuner.max_trials=null"
    )
    dataset = load_dataset(cfg.data, cfg.training.val_fraction)
    space = dict(cfg.search_space)
    hp = keras_tuner.HyperParameters()
    CNNHyperModel(space, dataset.input_shape, dataset.num_classes).build(hp)
    best, worse = dict(hp.values), {**hp.values, "learning_rate": 0.009}
    recorded = tmp_path / "earlier" / "results.json"
    recorded.parent.mkdir()
    trials = [
        {"status": "COMPLETED", "score": 0.5, "hyperparameters": worse},
        {"status": "COMPLETED", "score": 0.9, "hyperparameters": best},
    ]
    recorded.write_text(json.dumps({"objective": "val_accuracy", "trials": trials}))
    cfg.tuner.warm_start = str(recorded)

    result = run_pipeline(cfg, started=time.monotonic())
    search = result.search
    assert [t.trial_id for t in search.trials] == ["warm_start"]
    assert search.best.hyperparameters == best and search.best.score == 0.9
    saved = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert "no search" in saved["data"]["search_skipped"]
    assert saved["budget"]["search_stopped_because"] == saved["data"]["search_skipped"]
    assert result.final.model_version is not None
    assert result.final.hyperparameters == best


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["tpe", "bayesian", "hyperband", "grid"])
def test_every_tuner_runs_within_a_budget(tiny_config, tuner):
    """`budget=` with each tuner: the budget ends the search (or the tuner does, for one
    that runs out of trials first), the final stage registers, the times add up."""
    # 60 s: opening the MLflow store and loading the data took 31 s of a 40 s budget once,
    # under the full suite on a slow shared machine, and the budget was refused.
    overrides = [f"tuner={tuner}", "budget=60s", "tuner.search_examples=150"]
    if tuner == "hyperband":
        overrides += ["tuner.max_epochs=2"]
    else:
        overrides += ["tuner.max_trials=null"]
    cfg = tiny_config(*overrides)
    start = time.monotonic()
    result = run_pipeline(cfg, started=start)
    elapsed = time.monotonic() - start
    budget = result.search.budget
    assert budget["search_stopped_because"], budget
    assert result.final.model_version is not None
    assert result.final.budget["search_s"] + result.final.budget["final_s"] <= (
        result.final.budget["spent_s"] + 1
    )
    assert elapsed <= 60 + 25, (elapsed, budget)
