"""Accuracy against cost: each model's measured cost, the search's Pareto front, and the
final stage's choice under a latency or size limit."""

from __future__ import annotations

import keras
import pytest

from src.errors import SearchFailed
from src.final.choose import choose_trial
from src.model.cost import measure_cost
from src.search.results import SearchResult, TrialSummary
from src.search.tradeoffs import format_front, front_record, pareto_front


def _trial(trial_id, score, latency_ms, params):
    cost = {
        "params": params,
        "flops_per_image": 10 * params,
        "latency_ms": latency_ms,
        "throughput_per_s": 1000 / latency_ms,
    }
    return TrialSummary(trial_id, "COMPLETED", score, 0, {"lr": 0.001}, cost=cost)


@pytest.fixture
def search():
    trials = [
        _trial("fast", 0.96, 1.0, 1_000),
        _trial("balanced", 0.98, 2.0, 5_000),
        _trial("slow_and_worse", 0.97, 3.0, 9_000),  # beaten by "balanced" on both
        _trial("best", 0.99, 4.0, 20_000),
    ]
    return SearchResult(trials, "val_accuracy", 1.0, best_trial_id="best")


def test_the_front_holds_the_trials_no_other_beats_on_score_and_latency(search):
    assert [t.trial_id for t in pareto_front(search.trials)] == ["fast", "balanced", "best"]
    rows = front_record(search)
    cost = search.trials[1].cost
    assert rows[1] == {"trial_id": "balanced", "score": 0.98, **cost, "front_latency_ms": 2.0}
    assert "trial balanced: val_accuracy=0.9800, 2.00 ms" in format_front(rows, "val_accuracy")


def test_a_latency_limit_retrains_the_most_accurate_trial_within_it(search):
    chosen, why = choose_trial(search, "best", None, limits={"max_latency_ms": 3.5})
    assert chosen.trial_id == "balanced"
    assert why.startswith("the most accurate trial within final.max_latency_ms=3.5")
    chosen, _ = choose_trial(
        search, "best", None, limits={"max_latency_ms": 3.5, "max_params": 2_000}
    )
    assert chosen.trial_id == "fast"


def test_a_limit_no_trial_meets_is_refused_naming_the_cheapest(search):
    with pytest.raises(SearchFailed) as error:
        choose_trial(search, "best", None, limits={"max_latency_ms": 0.5})
    assert str(error.value) == (
        "final.max_latency_ms=0.5: no trial within it; the cheapest completed trial, fast, "
        "has latency_ms 1"
    )


def test_no_limit_leaves_the_rule_to_choose(search):
    chosen, _ = choose_trial(search, "best", None, limits={"max_latency_ms": None})
    assert chosen.trial_id == "best"


def test_a_models_cost_is_counted_and_timed():
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Conv2D(4, 3)(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    cost = measure_cost(model)
    assert cost.params == model.count_params()
    assert cost.flops_per_image == 2 * (26 * 26 * 9 * 4 + 26 * 26 * 4 * 10)
    assert cost.latency_ms > 0 and cost.throughput_per_s > 0
    assert "parameters" in str(cost)


def test_one_architecture_timed_twice_is_not_faster_than_itself():
    """Two trials of the same model, timed 8.8 and 11.3 ms on a busy machine: they share the
    median, so only the more accurate one is on the front (a run on Fashion-MNIST had put
    five trials of one model on it, ranked by timing noise)."""
    trials = [_trial("noisy_fast", 0.81, 8.8, 808_218), _trial("better", 0.82, 11.3, 808_218)]
    front = pareto_front(trials)
    assert [t.trial_id for t in front] == ["better"]
