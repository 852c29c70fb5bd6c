"""The command line as a user runs it: a multirun of two searches, in a temporary folder.

(The quick search end to end runs from an installed wheel, in test_packaging.py.)
"""

from __future__ import annotations

import json
import subprocess

import pytest
from helpers import run_cli
from mlflow import MlflowClient

PARENT = "mlflow.parentRunId"


@pytest.mark.slow
def test_parallel_multirun_writes_one_folder_and_one_parent_run_per_tuner(tmp_path):
    """A Hydra multirun through the joblib launcher (two searches at once, each with its
    final stage), into the default store of the folder it runs in; the basic launcher runs
    the same jobs one after the other."""
    result = run_cli(
        "-m",
        "experiment=quick",
        "tuner=random,hyperband",
        "tuner.max_trials=1",
        "training.verbose=0",
        "search_space.filters=[8,16]",  # narrow layers: the official 10,000 test digits
        "search_space.dense_units=[32]",  # are evaluated twice per job (model, champion)
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        cwd=tmp_path,
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


@pytest.mark.slow
def test_four_searches_at_once_into_one_sqlite_store_all_finish(tmp_path):
    """Four searches, each with its final stage, started together into one new SQLite store:
    every run FINISHED, no trial failed on "database is locked", every final model
    registered, and the champion is the best of them by the promotion rule (`better`:
    most of the same test digits right)."""
    import time

    from helpers import TINY_OVERRIDES, start_cli

    processes = []
    start = time.monotonic()
    for seed in range(4):
        log = open(tmp_path / f"search_{seed}.log", "w")  # noqa: SIM115 (closed below)
        process = start_cli(
            *TINY_OVERRIDES,
            f"training.seed={seed}",
            "final.promotion=better",
            f"hydra.run.dir=outputs/search_{seed}",
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append((process, log))
    for process, log in processes:
        process.wait(timeout=600)
        log.close()
    logs = [(tmp_path / f"search_{seed}.log").read_text() for seed in range(4)]
    elapsed = time.monotonic() - start
    for (process, _), text in zip(processes, logs, strict=True):
        assert process.returncode == 0, text[-2000:]
        assert "database is locked" not in text

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-cnn")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert len([r for r in runs if PARENT not in r.data.tags]) == 4
    assert len([r for r in runs if r.data.tags.get("run_kind") == "trial"]) == 8
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    versions = client.search_model_versions("name='mnist-cnn'")
    assert len(versions) == 4
    accuracy = {v.version: client.get_run(v.run_id).data.metrics["test_accuracy"] for v in versions}
    champion = client.get_model_version_by_alias("mnist-cnn", "champion").version
    best = max(accuracy.values())
    assert accuracy[champion] == best, (champion, accuracy)
    print(f"four searches with final stages at once: {elapsed:.0f} s")
