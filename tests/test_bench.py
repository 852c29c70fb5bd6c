"""bench/: curve_predictiveness.py's pruner replay, subset_ranking.py's draws."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "curve_predictiveness.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module; bench/ on the path, as running it from there puts it (its
    sibling `common` helper)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(SCRIPT.parent))
        spec = importlib.util.spec_from_file_location("curve_predictiveness", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def _search(*curves):
    return [((("trial", str(i)),), curve) for i, curve in enumerate(curves)]


def test_median_pruner_cuts_a_trial_below_the_first_and_keeps_the_best(bench):
    good, worse, best = [0.95, 0.97, 0.98], [0.90, 0.99, 0.99], [0.96, 0.98, 0.995]
    shares, kept = bench.replay(
        {"search": _search(good, worse, best)},
        "{name: median, n_startup_trials: 1, n_warmup_steps: 0}",
    )
    # `worse` is below the first trial after epoch 1 and stops there: 3 + 1 + 3 of 9 epochs.
    assert shares == [pytest.approx(7 / 9)]
    assert kept == [True]


def test_a_late_bloomer_cut_early_is_reported_as_a_lost_choice(bench):
    early_leader, late_bloomer = [0.95, 0.96, 0.97], [0.90, 0.95, 0.99]
    shares, kept = bench.replay(
        {"a": _search(early_leader, late_bloomer), "b": _search(early_leader, early_leader)},
        "{name: median, n_startup_trials: 1, n_warmup_steps: 0}",
    )
    assert shares == [pytest.approx(4 / 6), pytest.approx(1.0)]
    assert kept == [False, True]


def test_no_pruner_spends_every_epoch(bench):
    # Seven trials: Optuna's default pruner (median, after 5 trials) would cut the last.
    curves = [[0.9, 0.95]] * 6 + [[0.1, 0.2]]
    shares, kept = bench.replay({"s": _search(*curves)}, "null")
    assert shares == [1.0] and kept == [True]


def test_a_tie_for_the_best_survives_if_either_trial_does(bench):
    # Both late trials end at 0.99; the one ahead after epoch 1 survives a median cut there,
    # whichever of the two comes first.
    ahead, behind, low = [0.98, 0.99], [0.90, 0.99], [0.95, 0.96]
    assert bench._best_survives_median([ahead, behind, low], 0)
    assert bench._best_survives_median([behind, ahead, low], 0)
    assert not bench._best_survives_median([behind, [0.97, 0.985], low], 0)


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_subset_ranking_draws_distinct_points_of_the_space_with_their_layers_filters(
    monkeypatch,
):
    """bench/subset_ranking.py's configurations: distinct, each a point of the default
    space, with a filter count for every conv layer it has and none for one it lacks."""
    from helpers import compose_config
    from omegaconf import OmegaConf

    from src.data.dataset import Dataset, Split
    from src.model.hypermodel import CNNHyperModel
    from src.search.warm_start import configuration_misfit

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    ranking = _bench_module("subset_ranking")
    cfg = compose_config(["search_space=default"])
    split = Split(np.zeros((10, 28, 28, 1), np.float32), np.arange(10))
    hypermodel = CNNHyperModel.from_config(
        cfg.search_space, cfg.training, Dataset("tiny", "test", "digest", split, split, split)
    )
    drawn = ranking.draw_configurations(hypermodel, 6, seed=3)
    assert len(drawn) == 6 and all(a != b for i, a in enumerate(drawn) for b in drawn[i + 1 :])
    space = OmegaConf.to_container(cfg.search_space, resolve=True)
    for values in drawn:
        assert configuration_misfit(values, space) is None, values
        layers = {int(k.split("_")[1]) for k in values if k.startswith("filters_")}
        assert layers == set(range(values["conv_layers"])), values
