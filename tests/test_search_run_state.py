"""The run folder's guard: a saved search is never wiped or mixed with another config."""

from __future__ import annotations

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
