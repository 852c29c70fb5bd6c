"""The run folder's guard: a saved search is never wiped or mixed with another config."""

from __future__ import annotations

import re
import shutil

import pytest

from src.config.compose import compose_config
from src.config.rules import validate_config
from src.errors import ConfigError
from src.search.run_state import CONFIG_SNAPSHOT, check_run_folder, first_difference, state_folder


def _config(folder, *overrides):
    cfg = compose_config(["experiment=quick", *overrides], output_dir=folder)
    validate_config(cfg)
    return cfg


def _saved_search(folder, *overrides):
    """A run folder as a search leaves it: its config snapshot and the oracle's state."""
    cfg = _config(folder, *overrides)
    check_run_folder(cfg)
    state_folder(cfg).mkdir(parents=True)
    (state_folder(cfg) / "oracle.json").write_text("{}")
    return cfg


def test_a_new_run_records_its_configuration(tmp_path):
    check_run_folder(_config(tmp_path))
    assert "tuner:" in (tmp_path / CONFIG_SNAPSHOT).read_text()


def test_a_folder_holding_a_search_is_not_overwritten_without_being_asked(tmp_path):
    _saved_search(tmp_path)
    with pytest.raises(ConfigError, match="already holds a search: add resume=true"):
        check_run_folder(_config(tmp_path))
    check_run_folder(_config(tmp_path, "overwrite=true"))  # asked for: allowed


def test_resume_needs_a_saved_search(tmp_path):
    with pytest.raises(ConfigError, match="resume=true: no saved search in"):
        check_run_folder(_config(tmp_path, "resume=true"))


def test_resume_with_the_same_configuration_is_allowed(tmp_path):
    _saved_search(tmp_path)
    check_run_folder(_config(tmp_path, "resume=true"))


def test_resume_with_another_configuration_names_the_first_differing_key(tmp_path):
    _saved_search(tmp_path)
    with pytest.raises(ConfigError, match=r"resume=true: training.epochs differs"):
        check_run_folder(_config(tmp_path, "resume=true", "training.epochs=7"))


def test_first_difference_walks_nested_configs_in_key_order():
    saved = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    assert first_difference(saved, {"a": {"x": 1, "y": [1, 2]}, "b": 2}) is None
    assert first_difference(saved, {"a": {"x": 1, "y": [1, 3]}, "b": 3}) == "a.y"
    assert first_difference(saved, {"a": {"x": 1}, "b": 2}) == "a.y"
    assert first_difference(saved, {"a": {"x": 1, "y": [1, 2]}, "b": 2, "c": 0}) == "c"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished tiny search's run folder (two trials), copied afresh for each test."""
    from helpers import make_tiny_config

    from src.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("searched")
    cfg = make_tiny_config(folder, "tuner.max_trials=2", "final.enabled=false", "tuner=tpe")
    run_pipeline(cfg)
    return folder


def _resume(searched, tmp_path):
    from helpers import make_tiny_config

    folder = searched
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    (copy / CONFIG_SNAPSHOT).unlink()  # it names the original folder's paths
    resumed = make_tiny_config(copy, "tuner.max_trials=2", "final.enabled=false", "tuner=tpe")
    resumed.resume = True
    return resumed, state_folder(resumed)


def test_an_intact_saved_search_resumes(searched, tmp_path):
    cfg, state = _resume(searched, tmp_path)
    assert sorted(p.parent.name for p in state.glob("trial_*/trial.json")) == ["trial_0", "trial_1"]
    check_run_folder(cfg)  # no error


@pytest.mark.parametrize(
    "damaged", ["oracle.json", "tuner0.json", "trial_1/trial.json", "optuna.journal"]
)
def test_a_damaged_saved_file_is_named_before_anything_trains(searched, tmp_path, damaged):
    cfg, state = _resume(searched, tmp_path)
    path = state / damaged
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # cut short, as by a full disk
    with pytest.raises(ConfigError, match=rf"resume=true: {re.escape(str(path))} is damaged"):
        check_run_folder(cfg)


def test_a_missing_trial_folder_is_named_before_anything_trains(searched, tmp_path):
    cfg, state = _resume(searched, tmp_path)
    shutil.rmtree(state / "trial_1")
    with pytest.raises(ConfigError, match=r"names trial 1, but .*trial_1/trial.json is missing"):
        check_run_folder(cfg)


def test_a_resume_reruns_the_named_trials_with_their_hyperparameters(searched, tmp_path):
    """`rerun_trials=[0]`: Keras Tuner's retry queue runs trial 0 again, with the same
    hyperparameters, before anything new; its earlier score is gone and the search ends
    with both trials scored once."""
    import json

    from src.pipeline import run_pipeline

    cfg, state = _resume(searched, tmp_path)
    before = json.loads((state / "trial_0" / "trial.json").read_text())
    cfg.rerun_trials = [0]
    result = run_pipeline(cfg)
    oracle = json.loads((state / "oracle.json").read_text())
    after = json.loads((state / "trial_0" / "trial.json").read_text())
    assert after["hyperparameters"]["values"] == before["hyperparameters"]["values"]
    assert after["status"] == "COMPLETED" and after["score"] is not None
    assert sorted(oracle["end_order"]) == ["0", "1"] and oracle["retry_queue"] == []
    assert len(result.search.trials) == 2  # no new trial: the rerun took trial 0's place
    # It ran again: a second attempt in MLflow, the first one in the trash.
    from helpers import all_runs

    _, runs = all_runs(str(cfg.mlflow.tracking_uri))
    trial_0 = [r for r in runs if r.data.tags.get("trial_id") == "0"]
    assert [r.data.tags["attempt"] for r in trial_0] == ["2"]


def test_rerun_trials_refuses_an_unknown_trial_before_anything_trains(searched, tmp_path):
    cfg, state = _resume(searched, tmp_path)
    oracle = (state / "oracle.json").read_text()
    cfg.rerun_trials = [7]
    with pytest.raises(ConfigError, match=r"rerun_trials: the saved search in .* has no trial '7'"):
        check_run_folder(cfg)
    assert (state / "oracle.json").read_text() == oracle  # nothing changed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rerun_trials=[1]"], "rerun_trials: needs resume=true"),
        (["resume=true", "rerun_trials=[x]"], r"rerun_trials=\['x'\]: expected a list"),
        (["resume=true", "rerun_trials=[1]", "tuner=hyperband"], "rerun_trials: Hyperband"),
    ],
)
def test_rerun_trials_is_checked_with_the_config(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, *overrides)
