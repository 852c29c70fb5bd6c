"""The pipeline as `python -m src.run` runs it: the same config gives the same search and
the same final model, whether MLflow and other observers listen or not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src.config.compose import CONFIG_DIR
from src.config.rules import validate_config
from src.data.dataset import load_dataset
from src.final.evaluation import evaluate
from src.pipeline import run_pipeline
from src.registry.versions import load_version
from src.search.observers import TrialObserver


class _CountingObserver(TrialObserver):
    def __init__(self):
        self.epochs = 0

    def on_epoch_end(self, tuner, trial, epoch, logs):
        self.epochs += 1


@pytest.mark.slow
def test_same_config_gives_the_same_search_and_final_models_tracked_or_not(tiny_config):
    """Determinism on one machine, and tracking that only listens: one comparison of two
    whole runs (search and a final stage over two seeds), one tracked, one untracked with
    an observer."""
    overrides = (
        "tuner=bayesian",
        "tuner.max_trials=2",
        "final.register=false",
        "final.seeds=[42,7]",
    )
    tracked = run_pipeline(tiny_config(*overrides))
    observer = _CountingObserver()
    # The same folder again: overwrite=true, as a user rerunning a search there would.
    untracked = run_pipeline(
        tiny_config(*overrides, "mlflow.enabled=false", "overwrite=true"), [observer]
    )

    def trials(result):
        return [(t.trial_id, t.hyperparameters, t.score, t.best_step) for t in result.search.trials]

    assert trials(tracked) == trials(untracked)
    assert all(math.isfinite(t.score) for t in tracked.search.trials)
    assert tracked.search.best_trial_id == untracked.search.best_trial_id
    assert observer.epochs == len(tracked.search.trials)  # one epoch each (tiny config)
    assert tracked.final.test_accuracy == untracked.final.test_accuracy
    assert tracked.final.test_loss == untracked.final.test_loss
    # One retraining per final seed; the first seed's model is the one reported (registered).
    final = tracked.final
    assert final.seeds == [42, 7] and len(final.seed_test_accuracies) == 2
    assert final.seed_test_accuracies == untracked.final.seed_test_accuracies
    assert final.test_accuracy == final.seed_test_accuracies[0]
    assert final.test_accuracy_mean == sum(final.seed_test_accuracies) / 2
    assert final.test_size == 500  # data.max_test_examples of the tiny config
    assert final.test_accuracy_ci_low < final.test_accuracy < final.test_accuracy_ci_high
    assert tracked.final.run_id is not None and untracked.final.run_id is None


@pytest.mark.slow
def test_a_recorded_configuration_is_retrained_without_a_search(tiny_config, tmp_path):
    first = run_pipeline(tiny_config("tuner.max_trials=1", "final.register=false"))
    recorded = tmp_path / "final" / "final.json"
    again = run_pipeline(tiny_config("final.register=false", f"final.from_results={recorded}"))
    assert [t.trial_id for t in again.search.trials] == ["recorded"]
    assert json.loads((tmp_path / "results.json").read_text())["best"]["trial_id"] == "recorded"
    assert again.final.hyperparameters == first.final.hyperparameters
    assert again.final.epochs == first.final.epochs
    assert (first.final.trial_id, again.final.trial_id) == (first.search.best_trial_id, "recorded")
    # Same data, same seed, same configuration: the same model, to the last digit.
    assert again.final.test_accuracy == first.final.test_accuracy
    client = MlflowClient(tiny_config().mlflow.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("mnist-cnn").experiment_id])
    final_runs = [r for r in runs if r.data.tags.get("run_kind") == "final"]
    trial_runs = [r for r in runs if r.data.tags.get("run_kind") == "trial"]
    assert len(final_runs) == 2 and len(trial_runs) == 1  # no trial for the retraining
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_retraining_the_shipped_best_is_its_own_command_and_runs_no_search(tiny_config):
    """final.from_results=shipped: the shipped study's best configuration, retrained on this
    run's data with no trial (retraining a known answer, not tuning)."""
    shipped = json.loads((CONFIG_DIR / "warm_start" / "default.json").read_text())
    best = max(shipped["trials"], key=lambda trial: trial["score"])
    cfg = tiny_config(
        "search_space=default",
        "final.from_results=shipped",
        "final.register=false",
        "final.epochs=1",
    )
    validate_config(cfg)
    result = run_pipeline(cfg)
    assert [t.trial_id for t in result.search.trials] == [best["trial_id"]]
    assert result.search.data["recorded_from"].endswith("warm_start/default.json")
    assert result.final.hyperparameters == best["hyperparameters"]


@pytest.mark.slow
def test_an_ensemble_of_the_seeds_models_is_registered_as_one_model(tiny_config):
    """final.ensemble: the registered model averages the seeds' softmax outputs; it loads
    back from the registry as one Keras model and scores what the final stage reported."""
    cfg = tiny_config("tuner.max_trials=1", "final.seeds=[42,7]", "final.ensemble=true")
    final = run_pipeline(cfg).final
    assert final.ensemble and "seeds 42, 7" in final.registered_model
    dataset = load_dataset(
        OmegaConf.to_container(cfg.data, resolve=True), cfg.training.val_fraction
    )
    ensemble = load_version(cfg.mlflow.tracking_uri, "mnist-cnn", final.model_version)
    members = [ensemble.get_layer(f"seed_{seed}") for seed in (42, 7)]
    assert [evaluate(m, dataset.test, 10).accuracy for m in members] == pytest.approx(
        final.seed_test_accuracies
    )
    images = dataset.test.images[:256]
    mean = np.mean([m.predict(images, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), mean, rtol=1e-5, atol=1e-6)
    assert evaluate(ensemble, dataset.test, 10).accuracy == pytest.approx(final.test_accuracy)


@pytest.mark.slow
def test_a_resumed_final_stage_decides_on_its_earlier_version_not_a_copy(tiny_config):
    """Register-and-promote is idempotent: run again with resume=true (as after a crash
    between registration and the aliases), the search's version is found and decided on."""
    first = run_pipeline(tiny_config("tuner.max_trials=1")).final
    again = run_pipeline(tiny_config("tuner.max_trials=1", "resume=true")).final
    client = MlflowClient(tiny_config().mlflow.tracking_uri)
    versions = client.search_model_versions("name = 'mnist-cnn'")
    assert [str(v.version) for v in versions] == [first.model_version] == [again.model_version]
    assert again.decision == f"version {first.model_version} is already champion"
    champion = client.get_model_version_by_alias("mnist-cnn", "champion")
    assert str(champion.version) == first.model_version


def test_a_batch_larger_than_the_training_digits_is_what_is_used_and_recorded(tiny_config, caplog):
    cfg = tiny_config("training.batch_size=100000000", "tuner.max_trials=1", "final.enabled=false")
    with caplog.at_level("WARNING"):
        run_pipeline(cfg)
    assert "training.batch_size=100000000 is larger than the 300 training digits" in caplog.text
    client = MlflowClient(cfg.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment_name)
    (parent,) = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    recorded = {k: v for k, v in parent.data.params.items() if k.endswith("batch_size")}
    assert recorded and set(recorded.values()) == {"300"}, recorded


def test_a_space_smaller_than_max_trials_says_so_at_the_start(tiny_config, caplog):
    cfg = tiny_config(
        "tuner.max_trials=3",
        "search_space.filters=[8]",
        "search_space.dense_units=[32]",
        "search_space.conv_layers=[2]",
        "search_space.learning_rate.min=0.001",
        "search_space.learning_rate.max=0.001",
        "search_space.dropout.min=0.0",
        "search_space.dropout.max=0.1",
        "search_space.dropout.step=0.1",
        "final.enabled=false",
    )
    with caplog.at_level("WARNING"):
        result = run_pipeline(cfg)
    assert "holds 2 distinct configuration(s): at most 2 of tuner.max_trials=3" in caplog.text
    assert len(result.search.trials) == 2
