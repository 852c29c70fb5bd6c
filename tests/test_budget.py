"""`budget=`: one wall-clock budget for the search and the final stage (`src.budget`'s rules).

The rules are driven with a fake clock in milliseconds; real budgeted pipelines are slow.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from helpers import compose_config, run_cli
from mlflow import MlflowClient

from src.budget import (
    BUDGET_FILE,
    RunBudget,
    parse_duration,
    plan_final,
    refit_epochs,
)
from src.config.rules import validate_config
from src.data.dataset import Dataset, Split
from src.errors import ConfigError
from src.model.backend import ScheduleFittedToTime, StopAtDeadline
from src.pipeline import run_pipeline
from src.search.budgeting import measure_costs, search_digits, search_subset


class _Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _budget(total: float, clock: _Clock | None = None, **rules) -> RunBudget:
    return RunBudget(total, clock=clock or _Clock(), **rules)


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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budget_policy.final_share=1.5", r"^budget_policy.final_share=1.5: expected a number"),
        ("budget_policy.min_trials=0", r"^budget_policy.min_trials=0: expected an integer >= 1"),
        ("+budget_policy.share=0.5", r"^budget_policy.share: no such key"),
    ],
)
def test_a_bad_budget_policy_key_is_refused_with_its_name(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_config([override]))


def test_a_budget_below_the_final_stages_overhead_is_refused_before_anything_loads(tmp_path):
    start = time.perf_counter()
    result = run_cli("experiment=quick", "budget=10s", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: budget='10s': the final stage's share (0.5) must hold at least "
        "budget_policy.final_overhead_s=12; give budget=24s or more"
    ]
    assert time.perf_counter() - start < 10
    assert not list(tmp_path.rglob("results.json"))


# -- rule 1: what an epoch costs ---------------------------------------------------------------


def test_a_trials_first_epoch_prices_only_that_trial_until_its_later_ones_are_timed():
    budget = _budget(600)
    budget.observe_epoch(1.0, 1000)  # the calibration: 1 ms a digit
    budget.observe_epoch(5.0, 1000, trial_id="0", traced=True)  # tracing: 5 ms
    assert budget.rate() == pytest.approx(0.001)  # the estimate for other models: untouched
    assert budget.rate("0") == pytest.approx(0.005)
    for seconds in (2.0, 9.0, 2.0):  # later epochs, one of them slow on a shared machine
        budget.observe_epoch(seconds, 1000, trial_id="0")
    assert budget.rate("0") == pytest.approx(0.002)  # the lower median of the last three
    assert budget.epoch_s(10_000, "0") == pytest.approx(20.0)
    assert budget.epoch_s(10_000, "never trained") == pytest.approx(10_000 * budget.rate())


# -- rule 2: what the final stage keeps ------------------------------------------------------


def test_the_final_stage_keeps_its_share_and_never_less_than_one_epoch_and_its_overhead():
    budget = _budget(240, final_share=0.5, final_overhead_s=12)
    budget.final_examples = 10_000
    budget.observe_epoch(1.0, 1000)  # 10 s an epoch of the final model
    assert budget.final_kept_s() == pytest.approx(120)
    budget.observe_epoch(300.0, 1000)  # now 150 s an epoch (the average of 1 and 299 ms)
    assert budget.final_kept_s() == pytest.approx(12 + 10_000 * 0.1505)
    assert _budget(240, final_share=0.0).final_kept_s() == 0  # the final stage is off


# -- rule 3: whether another trial may start ------------------------------------------------


def test_trials_start_while_the_searchs_share_pays_a_first_epoch(caplog):
    clock = _Clock()
    budget = _budget(100, clock, final_share=0.5)
    budget.trial_examples, budget.trial_fixed_s = 1000, 2.0
    budget.observe_epoch(3.0, 1000)  # a trial's first epoch: 2 + 3 = 5 s
    clock.now = 44.0  # 50 s for the search, 6 left
    assert budget.may_start_trial(trials_so_far=3)
    clock.now = 45.5  # 4.5 s left: not enough
    with caplog.at_level(logging.INFO, logger="src.budget"):
        assert not budget.may_start_trial(trials_so_far=4)
    assert budget.search_stopped_because.startswith("budget: 4 s left in the search's share")
    assert budget.search_stopped_because in caplog.text
    clock.now = 99.0
    assert budget.may_start_trial(trials_so_far=0)  # the first trial always starts


def test_the_smallest_budget_pays_start_up_min_trials_and_the_final_stages_first_epoch():
    clock = _Clock()
    budget = _budget(60, clock, final_share=0.5, final_overhead_s=12, min_trials=8)
    budget.trial_examples, budget.final_examples, budget.trial_fixed_s = 1000, 10_000, 2.0
    budget.observe_epoch(1.0, 1000)  # trials: 3 s each; the final model: 10 s an epoch
    clock.now = 10.0  # start-up spent
    assert budget.smallest_budget_s() == pytest.approx((10 + 8 * 3) / 0.5)  # 68 s
    budget.final_examples = 100_000  # 100 s an epoch: the final stage's side decides
    assert budget.smallest_budget_s() == pytest.approx((12 + 100) / 0.5)


def test_a_budget_too_small_for_a_search_is_refused_in_one_line_before_training(tiny_config):
    cfg = tiny_config("budget=30s")
    budget = RunBudget(30.0, min_trials=8, seconds_per_example=0.002, trial_fixed_s=2.0)
    split = _digits(300)
    with pytest.raises(ConfigError) as error:
        measure_costs(
            budget, cfg, Dataset("tiny", "test", "digest", split, split, split), None, split
        )
    message = str(error.value)
    assert message.startswith("budget=30s: too small for a search on this machine: 8 trials")
    assert "\n" not in message
    smallest = int(message.rsplit("budget=", 1)[1].split("s ")[0])
    assert smallest == math.ceil(budget.smallest_budget_s()) and smallest > 30


def test_a_distributed_chief_asks_for_one_trial_and_a_worker_never_refuses(tiny_config):
    """Workers run trials side by side, as many as the cluster has: the chief's minimum is
    one trial's time (its clock ends the search), and a worker leaves the deciding to it."""
    split = _digits(300)
    dataset = Dataset("tiny", "test", "digest", split, split, split)
    for role, budget_s in (("chief", 30), ("worker", 1)):
        cfg = tiny_config(f"budget={budget_s}s", f"distributed.role={role}")
        budget = RunBudget(float(budget_s), min_trials=8, seconds_per_example=0.002)
        budget.trial_fixed_s = 2.0
        measure_costs(budget, cfg, dataset, None, split)  # no refusal
    cfg = tiny_config("budget=5s", "distributed.role=chief")
    budget = RunBudget(5.0, min_trials=8, seconds_per_example=0.002, trial_fixed_s=2.0)
    with pytest.raises(ConfigError, match=r"^budget=5s: too small .*: 1 trial \(about"):
        measure_costs(budget, cfg, dataset, None, split)


def test_the_cli_refuses_a_budget_too_small_for_a_search_and_leaves_nothing_running(tmp_path):
    """As a user meets it: one line naming the smallest budget, exit 1, no trial trained,
    no results written, no MLflow run left RUNNING."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "budget=30s",
        "data=mnist_10k",
        f"mlflow.tracking_uri={store}",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: budget=30s: too small for a search on this machine: 6 trials")
    assert int(last.rsplit("budget=", 1)[1].split("s ")[0]) > 30
    assert not (tmp_path / "run" / "results.json").exists()
    assert "trial 1" not in result.stderr
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert all(run.info.status != "RUNNING" for run in runs)


# -- rule 4: the final plan ---------------------------------------------------------------------


def test_the_final_stage_gives_up_seeds_first_then_epochs():
    clock = _Clock()
    budget = _budget(200, clock, final_overhead_s=12, seconds_per_example=0.001)  # 10 s epochs
    plenty = plan_final(budget, 4, [1, 2, 3], True, 10_000)
    assert (plenty.epochs, plenty.seeds, plenty.ensemble) == (4, [1, 2, 3], True)
    clock.now = 200 - 12 - 45  # 45 s: four epochs of one seed
    tight = plan_final(budget, 4, [1, 2, 3], True, 10_000)
    assert (tight.epochs, tight.seeds, tight.ensemble) == (4, [1], False)
    clock.now = 200 - 12 - 25  # two epochs
    tighter = plan_final(budget, 4, [1, 2, 3], True, 10_000)
    assert (tighter.epochs, tighter.seeds) == (2, [1])
    assert "2 epoch(s) x 1 seed(s) instead of 4 x 3" in tighter.note
    clock.now = 200  # nothing left: one epoch of one seed all the same
    assert (plan_final(budget, 4, [1, 2], False, 10_000).epochs, 1) == (1, 1)
    assert plan_final(None, 4, [1, 2], True, 10_000).seeds == [1, 2]  # no budget


def test_time_left_over_fills_the_schedule_up_to_its_cap_or_buys_an_ensemble():
    budget = _budget(200, final_overhead_s=12, seconds_per_example=0.001)  # 18 epochs of 10 s
    assert plan_final(budget, 4, [1], False, 10_000, fill_up_to=30).epochs == 18
    assert plan_final(budget, 4, [1], False, 10_000, fill_up_to=12).epochs == 12
    assert plan_final(budget, 4, [1, 2], False, 10_000, fill_up_to=30).epochs == 9
    three = plan_final(budget, 4, [42], False, 10_000, 30, ensemble_epochs=6, max_members=3)
    assert (three.epochs, three.seeds, three.ensemble) == (6, [42, 43, 44], True)
    two = plan_final(budget, 4, [42], False, 10_000, 30, ensemble_epochs=6, max_members=2)
    assert (two.epochs, two.seeds) == (9, [42, 43])
    one = plan_final(budget, 4, [42], False, 10_000, 30, ensemble_epochs=10, max_members=3)
    assert (one.seeds, one.ensemble) == ([42], False)


def test_the_final_plan_prices_the_retrained_trials_own_epochs():
    budget = _budget(200, final_overhead_s=12, seconds_per_example=0.001)
    budget.observe_epoch(0.5, 1000, trial_id="cheap")
    budget.observe_epoch(4.0, 1000, trial_id="dear")
    assert plan_final(budget, 4, [1], False, 10_000, 100, trial_id="cheap").epochs == 37
    assert plan_final(budget, 4, [1], False, 10_000, 100, trial_id="dear").epochs == 4


# -- rule 5: the refit after each epoch ------------------------------------------------------


def test_the_refit_counts_what_the_time_left_pays_at_the_measured_epochs():
    # 10-s epochs after a 14-s first one, 50 s left after 2 done: 2 + 5 = 7 epochs.
    assert refit_epochs(2, [14, 10], 50, most=30) == 7.0
    assert refit_epochs(2, [14, 10], 55, most=30) == 7.5  # to the step, not the epoch
    assert refit_epochs(2, [14, 10], 50, most=6) == 6.0  # capped
    assert refit_epochs(3, [14, 10, 10], 0, most=30) == 3.0  # none left: stop after this one
    assert refit_epochs(3, [14, 10, 10], -5, most=30) == 3.0  # overrun: the same
    # Shared with one more model of the same count: (50 / 10 + 2) / 2 = 3.5.
    assert refit_epochs(2, [14, 10], 50, most=30, models_after=1) == 3.5


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


class _Rates(keras.callbacks.Callback):
    """The optimizer's learning rate at every step, read as the step runs."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def _cosine_fit(fitted: ScheduleFittedToTime, most: int, slow_s: float = 0.0) -> list[float]:
    """A tiny model (8 steps an epoch) trained through the hypermodel's cosine schedule,
    fitted by ``fitted``: the learning rate of every step it trained."""
    from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((64, 4), "float32"), np.zeros(64, "int32")

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(slow_s)

    rates = _Rates()
    hp = fixed_hyperparameters({"learning_rate": 0.01, "lr_schedule": "cosine"})
    CNNHyperModel.fit(
        SimpleNamespace(),  # fit reads nothing of the hypermodel but the hyperparameters
        hp,
        model,
        x,
        y,
        epochs=most,
        batch_size=8,
        verbose=0,
        callbacks=[Slow(), fitted, rates],
        fitted=fitted,
    )
    return rates.rates


def test_a_final_model_trains_the_steps_its_measured_time_pays_and_anneals_to_zero():
    """Planned from an estimate, a final model's length is refitted after its first epoch
    from its measured time: up to its cap where time is plentiful, with the cosine rate
    falling every step to zero at the last; one epoch where none is left."""
    plenty = ScheduleFittedToTime(lambda: 1e6, planned=2, most=6)
    rates = _cosine_fit(plenty, most=6)
    assert len(rates) == 6 * 8 and plenty.trained_epochs == 6
    # The first epoch decays over the planned 2 epochs (16 steps) ...
    expected = [0.01 * 0.5 * (1 + np.cos(np.pi * step / 16)) for step in range(8)]
    np.testing.assert_allclose(rates[:8], expected, rtol=1e-5)
    # ... the rest from where it stood to zero over the 40 steps left.
    assert (np.diff(rates) <= 1e-9).all() and rates[-1] < 1e-4

    none_left = ScheduleFittedToTime(lambda: 0.0, planned=5, most=5)
    assert len(_cosine_fit(none_left, most=5)) == 8  # the first epoch, then stop

    # Epochs of at least 0.2 s and 5 s to the deadline, shared with one more model of the
    # same count: at most (5 / 0.2) / 2 = 12.5 epochs each, where alone it would train 25.
    deadline = time.perf_counter() + 5.0
    shared = ScheduleFittedToTime(
        lambda: deadline - time.perf_counter(), planned=30, most=30, models_after=1
    )
    _cosine_fit(shared, most=30, slow_s=0.2)
    assert 2 <= shared.trained_epochs <= 12.5, shared.trained_epochs


def _train_epochs(
    fitted: ScheduleFittedToTime,
    clock: _Clock,
    seconds: list[float],
    steps: int = 10,
    model: keras.Model | None = None,
) -> float:
    """Drive the callback through epochs of the given lengths (``steps`` batches each), as
    `fit` would; the epochs trained, a partial last one as its fraction, when it stops."""
    model = model or keras.Sequential([keras.Input((1,))])
    model.stop_training = False  # as fit sets it
    fitted.set_model(model)
    fitted.set_params({"steps": steps, "epochs": len(seconds), "verbose": 0})
    fitted.on_train_begin()
    for epoch, took in enumerate(seconds):
        fitted.on_epoch_begin(epoch)
        for batch in range(steps):
            fitted.on_train_batch_begin(batch)
            clock.now += took / steps
            fitted.on_train_batch_end(batch)
            if model.stop_training:
                break
        fitted.on_epoch_end(epoch, {})
        if model.stop_training:
            break
    return fitted.trained_epochs


def test_the_last_epoch_is_cut_to_the_steps_the_time_pays():
    """10-s epochs (the first 14: tracing) and 100 s to the deadline: 14 + 10 x 8.6 = 100,
    so 9.6 epochs train, the last one stopped at its sixth step, not dropped whole."""
    clock = _Clock()
    fitted = ScheduleFittedToTime(lambda: 100.0 - clock.now, planned=4, most=30, clock=clock)
    trained = _train_epochs(fitted, clock, [14] + [10] * 20)
    assert trained == pytest.approx(9.6) and clock.now == pytest.approx(100.0)


def test_one_slow_epoch_does_not_cut_the_final_models_schedule():
    """One epoch of 25 s on a shared machine costs the schedule the 15 s it lost, not the
    epochs that timing by the last epoch alone would cut."""
    clock = _Clock()
    fitted = ScheduleFittedToTime(lambda: 100.0 - clock.now, planned=4, most=30, clock=clock)
    trained = _train_epochs(fitted, clock, [14, 10, 25, 10, 10, 10, 10, 10, 10, 10])
    assert trained == pytest.approx(8.1) and clock.now == pytest.approx(100.0)  # 14+10+25+51


def test_the_schedule_grows_and_shrinks_with_the_machine_and_its_rate_never_rises():
    """A machine that speeds up late: the steps grow into the time that frees, up to the
    deadline, the rate falling all the while; one that slows down late still stops in time."""
    clock = _Clock()
    fitted = ScheduleFittedToTime(lambda: 300.0 - clock.now, planned=3, most=30, clock=clock)
    fitted.anneal_from(1.0)
    rates = []

    class Optimizer:
        @property
        def learning_rate(self):
            return rates[-1]

        @learning_rate.setter
        def learning_rate(self, value):
            rates.append(value)

    model = keras.Sequential([keras.Input((1,))])
    model.optimizer = Optimizer()
    trained = _train_epochs(fitted, clock, [30] * 4 + [10] * 30, model=model)
    assert trained == pytest.approx(22.0) and clock.now == pytest.approx(300.0)
    assert (np.diff(rates) <= 1e-12).all() and rates[-1] < 0.01
    clock = _Clock()
    slowing = ScheduleFittedToTime(lambda: 120.0 - clock.now, planned=10, most=10, clock=clock)
    trained = _train_epochs(slowing, clock, [10, 10, 10, 10, 40, 40, 40, 40, 40, 40])
    assert clock.now <= 120.0 + 1e-9 and trained < 10


def test_search_examples_are_a_stratified_subset():
    split = _digits(1000)
    subset = search_subset(split, 200, seed=0)
    assert len(subset) == 200
    assert np.bincount(subset.labels, minlength=10).min() >= 18
    assert search_digits(1000, 200) == 200 and search_digits(1000, None) == 1000
    assert search_subset(split, None, seed=0) is split
    assert search_subset(split, 5000, seed=0) is split


def test_a_resumed_run_counts_the_time_spent_before(tmp_path):
    first = RunBudget.start("5m", tmp_path, started=time.monotonic() - 40)
    first.save(tmp_path)
    assert json.loads((tmp_path / BUDGET_FILE).read_text())["spent_s"] >= 40
    resumed = RunBudget.start("5m", tmp_path, resume=True)
    assert resumed.spent() >= 40 and resumed.left() <= 260
    assert RunBudget.start("5m", tmp_path).spent() < 5  # a fresh run starts from zero
    (tmp_path / BUDGET_FILE).write_text("{damaged")
    assert RunBudget.start("5m", tmp_path, resume=True).spent() < 5


def _digits(count: int) -> Split:
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 10
    return Split(rng.random((count, 28, 28, 1), dtype=np.float32), labels.astype(np.int32))


@pytest.mark.slow
def test_a_budgeted_run_searches_stops_in_time_and_still_registers(tiny_config):
    """With no trial cap the budget alone ends the search; the final stage still trains on
    every digit and registers its model; the recorded parts add up within the budget."""
    cfg = tiny_config(
        "budget=45s",
        "budget_policy.min_trials=2",
        "tuner.max_trials=null",
        "tuner.search_examples=128",
        "training.epochs=1",
    )
    start = time.monotonic()
    result = run_pipeline(cfg, started=start)
    elapsed = time.monotonic() - start
    search, final = result.search, result.final
    budget = search.budget
    assert budget["search_stopped_because"].startswith("budget:"), budget
    assert len(search.trials) >= 2
    assert search.data["search_examples"] == 128
    assert final.model_version is not None
    recorded = final.budget
    assert recorded["search_s"] + recorded["final_s"] <= recorded["spent_s"] + 1
    assert list(final.parts_s) == ["training", "testing", "robustness", "reporting", "registering"]
    assert sum(final.parts_s.values()) == pytest.approx(recorded["final_s"], abs=0.1)
    after = recorded["final_s"] - final.parts_s["training"]
    assert recorded["final_after_training_s"] == pytest.approx(after, abs=0.05)
    client = MlflowClient(cfg.mlflow.tracking_uri)
    parent_id = client.get_run(final.run_id).data.tags["mlflow.parentRunId"]
    metrics = client.get_run(parent_id).data.metrics
    assert metrics["budget_s"] == 45
    assert metrics["budget_final_s"] == pytest.approx(recorded["final_s"])
    trial_runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and tags.run_kind = 'trial'",
    )
    assert len(trial_runs) == len(search.trials)
    assert {run.data.tags["fidelity.train_digits"] for run in trial_runs} == {"128"}
    assert all(run.data.metrics["epochs_trained"] >= 1 for run in trial_runs)
    # At most one epoch of the final model over (tiny data: seconds, more when the other
    # test worker shares the cores).
    assert elapsed <= 45 + 25, (elapsed, recorded)
    folder = Path(cfg.paths.output_dir)
    saved = json.loads((folder / "results.json").read_text())
    assert saved["budget"]["search_stopped_because"] == budget["search_stopped_because"]
    card = (folder / "final" / "model_card.md").read_text()
    assert "## Time budget" in card


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["tpe", "random", "bayesian", "hyperband", "grid"])
def test_every_tuner_searches_within_a_budget(tiny_config, tuner):
    """`budget=` with each tuner: trials run and the budget ends the search (or the tuner
    does, for one that runs out of trials first), the final stage registers, the times add
    up."""
    overrides = [
        f"tuner={tuner}",
        "budget=60s",
        "budget_policy.min_trials=2",
        "tuner.search_examples=128",
        "tuner.max_trials=null",
    ]
    if tuner == "hyperband":
        overrides += ["tuner.max_epochs=2"]
    cfg = tiny_config(*overrides)
    start = time.monotonic()
    result = run_pipeline(cfg, started=start)
    elapsed = time.monotonic() - start
    budget = result.search.budget
    assert budget["search_stopped_because"], budget
    assert len(result.search.trials) >= 2
    assert result.final.model_version is not None
    assert result.final.budget["search_s"] + result.final.budget["final_s"] <= (
        result.final.budget["spent_s"] + 1
    )
    assert elapsed <= 60 + 25, (elapsed, budget)
