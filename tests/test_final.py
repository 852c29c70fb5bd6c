"""Which trial the final stage retrains (`final.choose`), and the FLOP count it ranks by."""

from __future__ import annotations

import keras
import pytest
from helpers import compose_config
from omegaconf import OmegaConf

from src.final.choose import choose_trial
from src.model.hypermodel import CNNHyperModel, forward_flops
from src.search.results import SearchResult, TrialSummary


def test_forward_flops_counts_two_per_multiply_add_of_conv_and_dense_layers():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    conv = 28 * 28 * 3 * 3 * 1 * 8  # every output pixel and channel: a 3x3x1 window
    dense = 14 * 14 * 8 * 10
    assert forward_flops(model) == 2 * (conv + dense)


def _trial(trial_id: str, score: float, filters: int, tied: bool) -> TrialSummary:
    values = {
        "learning_rate": 0.001,
        "conv_layers": 2,
        "kernel_size": 3,
        "filters_0": filters,
        "filters_1": filters,
        "dropout": 0.25,
        "dense_units": 128,
    }
    return TrialSummary(trial_id, "COMPLETED", score, 3, values, tied_with_best=tied)


@pytest.fixture
def hypermodel():
    space = OmegaConf.to_container(compose_config().search_space, resolve=True)
    return CNNHyperModel(space, (28, 28, 1), 10)


@pytest.fixture
def search():
    trials = [
        _trial("best", 0.990, filters=128, tied=False),  # the best is not marked against itself
        _trial("tied, cheap", 0.986, filters=32, tied=True),
        _trial("tied, dear", 0.988, filters=64, tied=True),
        _trial("cheapest, worse", 0.950, filters=16, tied=False),
    ]
    return SearchResult(trials, "val_accuracy", 1.0, best_trial_id="best")


def test_cheapest_tied_retrains_the_cheapest_trial_the_search_cannot_tell_from_the_best(
    search, hypermodel
):
    chosen, why = choose_trial(search, "cheapest_tied", hypermodel)
    assert chosen.trial_id == "tied, cheap"  # not the cheaper trial that is clearly worse
    assert why.startswith("the cheapest of 3 trials tied with the best")
    assert "MFLOP per image" in why


def test_best_rule_and_a_search_without_ties_retrain_the_best_trial(search, hypermodel):
    assert choose_trial(search, "best", hypermodel) == (search.best, "the best trial")
    for trial in search.trials:
        trial.tied_with_best = False
    assert choose_trial(search, "cheapest_tied", hypermodel)[0] is search.best


def test_warm_start_tied_retrains_the_earlier_best_unless_the_best_beats_it_once_chosen(
    hypermodel,
):
    """The warm start's first configuration is retrained in place of the best of n trials
    unless the best beats it at `selection_z(n)` standard errors: on 1,000 digits 0.980 and
    a best of 0.994 are 2.77 apart, under the 2.99 of 18 trials, over the 2.24 of two."""
    trials = [_trial(str(i), 0.95, filters=16, tied=False) for i in range(16)]
    earlier = _trial("earlier", 0.980, filters=32, tied=False)
    best = _trial("best", 0.994, filters=64, tied=False)
    search = SearchResult([*trials, earlier, best], "val_accuracy", 1.0, "best")
    search.scored_digits = 1000
    values = {**earlier.hyperparameters, "dropout": 0.25 + 1e-12}  # as Optuna may store it
    chosen, why = choose_trial(search, "warm_start_tied", hypermodel, values)
    assert chosen is earlier
    assert why == (
        "the warm start's first configuration (the best earlier searches found): the best "
        "trial best does not beat it once chosen from 18"
    )
    assert choose_trial(search, "best", hypermodel, values)[0] is best  # best ignores it
    # Chosen from 2 trials, 0.994 beats 0.980 on 1,000 digits.
    two = SearchResult([earlier, best], "val_accuracy", 1.0, "best", scored_digits=1000)
    assert choose_trial(two, "warm_start_tied", hypermodel, values) == (best, "the best trial")
    # Absent from the search, the best itself, or no warm start: the best.
    unseen = {**values, "filters_0": 8}
    for preferred in (unseen, dict(best.hyperparameters), None):
        assert choose_trial(search, "warm_start_tied", hypermodel, preferred)[0] is best
