"""Each tuner completes a tiny search; failures, NaN losses and results are reported honestly."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import keras_tuner
import pytest
from helpers import GROUP_OPTIONS, search_builds

from src.errors import ConfigError, SearchFailed
from src.search.observers import TrialObserver
from src.search.stage import run_search
from src.search.tuner_factory import build_tuner, tuner_class


class _DenseHyperModel(keras_tuner.HyperModel):
    """A one-layer stand-in for the CNN: the tuners' bookkeeping in a second per trial."""

    def build(self, hp):
        units = hp.Choice("units", [4, 8, 16])
        learning_rate = hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
        model.compile(
            keras.optimizers.Adam(learning_rate),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model


@pytest.mark.parametrize("tuner", GROUP_OPTIONS["tuner"])
def test_each_tuner_completes_a_tiny_search(
    tuner, tiny_config, tiny_dataset, tmp_path, monkeypatch
):
    search_builds(monkeypatch, lambda: _DenseHyperModel())
    cfg = tiny_config(f"tuner={tuner}", "training.epochs=2")
    result = run_search(cfg, tiny_dataset)
    assert len(result.trials) >= 2
    assert all(t.status == "COMPLETED" for t in result.trials)
    if tuner != "hyperband":
        assert len(result.trials) == 2
    best = result.best
    assert best.score == max(t.score for t in result.trials)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["best"]["trial_id"] == best.trial_id
    assert written["best"]["score"] == pytest.approx(best.score)
    assert written["data"]["name"] == "mnist_10k"
    assert len(written["trials"]) == len(result.trials)


class _RecordingObserver(TrialObserver):
    def __init__(self):
        self.events = []

    def on_search_begin(self, tuner):
        self.events.append("search_begin")

    def on_trial_begin(self, tuner, trial):
        self.events.append(f"trial_begin {trial.trial_id}")

    def on_epoch_end(self, tuner, trial, epoch, logs):
        self.events.append(f"epoch {trial.trial_id} {epoch} {sorted(logs)}")

    def on_trial_end(self, tuner, trial):
        scored = tuner.oracle.get_trial(trial.trial_id)
        self.events.append(f"trial_end {trial.trial_id} {scored.status} {scored.score is not None}")

    def on_search_end(self, tuner):
        self.events.append("search_end")


def test_a_finished_trials_graphs_are_let_go(tiny_config, tiny_dataset):
    """TensorFlow registers a gradient function for every traced training step and never
    lets it go, keeping each trial's whole graph alive (12 MB a model); after each trial the
    search drops those its trials registered, so memory stays flat over many trials."""
    from src.model.backend import custom_gradient_names

    before = custom_gradient_names()
    run_search(tiny_config("tuner.max_trials=3"), tiny_dataset)
    assert custom_gradient_names() <= before


def test_observers_hear_every_hook_in_order(tiny_config, tiny_dataset):
    observer = _RecordingObserver()
    run_search(tiny_config("training.epochs=2", "tuner.max_trials=1"), tiny_dataset, [observer])
    metrics = ["accuracy", "loss", "val_accuracy", "val_loss"]
    trial_id = observer.events[1].split()[1]
    assert observer.events == [
        "search_begin",
        f"trial_begin {trial_id}",
        f"epoch {trial_id} 0 {metrics}",
        f"epoch {trial_id} 1 {metrics}",
        f"trial_end {trial_id} COMPLETED True",
        "search_end",
    ]


class _ExplodingHyperModel(keras_tuner.HyperModel):
    """A tiny model whose loss becomes NaN when `explode` is chosen."""

    def build(self, hp):
        explode = hp.Choice("explode", [False, True])
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Flatten()(inputs)
        if explode:
            x = keras.layers.Lambda(lambda t: t * float("nan"))(x)
        outputs = keras.layers.Dense(10, activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def _tiny_tuner(hypermodel, tmp_path, **overrides):
    tuner_cfg = {
        "_target_": "keras_tuner.GridSearch",
        "name": "grid",
        "objective": "val_accuracy",
        "max_trials": 2,
        "seed": 0,
        "executions_per_trial": 1,
        "max_retries_per_trial": 0,
        "max_consecutive_failed_trials": 3,
        "directory": str(tmp_path),
        "project_name": "tuner",
        "overwrite": True,
        **overrides,
    }
    return build_tuner(tuner_cfg, hypermodel)


def _learning_rates(tuner: keras_tuner.Tuner, count: int) -> list[float]:
    """The learning rates of the tuner's first trials, drawn through its oracle's hooks."""
    rates = []
    for _ in range(count):
        trial = tuner.oracle.create_trial("tuner0")
        rates.append(trial.hyperparameters.get("learning_rate"))
        tuner.oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
        tuner.oracle.end_trial(trial)
    return rates


@pytest.mark.parametrize("target", ["keras_tuner.RandomSearch", "keras_tuner.BayesianOptimization"])
def test_neighbouring_tuner_seeds_draw_unrelated_trials(tmp_path, target):
    """Keras Tuner draws its n-th value with seed + n, so with two values per trial tuner
    seed 3 drew seed 1's trials shifted by one; the seed handed to it is mixed instead."""
    rates = {
        folder: _learning_rates(
            _tiny_tuner(
                _DenseHyperModel(), tmp_path / folder, _target_=target, seed=seed, max_trials=6
            ),
            6,
        )
        for seed, folder in ((1, "a"), (3, "b"), (1, "c"))
    }
    assert rates["a"] == rates["c"]
    assert not set(rates["a"]) & set(rates["b"])


def test_nan_loss_fails_the_trial(tiny_dataset, tmp_path):
    tuner = _tiny_tuner(_ExplodingHyperModel(), tmp_path)
    train, val = tiny_dataset.train, tiny_dataset.val
    tuner.search(
        train.images,
        train.labels,
        validation_data=(val.images, val.labels),
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    )
    statuses = {t.hyperparameters.values["explode"]: t.status for t in tuner.oracle.trials.values()}
    assert statuses == {False: "COMPLETED", True: "FAILED"}
    failed = next(t for t in tuner.oracle.trials.values() if t.status == "FAILED")
    assert "loss became nan at epoch 0" in failed.message


class _BrokenHyperModel(keras_tuner.HyperModel):
    """Builds for the default value (Keras Tuner builds once up front), then always raises."""

    def build(self, hp):
        units = hp.Int("units", 1, 4)
        if self.broken:
            raise ValueError(f"cannot build with units={units}")
        inputs = keras.Input((28, 28, 1))
        outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, outputs)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def test_search_where_every_trial_fails_raises_with_the_first_error(
    tiny_config, tiny_dataset, monkeypatch
):
    hypermodel = _BrokenHyperModel()
    hypermodel.broken = False

    class _BreakAfterInit(TrialObserver):
        def on_search_begin(self, tuner):
            hypermodel.broken = True

    search_builds(monkeypatch, lambda: hypermodel)
    cfg = tiny_config("tuner.max_consecutive_failed_trials=5")
    with pytest.raises(SearchFailed, match="every trial failed; the first with: ValueError"):
        run_search(cfg, tiny_dataset, [_BreakAfterInit()])


def test_consecutive_failures_after_a_good_trial_stop_the_search_and_say_so(
    tiny_config, tiny_dataset, monkeypatch
):
    """Keras Tuner's own limit (max_consecutive_failed_trials) stops a search that had a
    good trial: the stopped-early path, not the every-trial-failed one."""
    hypermodel = _BrokenHyperModel()
    hypermodel.broken = False

    class _BreakAfterFirstTrial(TrialObserver):
        def on_trial_end(self, tuner, trial):
            hypermodel.broken = True

    search_builds(monkeypatch, lambda: hypermodel)
    cfg = tiny_config("tuner.max_consecutive_failed_trials=2", "tuner.max_trials=6")
    with pytest.raises(SearchFailed, match="Keras Tuner stopped the search: "):
        run_search(cfg, tiny_dataset, [_BreakAfterFirstTrial()])
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED", "FAILED", "FAILED"]
    assert "consecutive" in results["stopped_early"]


@pytest.mark.slow
def test_a_trial_scores_the_same_whatever_ran_before_it(tiny_config, tiny_dataset):
    small_space = [
        "search_space.filters=[16]",
        "search_space.dense_units=[32]",
        "search_space.conv_layers=[2,4]",
    ]
    two_trials = run_search(tiny_config(*small_space), tiny_dataset)
    second = two_trials.trials[1]
    values = second.hyperparameters
    alone = run_search(
        tiny_config(
            *small_space,
            f"search_space.conv_layers=[{values['conv_layers']}]",
            f"search_space.learning_rate={{min:{values['learning_rate']!r},"
            f"max:{values['learning_rate']!r}}}",
            f"search_space.dropout={{min:{values['dropout']!r},max:{values['dropout']!r}}}",
            "tuner.max_trials=1",
        ),
        tiny_dataset,
    )
    assert alone.trials[0].hyperparameters == values
    assert alone.trials[0].score == second.score


@pytest.mark.parametrize(
    ("tuner_cfg", "message"),
    [
        ({"_target_": "keras_tuner.Nonsense"}, r"tuner\._target_='keras_tuner\.Nonsense': cannot"),
        ({"_target_": "keras_tuner.HyperModel"}, "not a keras_tuner.Tuner class"),
        ({"_target_": "keras_tuner.RandomSearch", "num_initial_points": 2}, "tuner.num_initial"),
        ({"_target_": "keras_tuner.Hyperband", "alpha": 1e-4}, r"tuner\.alpha: Hyperband takes"),
    ],
)
def test_tuner_class_and_its_arguments_are_checked_against_keras_tuner(tuner_cfg, message):
    with pytest.raises(ConfigError, match=message):
        tuner_class(tuner_cfg)


def test_any_keras_tuner_class_with_its_own_arguments_is_accepted():
    bayesian = {"_target_": "keras_tuner.BayesianOptimization", "alpha": 1e-4, "beta": 2.6}
    assert tuner_class(bayesian) is keras_tuner.BayesianOptimization
    capped = {"_target_": "keras_tuner.Hyperband", "max_epochs": 3, "max_trials": 2}
    assert tuner_class(capped) is keras_tuner.Hyperband
