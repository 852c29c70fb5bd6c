"""A Hydra sweep ends with one table comparing its searches (`src.final.compare`)."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_OVERRIDES, run_cli, sqlite_uri
from mlflow import MlflowClient

from src.final.compare import format_comparison, sweep_rows, write_comparison


def _job(folder, name, trials, best, final=None):
    job = folder / name
    (job / "final").mkdir(parents=True)
    results = {"objective": "val_accuracy", "wall_time_s": 100.0, "trials": trials, "best": best}
    (job / "results.json").write_text(json.dumps(results))
    if final is not None:
        (job / "final" / "final.json").write_text(json.dumps(final))


def test_the_comparison_reads_every_job_in_order_with_its_intervals(tmp_path):
    trial = {"status": "COMPLETED", "pruned_reason": None}
    pruned = {"status": "PRUNED", "pruned_reason": "pruned by SuccessiveHalvingPruner"}
    best = {"score": 0.97, "interval": [0.959, 0.978]}
    final = {
        "tuner": "random",
        "test_accuracy": 0.9906,
        "test_accuracy_ci_low": 0.9885,
        "test_accuracy_ci_high": 0.9923,
        "budget": {"spent_s": 238.4},
    }
    _job(tmp_path, "10_hyperband", [trial], best)  # job 10 sorts after job 2
    _job(tmp_path, "2_random", [trial, pruned, pruned], best, final)
    (tmp_path / "3_failed").mkdir()  # a job that wrote nothing is left out
    rows = sweep_rows(tmp_path)
    assert [row["job"] for row in rows] == ["2_random", "10_hyperband"]
    assert (rows[0]["completed"], rows[0]["pruned"], rows[0]["seconds"]) == (1, 2, 238.4)
    assert rows[1]["test_accuracy"] is None and rows[1]["tuner"] == "hyperband"
    table = format_comparison(rows)
    assert (
        "| 2_random | random | 1 / 2 | 0.9700 [0.9590, 0.9780] | 99.06 % [98.85, 99.23] | 238 s |"
        in table
    )
    assert "| 10_hyperband | hyperband | 1 / 0 | 0.9700 [0.9590, 0.9780] | - | 100 s |" in table
    assert write_comparison(tmp_path) == table
    assert (tmp_path / "comparison.md").read_text() == table + "\n"
    assert json.loads((tmp_path / "comparison.json").read_text()) == rows
    assert write_comparison(tmp_path / "3_failed") is None


@pytest.mark.slow
def test_a_budgeted_sweep_gives_each_job_its_budget_and_ends_with_the_comparison(tmp_path):
    """`-m tuner=random,tpe budget=...`: each job's clock starts with the job, so both
    search; the sweep folder gets the table, and both parent runs share a sweep tag."""
    store = sqlite_uri(tmp_path)
    result = run_cli(
        "-m",
        *[o for o in TINY_OVERRIDES if not o.startswith(("tuner=", "budget="))],
        "tuner=random,tpe",
        # Room for two trials and a final epoch on a loaded machine (two test workers):
        # 50 s was refused there, where trials cost 4.2 s each.
        "budget=70s",
        "budget_policy.min_trials=2",
        "tuner.max_trials=null",
        "tuner.search_examples=128",
        f"mlflow.tracking_uri={store}",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "sweep" / "comparison.md").read_text()
    assert "| 0_random | random |" in table and "| 1_tpe | tpe |" in table
    assert table in result.stdout
    for job in ("0_random", "1_tpe"):
        results = json.loads((tmp_path / "sweep" / job / "results.json").read_text())
        assert len(results["trials"]) >= 2, job
        assert results["budget"]["spent_s"] < 70 + 15, job  # its own clock, not the sweep's
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mnist-cnn")
    parents = client.search_runs([experiment.experiment_id], "tags.run_kind = 'search'")
    assert len(parents) == 2
    assert {p.data.tags["sweep"] for p in parents} == {"sweep"}
    assert sorted(p.data.tags["sweep.job"] for p in parents) == ["0", "1"]
