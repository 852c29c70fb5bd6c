"""`tuner.warm_start`: a search begins from the best configurations recorded before."""

from __future__ import annotations

import json

import keras_tuner
import pytest
from helpers import compose_config
from omegaconf import OmegaConf

from src.config.rules import validate_config
from src.errors import ConfigError
from src.search.optuna.oracle import OptunaOracle
from src.search.warm_start import (
    SHIPPED_DIR,
    configuration_misfit,
    enable_warm_start,
    warm_start_configurations,
)

SPACE = {
    "name": "small",
    "learning_rate": {"min": 0.001, "max": 0.01, "sampling": "log"},
    "conv_layers": [2, 4],
    "pool_every": 2,
    "kernel_size": 3,
    "filters": [16, 32],
    "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
    "dense_units": 64,
}
BEST = {"learning_rate": 0.002, "conv_layers": 2, "filters_0": 32, "filters_1": 16, "dropout": 0.1}
SECOND = {**BEST, "learning_rate": 0.004}


def _results(tmp_path, trials, name="results.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"objective": "val_accuracy", "trials": trials}))
    return path


def _trial(values, score, status="COMPLETED"):
    return {"hyperparameters": values, "score": score, "status": status}


def test_the_best_recorded_configurations_come_first(tmp_path):
    failed = {**BEST, "learning_rate": 0.009}
    path = _results(
        tmp_path,
        [_trial(SECOND, 0.90), _trial(BEST, 0.95), _trial(failed, None, "FAILED")],
    )
    other = _results(tmp_path, [_trial(BEST, 0.93)], "other.json")  # the same, once
    assert warm_start_configurations([str(path), str(other)], SPACE) == [BEST, SECOND]
    assert warm_start_configurations(None, SPACE) == []


def test_a_results_json_of_another_space_is_refused_with_one_line(tmp_path):
    path = _results(tmp_path, [_trial({**BEST, "batch_norm": True}, 0.95)])
    with pytest.raises(ConfigError) as error:
        warm_start_configurations(str(path), SPACE)
    message = str(error.value)
    assert message.startswith(f"tuner.warm_start='{path}': batch_norm is not a knob")
    assert "\n" not in message
    for misfit, reason in [
        ({**BEST, "conv_layers": 6}, "conv_layers=6 is not one of [2, 4]"),
        ({**BEST, "learning_rate": 0.5}, "learning_rate=0.5 is outside [0.001, 0.01]"),
        (
            {k: v for k, v in BEST.items() if k != "dropout"},
            "it has no dropout, which the space searches",
        ),
    ]:
        assert configuration_misfit(misfit, SPACE) == reason


def test_validation_refuses_a_file_of_another_space_before_tensorflow_loads(tmp_path):
    path = _results(tmp_path, [_trial(BEST, 0.95)])  # the small space's, not the default's
    cfg = compose_config([f"tuner.warm_start={path}"])
    with pytest.raises(ConfigError, match="recorded for another search space"):
        validate_config(cfg)
    with pytest.raises(ConfigError, match=r"tuner.warm_start='/no/such.json': no such file"):
        validate_config(compose_config(["tuner.warm_start=/no/such.json"]))
    with pytest.raises(ConfigError, match="Hyperband schedules its own brackets"):
        validate_config(compose_config(["tuner=hyperband", f"tuner.warm_start={path}"]))


def test_the_shipped_study_fits_the_default_space_and_is_skipped_where_it_does_not():
    default = OmegaConf.to_container(compose_config().search_space, resolve=True)
    shipped = warm_start_configurations("shipped", default)
    assert shipped and (SHIPPED_DIR / "default.json").is_file()
    narrowed = {**default, "filters": [8]}  # no shipped configuration fits
    assert warm_start_configurations("shipped", narrowed) == []
    assert warm_start_configurations("shipped", SPACE) == []  # no study shipped for it
    validate_config(compose_config(["tuner=hyperband"]))  # the default's shipped: where it can


def _hyperparameters():
    hp = keras_tuner.HyperParameters()
    hp.Float("learning_rate", 0.001, 0.01, sampling="log")
    hp.Choice("conv_layers", [2, 4])
    hp.Choice("filters_0", [16, 32])
    hp.Choice("filters_1", [16, 32])
    hp.Float("dropout", 0.0, 0.5, step=0.1)
    return hp


@pytest.mark.parametrize("oracle_class", [keras_tuner.oracles.RandomSearchOracle, OptunaOracle])
def test_the_oracle_proposes_the_warm_configurations_first(tmp_path, oracle_class):
    oracle = oracle_class(
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=4,
        hyperparameters=_hyperparameters(),
        seed=1,
    )
    oracle._set_project_dir(str(tmp_path), "warm")
    enable_warm_start(oracle, [BEST, SECOND])
    proposed = []
    for number in range(3):
        trial = oracle.create_trial(f"tuner{number}")
        proposed.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        oracle.end_trial(trial)
    assert [{k: p[k] for k in BEST} for p in proposed[:2]] == [BEST, SECOND]
    assert {k: proposed[2][k] for k in BEST} not in (BEST, SECOND)  # then the tuner's own


def test_the_final_stage_retrains_the_warm_starts_best_where_the_search_ties_it(
    tiny_config, tmp_path
):
    """`final.choose=warm_start_tied` (the default): the search's best is another trial, but
    on 1,000 validation digits it does not beat the earlier best, which is retrained."""
    from src.pipeline import run_pipeline

    cfg = tiny_config("tuner.max_trials=3")
    assert cfg.final.choose == "warm_start_tied"
    earlier = {"learning_rate": 0.01, "conv_layers": 2, "filters_0": 16, "filters_1": 8}
    earlier |= {"dropout": 0.0, "dense_units": 32, "kernel_size": 3}
    second = {**earlier, "learning_rate": 0.009}
    (tmp_path / "earlier").mkdir()  # not the run's own results.json, which the run rewrites
    recorded = _results(tmp_path / "earlier", [_trial(earlier, 0.99), _trial(second, 0.98)])
    cfg.tuner.warm_start = str(recorded)

    result = run_pipeline(cfg)
    search = result.search
    warm = next(t for t in search.trials if t.hyperparameters == earlier)
    assert search.best.trial_id != warm.trial_id and warm.tied_with_best
    assert result.final.trial_id == warm.trial_id
    assert result.final.chosen_by.startswith("the warm start's first configuration")
    assert result.final.hyperparameters == earlier
