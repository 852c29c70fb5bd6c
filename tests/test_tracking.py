"""MLflow tracking: parent and child runs, failures, interruptions, resumption, a real server."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import keras_tuner
import pytest
from helpers import (
    TINY_OVERRIDES,
    all_runs,
    search_builds,
    tracked_run,
)

from src.search.observers import TrialObserver
from src.stats import accuracy_with_interval

PARENT_TAG = "mlflow.parentRunId"


def split_runs(runs):
    """The parent runs and the trials' child runs (the final stage's run left out)."""
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("run_kind") == "trial"]
    return parents, children


def test_search_logs_one_parent_and_one_child_per_trial(tiny_config, tiny_dataset, tmp_path):
    cfg = tiny_config("training.epochs=2", "tuner.max_trials=3")
    result, parent_run_id = tracked_run(cfg)
    client, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.run_id == parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "random-cnn"
    assert parent.data.tags["data.source"] == "mnist_10k"
    assert parent.data.tags["data.train_size"] == "300"
    assert parent.data.params["training.epochs"] == "2"
    assert parent.data.params["search_space.learning_rate.max"] == "0.01"
    assert parent.data.tags["best_trial_id"] == result.best.trial_id
    assert parent.data.metrics["best_score"] == pytest.approx(result.best.score)
    assert parent.inputs.dataset_inputs[0].dataset.name == "mnist_10k"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "results.json"} <= artifacts
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    by_trial = {run.data.tags["trial_id"]: run for run in children}
    assert set(by_trial) == {t.trial_id for t in result.trials}
    ranked = sorted(result.trials, key=lambda t: -t.score)
    for trial in result.trials:
        run = by_trial[trial.trial_id]
        assert run.data.tags[PARENT_TAG] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in trial.hyperparameters.items()}
        assert run.data.metrics["trial_score"] == pytest.approx(trial.score)
        assert run.data.metrics["best_epoch"] == trial.best_step
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [0, 1]
        assert max(m.value for m in history) == pytest.approx(trial.score)
        for metric in ("loss", "accuracy", "val_loss"):
            assert len(client.get_metric_history(run.info.run_id, metric)) == 2
        assert run.data.tags["rank"] == str(ranked.index(trial) + 1)
        # What its model costs, measured the same way for every trial.
        assert run.data.metrics["cost_params"] == trial.cost["params"] > 0
        for figure in ("flops_per_image", "latency_ms", "throughput_per_s"):
            assert run.data.metrics[f"cost_{figure}"] == pytest.approx(trial.cost[figure])
            assert trial.cost[figure] > 0
    assert {"pareto_front.json", "pareto_front.png"} <= artifacts
    front = json.loads(
        (Path(client.download_artifacts(parent.info.run_id, "pareto_front.json"))).read_text()
    )["front"]
    assert front and {row["trial_id"] for row in front} <= set(by_trial)
    # Three trials are too few to say which knob mattered; the parent says why.
    assert parent.data.tags["importance"].startswith("3 trial(s) trained an epoch")
    # Inactive conditional hyperparameters are not logged.
    for run in children:
        layers = int(run.data.params["conv_layers"])
        assert f"filters_{layers - 1}" in run.data.params
        assert f"filters_{layers}" not in run.data.params


class _PickyHyperModel(keras_tuner.HyperModel):
    """Raises for one value of `units`, builds a tiny model otherwise."""

    def build(self, hp):
        units = hp.Choice("units", [8, 16, 99])
        if units == 99:
            raise ValueError("units=99 is not supported")
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def test_failing_trial_is_logged_failed_with_its_error(tiny_config, tiny_dataset, monkeypatch):
    search_builds(monkeypatch, lambda: _PickyHyperModel())
    cfg = tiny_config("tuner=grid", "tuner.max_trials=3")
    tracked_run(cfg)
    _, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    statuses = {r.data.params["units"]: r.info.status for r in children}
    assert statuses == {"8": "FINISHED", "16": "FINISHED", "99": "FAILED"}
    failed = next(r for r in children if r.info.status == "FAILED")
    assert "units=99 is not supported" in failed.data.tags["error"]
    assert "trial_score" not in failed.data.metrics
    assert parents[0].info.status == "FINISHED"


class _InterruptInSecondTrial(TrialObserver):
    def on_epoch_end(self, tuner, trial, epoch, logs):
        if len(tuner.oracle.trials) == 2:
            raise KeyboardInterrupt


def test_interrupted_search_leaves_no_running_runs(tiny_config, tiny_dataset):
    cfg = tiny_config("tuner.max_trials=3")
    with pytest.raises(KeyboardInterrupt):
        tracked_run(cfg, _InterruptInSecondTrial())
    _, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert sorted(r.info.status for r in children) == ["FINISHED", "KILLED"]


class _OneRateCannotLearn(keras_tuner.HyperModel):
    """A tiny model; learning rate 0 leaves it at chance (a trial a pruner should stop)."""

    def build(self, hp):
        rate = hp.Choice("learning_rate", [0.01, 0.0])
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
        model.compile(
            keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        return model


def test_a_pruned_trial_is_visible_as_such(tiny_config, tiny_dataset, monkeypatch):
    """Status, the epoch it stopped at, the pruner's reason and its curve up to there; the
    parent counts the pruned trials and the epochs they saved."""
    search_builds(monkeypatch, lambda: _OneRateCannotLearn())
    cfg = tiny_config(
        "tuner=grid",
        "training.epochs=4",
        "tuner.pruner={name: threshold, lower: 0.3, n_warmup_steps: 2}",
    )
    result, _ = tracked_run(cfg)
    assert [(t.status, t.epochs_run) for t in result.trials] == [("COMPLETED", 4), ("PRUNED", 2)]
    client, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    pruned = next(r for r in children if r.data.params["learning_rate"] == "0.0")
    assert pruned.info.status == "FINISHED"
    assert pruned.data.tags["trial_status"] == "PRUNED"
    assert pruned.data.metrics["pruned_at_epoch"] == 2
    assert pruned.data.tags["pruned_reason"].startswith(
        "pruned by ThresholdPruner after epoch 2: val_accuracy 0.1"
    )
    history = client.get_metric_history(pruned.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    completed = next(r for r in children if r.data.params["learning_rate"] == "0.01")
    assert completed.data.tags["trial_status"] == "COMPLETED"
    assert len(client.get_metric_history(completed.info.run_id, "val_accuracy")) == 4
    # Every score carries its interval on the validation digits.
    low, high = (
        completed.data.metrics["trial_score_ci_low"],
        completed.data.metrics["trial_score_ci_high"],
    )
    assert low < completed.data.metrics["trial_score"] < high
    assert parents[0].data.metrics["trials_pruned"] == 1
    assert parents[0].data.metrics["trials_epochs_saved"] == 2
    assert parents[0].data.tags["best_trial_id"] == result.best.trial_id != "1"


def test_a_cross_validated_trial_logs_one_curve_per_fold(tiny_config, tiny_dataset, monkeypatch):
    """`tuner.cv_folds=2`: each trial trains once per fold of the training and validation
    digits; its score is the mean of the folds' best validation accuracies, scored on all
    of those digits, and MLflow holds each fold's curve."""
    from test_search import _DenseHyperModel

    search_builds(monkeypatch, lambda: _DenseHyperModel())
    cfg = tiny_config("tuner.cv_folds=2", "training.epochs=2", "tuner.max_trials=1")
    result, _ = tracked_run(cfg)
    trial = result.trials[0]
    client, runs = all_runs(cfg.mlflow.tracking_uri)
    _, children = split_runs(runs)
    run_id = children[0].info.run_id
    best_per_fold = []
    for fold in (1, 2):
        history = client.get_metric_history(run_id, f"fold{fold}/val_accuracy")
        assert [m.step for m in history] == [0, 1]
        best_per_fold.append(max(m.value for m in history))
    assert trial.score == pytest.approx(sum(best_per_fold) / 2)
    assert not client.get_metric_history(run_id, "val_accuracy")  # only per-fold curves
    # The interval is over every training and validation digit (each scored once).
    scored = result.data["sizes"]["train"] + result.data["sizes"]["val"]
    expected = accuracy_with_interval(round(trial.score * scored), scored)
    assert trial.interval == pytest.approx([expected.ci_low, expected.ci_high])


@pytest.mark.slow
def test_each_stores_artifacts_live_beside_it(tmp_path, monkeypatch):
    """Two SQLite stores in two folders, no artifact location configured: each store's
    models are in its own folder, so removing one leaves the other's champion loadable."""
    import shutil

    import mlflow
    import numpy as np

    from src.config.compose import compose_config
    from src.pipeline import run_pipeline
    from src.registry.versions import champion_uri

    monkeypatch.chdir(tmp_path)  # where a relative artifact folder would have landed
    stores = {}
    for name in ("first", "second"):
        folder = tmp_path / name
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        overrides = [*TINY_OVERRIDES, f"mlflow.tracking_uri={uri}", "tuner.max_trials=1"]
        cfg = compose_config(overrides, output_dir=folder / "run")
        assert cfg.mlflow.artifact_location is None
        run_pipeline(cfg)
        stores[name] = (folder, uri)
        assert (folder / "artifacts").is_dir()
    assert not (tmp_path / "mlruns").exists()

    shutil.rmtree(stores["first"][0])
    mlflow.set_tracking_uri(stores["second"][1])
    model = mlflow.pyfunc.load_model(champion_uri("mnist-cnn"))
    drawn = np.zeros((2, 28, 28, 1), np.float32)
    drawn[:, 8:20, 14] = 1.0  # a stroke: a blank image would be refused
    assert np.asarray(model.predict(drawn)).shape == (2, 10)
