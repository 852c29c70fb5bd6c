"""Which hyperparameters mattered: Optuna's fANOVA over a search's trials, compared at one
fidelity; and, through a real tracked search, what lands on the parent run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY_OVERRIDES, compose_config
from mlflow import MlflowClient

from src.search.importance import MIN_TRIALS, comparable_scores, hyperparameter_importance
from src.search.results import SearchResult, TrialSummary


def _search(scores_and_values):
    trials = [
        TrialSummary(f"{i:02d}", "COMPLETED", score, 0, values)
        for i, (score, values) in enumerate(scores_and_values)
    ]
    curves = {t.trial_id: {0: t.score} for t in trials}
    return SearchResult(trials=trials, objective="val_accuracy", wall_time_s=1.0), curves


def test_a_decisive_knob_ranks_above_an_inert_one():
    """The score follows the learning rate; dropout is drawn independently of it."""
    rng = np.random.default_rng(0)
    rows = []
    for rate in rng.uniform(1e-4, 1e-2, 16):
        dropout = float(rng.choice([0.1, 0.2, 0.3]))
        score = 0.9 + 8 * float(rate) + rng.normal(0, 0.001)
        rows.append((score, {"lr": rate, "dropout": dropout}))
    importance = hyperparameter_importance(*_search(rows))
    assert list(importance.values) == ["lr", "dropout"]
    assert importance.values["lr"] > 0.8 > 0.2 > importance.values["dropout"]
    assert importance.trials == 16 and importance.epoch == 1
    assert "lr" in importance.format().splitlines()[1]


def test_fewer_trials_than_the_floor_say_why_there_is_none():
    rows = [(0.9 + i / 100, {"lr": i / 1000}) for i in range(MIN_TRIALS - 1)]
    importance = hyperparameter_importance(*_search(rows))
    assert importance.values == {}
    assert importance.why_none == f"{MIN_TRIALS - 1} trial(s) trained an epoch; it takes 8 or more"
    assert "none" in importance.format()


def test_trials_are_compared_at_the_deepest_epoch_enough_of_them_reached():
    """Successive halving: 10 trials trained 1 epoch, 5 of them 2, 2 of them 4; the scores
    compared are those after epoch 1, the deepest that 8 trials reached."""
    curves = {str(i): {0: 0.5 + i / 100} for i in range(10)}
    for i in range(5):
        curves[str(i)][1] = 0.7
    for i in range(2):
        curves[str(i)].update({2: 0.8, 3: 0.9})
    epoch, scores = comparable_scores(curves)
    assert epoch == 1 and len(scores) == 10 and scores["3"] == pytest.approx(0.53)
    assert comparable_scores(curves, minimum=5)[0] == 2


def test_a_knob_that_never_varied_is_left_out():
    rows = [(0.9 + i / 100, {"lr": i / 1000, "layers": 4}) for i in range(MIN_TRIALS)]
    assert list(hyperparameter_importance(*_search(rows)).values) == ["lr"]


@pytest.mark.slow
def test_a_real_search_logs_its_importance_on_the_parent_run(tmp_path):
    from src.pipeline import run_pipeline

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(
        [
            *TINY_OVERRIDES,
            "tuner.max_trials=8",
            "final.enabled=false",
            "mlflow.enabled=true",
            f"mlflow.tracking_uri={store}",
        ],
        output_dir=tmp_path / "run",
    )
    run_pipeline(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    importance = results["importance"]
    assert importance["trials"] == 8 and importance["epoch"] == 1
    assert sum(importance["values"].values()) == pytest.approx(1, abs=1e-3)
    client = MlflowClient(store)
    parent = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.run_kind = 'search'"
    )[0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"importance.json", "importance.png"} <= artifacts


def test_trials_that_all_scored_the_same_say_so():
    rows = [(0.5, {"lr": i / 1000}) for i in range(MIN_TRIALS)]
    assert hyperparameter_importance(*_search(rows)).why_none == "every trial scored the same"
