"""The Optuna-backed oracle (`tuner=tpe`) and pruning through Keras Tuner's own hooks.

The oracle tests drive Keras Tuner's oracle interface directly with made-up learning
curves (no training: a second each); the search tests train tiny models for real.
"""

from __future__ import annotations

import json
import math

import keras_tuner
import optuna
import pytest
from helpers import search_builds
from keras_tuner.engine.trial import TrialStatus

from src.config.rules import validate_config
from src.errors import ConfigError, SearchFailed
from src.search.capabilities import refusal
from src.search.optuna.oracle import OptunaOracle
from src.search.optuna.specs import OptunaSpecError, make_pruner, make_sampler
from src.search.optuna.study import STUDY_FILE
from src.search.optuna.tuner import enable_pruning
from src.search.stage import run_search

OBJECTIVE = keras_tuner.Objective("score", "max")
LAYER_CHOICES = [1, 2, 3]


def _space() -> keras_tuner.HyperParameters:
    """A space like the CNN's: filters_i exists only in trials that build layer i."""
    hp = keras_tuner.HyperParameters()
    hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    hp.Float("dropout", 0.0, 0.5, step=0.1)
    hp.Int("units", 16, 64, step=16)
    hp.Boolean("batch_norm")
    hp.Fixed("kernel_size", 3)
    hp.Choice("conv_layers", LAYER_CHOICES)
    for index in range(max(LAYER_CHOICES)):
        with hp.conditional_scope("conv_layers", [n for n in LAYER_CHOICES if n > index]):
            hp.Choice(f"filters_{index}", [8, 16, 32])
    return hp


def _oracle(folder, pruner=None, sampler="tpe", max_trials=12, oracle_class=OptunaOracle, seed=7):
    oracle = oracle_class(
        objective=OBJECTIVE,
        max_trials=max_trials,
        hyperparameters=_space(),
        seed=seed,
        **({"sampler": sampler, "pruner": pruner} if oracle_class is OptunaOracle else {}),
    )
    oracle._set_project_dir(str(folder), "search")
    return oracle


def _curve(values: dict, epochs: int = 5) -> list[float]:
    """A made-up learning curve: better with a learning rate near 1e-3 and more layers."""
    quality = 1 - abs(math.log10(values["learning_rate"]) + 3) / 2 + 0.05 * values["conv_layers"]
    return [quality * (1 - 0.5 ** (epoch + 1)) for epoch in range(epochs)]


def _run_trials(oracle, count: int, epochs: int = 5) -> list[dict]:
    """Run `count` trials through the oracle's hooks as a tuner would; their values."""
    proposed = []
    for _ in range(count):
        trial = oracle.create_trial("tuner0")
        if trial.status != TrialStatus.RUNNING:
            break
        proposed.append(dict(trial.hyperparameters.values))
        for epoch, value in enumerate(_curve(trial.hyperparameters.values, epochs)):
            if oracle.update_trial(trial.trial_id, {"score": value}, step=epoch).status == (
                TrialStatus.STOPPED
            ):
                break
        trial.status = TrialStatus.COMPLETED  # what Keras Tuner's tuner sets once fit returns
        oracle.end_trial(trial)
    return proposed


def test_the_oracle_proposes_only_valid_values_and_keeps_conditions(tmp_path):
    oracle = _oracle(tmp_path, max_trials=15)
    for values in _run_trials(oracle, 15):
        assert 1e-4 <= values["learning_rate"] <= 1e-2
        assert any(math.isclose(values["dropout"], step / 10) for step in range(6))
        assert values["units"] in (16, 32, 48, 64)
        assert values["kernel_size"] == 3 and isinstance(values["batch_norm"], bool)
        layers = values["conv_layers"]
        assert layers in LAYER_CHOICES
        # The filters of layers the trial does not build are not proposed at all.
        assert {k for k in values if k.startswith("filters_")} == {
            f"filters_{i}" for i in range(layers)
        }
        assert all(values[f"filters_{i}"] in (8, 16, 32) for i in range(layers))
    study = oracle.study
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 15
    assert (tmp_path / "search" / STUDY_FILE).is_file()


def test_neighbouring_tuner_seeds_give_unrelated_searches(tmp_path):
    """Seeds 1 and 2 share no learning rate in their first trials (the sampler's seed was
    once seed + trial number, so seed 2 proposed seed 1's trials shifted by one), while
    the same seed proposes the same trials again."""
    rates = {}
    for seed, folder in ((1, "a"), (2, "b"), (1, "c")):
        trials = _run_trials(_oracle(tmp_path / folder, seed=seed, max_trials=6), 6)
        rates[folder] = [values["learning_rate"] for values in trials]
    assert rates["a"] == rates["c"]
    assert not set(rates["a"]) & set(rates["b"])


def test_tpe_learns_from_the_scores_it_is_told(tmp_path):
    """After its random start-up trials, TPE proposes learning rates nearer the made-up
    optimum (1e-3) than random sampling does, on the same budget and seed."""

    def mean_distance(sampler):
        values = _run_trials(_oracle(tmp_path / sampler, sampler=sampler, max_trials=30), 30)
        return sum(abs(math.log10(v["learning_rate"]) + 3) for v in values[10:]) / 20

    assert mean_distance("tpe") < 0.7 * mean_distance("random")


def test_a_trial_the_pruner_stops_ends_pruned_after_fewer_epochs(tmp_path):
    pruner = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1}
    oracle = _oracle(tmp_path, pruner=pruner, max_trials=10)
    _run_trials(oracle, 10, epochs=5)
    pruned = [t for t in oracle.trials.values() if t.status == TrialStatus.STOPPED]
    completed = [t for t in oracle.trials.values() if t.status == TrialStatus.COMPLETED]
    assert pruned and completed
    for trial in pruned:
        steps = [o.step for o in trial.metrics.get_history("score")]
        assert max(steps) < 4  # stopped before the last epoch
        assert trial.message.startswith("pruned by MedianPruner after epoch ")
        assert trial.score is not None  # scored on the epochs it ran, for display
    # Only completed trials are ranked; the study knows the pruned ones as PRUNED.
    assert all(t.status == TrialStatus.COMPLETED for t in oracle.get_best_trials(10)[:2])
    states = [t.state for t in oracle.study.get_trials()]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(pruned)
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(completed)


def test_a_resumed_study_proposes_what_an_uninterrupted_one_would(tmp_path):
    pruner = {"name": "median", "n_startup_trials": 2}
    uninterrupted = _run_trials(_oracle(tmp_path / "whole", pruner=pruner), 12)

    first = _oracle(tmp_path / "split", pruner=pruner)
    before = _run_trials(first, 5)
    first.create_trial("tuner0")  # a trial started, then the process died
    resumed = _oracle(tmp_path / "split", pruner=pruner)
    resumed.reload()
    after = _run_trials(resumed, 12)
    # The killed trial runs again first (Keras Tuner's retry), then the sequence goes on.
    assert before + after == uninterrupted
    assert len(resumed.trials) == 12


@pytest.mark.parametrize("epochs", [None, 3])
def test_a_trial_is_never_cut_after_its_last_epoch(tmp_path, epochs):
    """A cut after the last epoch saves nothing and drops a finished trial from the ranking;
    the oracle is told the schedule's length so that it does not make one."""
    oracle = _oracle(tmp_path, max_trials=4)
    enable_pruning(oracle, {"name": "median", "n_startup_trials": 1}, epochs)
    for curve in ([0.5, 0.6, 0.9], [0.7, 0.8, 0.85]):  # the second falls below at the end
        trial = oracle.create_trial("tuner0")
        for step, value in enumerate(curve):
            oracle.update_trial(trial.trial_id, {"score": value}, step=step)
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
    last = oracle.trials[trial.trial_id]
    # Without the schedule's length (epochs=None) the median pruner cuts after epoch 3.
    assert last.status == (TrialStatus.STOPPED if epochs is None else TrialStatus.COMPLETED)


@pytest.mark.parametrize(
    "oracle_class",
    [
        keras_tuner.oracles.RandomSearchOracle,
        keras_tuner.oracles.BayesianOptimizationOracle,
    ],
)
def test_pruning_works_for_keras_tuners_own_oracles(tmp_path, oracle_class):
    oracle = _oracle(tmp_path, oracle_class=oracle_class, max_trials=8)
    enable_pruning(oracle, {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1})
    _run_trials(oracle, 8)  # the Bayesian oracle's later trials are fitted on pruned ones
    statuses = [t.status for t in oracle.trials.values()]
    assert len(statuses) == 8 and TrialStatus.STOPPED in statuses
    assert oracle.get_best_trials(1)[0].status == TrialStatus.COMPLETED


def test_hyperband_and_bad_specs_are_refused(tmp_path):
    class OwnHyperband(keras_tuner.Hyperband):
        """A user's subclass is refused what its Keras Tuner base is refused."""

    assert "Hyperband already stops trials" in refusal(keras_tuner.Hyperband, "pruner")
    assert refusal(OwnHyperband, "pruner") == refusal("keras_tuner.Hyperband", "pruner")
    assert refusal(keras_tuner.RandomSearch, "pruner") is None
    with pytest.raises(OptunaSpecError, match="not an Optuna pruner"):
        make_pruner("mediocre")
    with pytest.raises(OptunaSpecError, match="MedianPruner takes no such argument"):
        make_pruner({"name": "median", "patience": 3})
    with pytest.raises(OptunaSpecError, match="not an Optuna sampler"):
        make_sampler("annealing", seed=0)
    assert make_pruner("none") is None and make_pruner(None) is None
    assert isinstance(make_pruner("asha"), optuna.pruners.SuccessiveHalvingPruner)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tuner=hyperband", "tuner.pruner=median"], "Hyperband already stops trials"),
        (["tuner=tpe", "tuner.pruner=mediocre"], "not an Optuna pruner"),
        (["tuner=tpe", "tuner.sampler=annealing"], "not an Optuna sampler"),
        (["tuner=random", "tuner.pruner=median", "tuner.executions_per_trial=2"], "needs tuner"),
    ],
)
def test_the_config_refuses_a_pruner_that_cannot_work(tiny_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny_config(*overrides))


def test_a_pruned_search_trains_fewer_epochs_and_says_so(
    tiny_config, tiny_dataset, tmp_path, monkeypatch
):
    from test_search import _DenseHyperModel

    search_builds(monkeypatch, lambda: _DenseHyperModel())
    # ThresholdPruner: a trial below 99 % validation accuracy after its second epoch is
    # stopped there, whatever the others did: every trial but none of the first epochs.
    cfg = tiny_config(
        "tuner=tpe",
        "tuner.max_trials=3",
        "training.epochs=4",
        "training.early_stopping_patience=10",
        "tuner.pruner={name: threshold, lower: 0.99, n_warmup_steps: 2}",
    )
    with pytest.raises(SearchFailed):  # no trial completed: all were pruned
        run_search(cfg, tiny_dataset)
    written = json.loads((tmp_path / "results.json").read_text())
    assert [t["status"] for t in written["trials"]] == ["PRUNED"] * 3
    assert [t["epochs_run"] for t in written["trials"]] == [2, 2, 2]
    assert written["pruning"] == {"pruned": 3, "epochs_saved": 6}
    for trial in written["trials"]:
        assert trial["error"] is None
        assert trial["pruned_reason"].startswith("pruned by ThresholdPruner after epoch 2: ")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tuner=hyperband", "tuner.cv_folds=3"], "Hyperband cannot cross-validate"),
        (["tuner=tpe", "tuner.cv_folds=3", "tuner.pruner=median"], "judges one training curve"),
        (["tuner.cv_folds=0"], r"tuner\.cv_folds=0"),
    ],
)
def test_the_config_refuses_cross_validation_that_cannot_work(tiny_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny_config(*overrides))
