"""The command line as a user runs it: a quick search and a multirun, in a temporary folder."""

from __future__ import annotations

import json

from helpers import run_cli
from mlflow import MlflowClient

PARENT = "mlflow.parentRunId"


def test_quick_experiment_runs_end_to_end(tmp_path):
    result = run_cli("experiment=quick", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED", "COMPLETED"]
    assert results["data"]["name"] == "mnist_10k"
    assert results["data"]["sizes"]["train"] == 512
    assert results["best"]["score"] == max(t["score"] for t in results["trials"])
    log = (tmp_path / "run" / "run.log").read_text()
    assert "trial 1/2" in log and "trial 2/2" in log and "best trial" in log


def test_multirun_writes_one_folder_and_one_parent_run_per_tuner(tmp_path):
    result = run_cli(
        "-m", "experiment=quick", "tuner=random,hyperband", "tuner.max_trials=1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (tmp_path / "multirun").exists()
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert folders == ["0_random", "1_hyperband"]
    for folder in folders:
        results = json.loads((sweep / folder / "results.json").read_text())
        assert results["best"] is not None

    # Both searches went to the default store, mlruns/ where the command ran.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-cnn")
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.info.run_id: r.data.tags["tuner"] for r in runs if PARENT not in r.data.tags}
    assert sorted(parents.values()) == ["hyperband", "random"]
    trials = [r for r in runs if r.data.tags.get("run_kind") == "trial"]
    finals = [r for r in runs if r.data.tags.get("run_kind") == "final"]
    assert {r.data.tags[PARENT] for r in trials} == set(parents)
    assert {r.data.tags[PARENT] for r in finals} == set(parents)
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in runs)
