"""MLflow tracking: parent and child runs, failures, interruptions, resumption, a real server."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import keras
import keras_tuner
import pytest
from helpers import (
    REPO_ROOT,
    TINY_OVERRIDES,
    loopback,
    run_cli,
    search_builds,
    sqlite_uri,
)
from mlflow import MlflowClient
from mlflow.entities import ViewType

import src.scaleout.mlflow_server as services
from src.pipeline import run_pipeline
from src.scaleout.process import free_port
from src.search.observers import TrialObserver
from src.stats import accuracy_with_interval
from src.tracking.tracker import PARENT_RUN_FILE

PARENT_TAG = "mlflow.parentRunId"


def tracked_run(cfg, *observers):
    """The pipeline as `python -m src.run` runs it, without the final stage; the search's
    result and its parent run's id."""
    cfg.final.enabled = False
    result = run_pipeline(cfg, observers)
    project_dir = Path(cfg.tuner.directory) / cfg.tuner.project_name
    return result.search, (project_dir / PARENT_RUN_FILE).read_text().strip()


def all_runs(uri, view=ViewType.ACTIVE_ONLY):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist-cnn")
    return client, client.search_runs([experiment.experiment_id], run_view_type=view)


def split_runs(runs):
    """The parent runs and the trials' child runs (the final stage's run left out)."""
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("run_kind") == "trial"]
    return parents, children


def test_search_logs_one_parent_and_one_child_per_trial(tiny_config, tiny_dataset, tmp_path):
    cfg = tiny_config("training.epochs=2", "tuner.max_trials=3")
    result, parent_run_id = tracked_run(cfg)
    client, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.run_id == parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "random-cnn"
    assert parent.data.tags["data.source"] == "mnist_10k"
    assert parent.data.tags["data.train_size"] == "300"
    assert parent.data.params["training.epochs"] == "2"
    assert parent.data.params["search_space.learning_rate.max"] == "0.01"
    assert parent.data.tags["best_trial_id"] == result.best.trial_id
    assert parent.data.metrics["best_score"] == pytest.approx(result.best.score)
    assert parent.inputs.dataset_inputs[0].dataset.name == "mnist_10k"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "results.json"} <= artifacts
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    by_trial = {run.data.tags["trial_id"]: run for run in children}
    assert set(by_trial) == {t.trial_id for t in result.trials}
    ranked = sorted(result.trials, key=lambda t: -t.score)
    for trial in result.trials:
        run = by_trial[trial.trial_id]
        assert run.data.tags[PARENT_TAG] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in trial.hyperparameters.items()}
        assert run.data.metrics["trial_score"] == pytest.approx(trial.score)
        assert run.data.metrics["best_epoch"] == trial.best_step
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [0, 1]
        assert max(m.value for m in history) == pytest.approx(trial.score)
        for metric in ("loss", "accuracy", "val_loss"):
            assert len(client.get_metric_history(run.info.run_id, metric)) == 2
        assert run.data.tags["rank"] == str(ranked.index(trial) + 1)
    # Inactive conditional hyperparameters are not logged.
    for run in children:
        layers = int(run.data.params["conv_layers"])
        assert f"filters_{layers - 1}" in run.data.params
        assert f"filters_{layers}" not in run.data.params


class _PickyHyperModel(keras_tuner.HyperModel):
    """Raises for one value of `units`, builds a tiny model otherwise."""

    def build(self, hp):
        units = hp.Choice("units", [8, 16, 99])
        if units == 99:
            raise ValueError("units=99 is not supported")
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(units, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


def test_failing_trial_is_logged_failed_with_its_error(tiny_config, tiny_dataset, monkeypatch):
    search_builds(monkeypatch, lambda: _PickyHyperModel())
    cfg = tiny_config("tuner=grid", "tuner.max_trials=3")
    tracked_run(cfg)
    _, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    statuses = {r.data.params["units"]: r.info.status for r in children}
    assert statuses == {"8": "FINISHED", "16": "FINISHED", "99": "FAILED"}
    failed = next(r for r in children if r.info.status == "FAILED")
    assert "units=99 is not supported" in failed.data.tags["error"]
    assert "trial_score" not in failed.data.metrics
    assert parents[0].info.status == "FINISHED"


class _InterruptInSecondTrial(TrialObserver):
    def on_epoch_end(self, tuner, trial, epoch, logs):
        if len(tuner.oracle.trials) == 2:
            raise KeyboardInterrupt


def test_interrupted_search_leaves_no_running_runs(tiny_config, tiny_dataset):
    cfg = tiny_config("tuner.max_trials=3")
    with pytest.raises(KeyboardInterrupt):
        tracked_run(cfg, _InterruptInSecondTrial())
    _, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert sorted(r.info.status for r in children) == ["FINISHED", "KILLED"]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on a SQLite store and a free loopback port, stopped after."""
    (tmp_path / "server").mkdir()
    port = free_port()
    server = services.mlflow_server(
        sqlite_uri(tmp_path / "server"),
        tmp_path / "server" / "artifacts",
        port,
        tmp_path / "server" / "server.log",
    )
    with server:
        yield services.start_mlflow(server, port, timeout=60)


def test_tracking_server_serves_the_logged_runs(mlflow_server, tiny_config, tiny_dataset):
    cfg = tiny_config("mlflow=server", f"mlflow.tracking_uri={mlflow_server}")
    result, parent_run_id = tracked_run(cfg)
    client = MlflowClient(mlflow_server)
    experiment_id = client.get_experiment_by_name("mnist-cnn").experiment_id
    request = urllib.request.Request(
        f"{mlflow_server}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [experiment_id], "max_results": 100}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with loopback.open(request, timeout=10) as response:
        runs = json.load(response)["runs"]
    ids = {run["info"]["run_id"] for run in runs}
    assert parent_run_id in ids
    assert len(runs) == 1 + len(result.trials)
    assert {run["info"]["status"] for run in runs} == {"FINISHED"}


def test_creating_a_new_store_waits_for_the_lock_beside_it(tmp_path):
    """Two processes creating one new SQLite store at once crash in MLflow ("table already
    exists"): `open_store` creates it under a file lock. Holding that lock here must keep
    another process from creating the store until it is released. (Two searches writing
    into one new store at once: the parallel multirun in test_cli.py.)"""
    store = sqlite_uri(tmp_path)
    code = "import sys; from src.tracking.store import open_store; open_store(sys.argv[1], 'x')"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(tmp_path / "mlflow.db.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        process = subprocess.Popen([sys.executable, "-c", code, store], env=env)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=5)  # MLflow's import takes ~2 s; the lock holds it after
            assert not (tmp_path / "mlflow.db").exists()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert process.wait(timeout=60) == 0
    assert MlflowClient(store).get_experiment_by_name("x") is not None


class _StopServerAfterFirstTrial(TrialObserver):
    """Stops the tracking server once the first trial has ended: the rest of the search
    runs against a store that does not answer."""

    def __init__(self, server):
        self.server = server

    def on_trial_end(self, tuner, trial):
        if trial.trial_id == "0":
            self.server.stop()


@pytest.mark.slow
def test_a_tracking_server_that_stops_mid_search_fails_no_trial(tmp_path, tiny_config, monkeypatch):
    """Tracking only listens: with the server gone after trial 0, every trial still
    completes and results.json holds them all; the store keeps what reached it."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast, not in minutes
    (tmp_path / "server").mkdir()
    port = free_port()
    store = sqlite_uri(tmp_path / "server")
    server = services.mlflow_server(
        store, tmp_path / "server" / "artifacts", port, tmp_path / "server" / "server.log"
    )
    with server:
        uri = services.start_mlflow(server, port, timeout=60)
        cfg = tiny_config("mlflow=server", f"mlflow.tracking_uri={uri}", "tuner.max_trials=3")
        cfg.final.enabled = False
        search = run_pipeline(cfg, [_StopServerAfterFirstTrial(server)]).search
    assert [t.status for t in search.trials] == ["COMPLETED"] * 3
    results = json.loads((tmp_path / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED"] * 3
    # The store (read directly) holds what reached it: the parent run, left RUNNING (its
    # end could not be logged), and trial 0, finished; trials 1 and 2 are not there.
    _, runs = all_runs(store)
    trials = {r.data.tags.get("trial_id"): r for r in runs if r.data.tags.get("trial_id")}
    assert list(trials) == ["0"] and trials["0"].info.status == "FINISHED"
    parents = [r for r in runs if r.data.tags.get("run_kind") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_written_down_nowhere(mlflow_server, tmp_path):
    """The URI's password reaches the server (as basic auth) and no file, log or MLflow
    param or artifact of the run."""
    secret = "s3cret-Pa55"
    uri = mlflow_server.replace("http://", f"http://alice:{secret}@")
    result = run_cli(
        *TINY_OVERRIDES,
        "mlflow=server",
        f"mlflow.tracking_uri={uri}",
        "final.enabled=false",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "run.log" for p in written) and any(p.suffix == ".yaml" for p in written)
    assert not [p for p in written if secret.encode() in p.read_bytes()]
    assert "alice:***@" in (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()
    client = MlflowClient(mlflow_server)
    parent = next(r for r in all_runs(mlflow_server)[1] if r.data.tags["run_kind"] == "search")
    assert secret not in json.dumps(parent.data.params)
    config = client.download_artifacts(parent.info.run_id, "config.yaml", str(tmp_path))
    assert secret not in Path(config).read_text()
    assert secret not in result.stdout + result.stderr


def test_a_server_beyond_loopback_is_refused_without_authentication(tmp_path):
    """One line, exit 1, and nothing started (no PostgreSQL cluster, no .env written)."""
    result = run_cli(
        "tracking-server", "--host", "0.0.0.0", cwd=tmp_path, module="src.scaleout.services"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0: an MLflow server beyond loopback needs authentication "
        "(--auth, or TRACKING_AUTH=1 for make tracking-server): unauthenticated, anyone who "
        "reaches it could move @champion"
    ]
    assert not (tmp_path / ".env").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_with_authentication_the_server_lets_in_only_its_users(tmp_path, monkeypatch):
    """MLflow's basic-auth app, as `--auth` starts it: the admin from the credentials can
    write, a request without them is refused."""
    auth = services.BasicAuth("admin", "adm1n-Pw-long", tmp_path / "auth.db")
    port = free_port()
    server = services.mlflow_server(
        sqlite_uri(tmp_path), tmp_path / "artifacts", port, tmp_path / "server.log", auth=auth
    )
    with server:
        url = services.start_mlflow(server, port, timeout=90)
        search = urllib.request.Request(
            f"{url}/api/2.0/mlflow/experiments/search",
            data=b'{"max_results": 1}',
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            loopback.open(search, timeout=10)
        assert refused.value.code == 401
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")  # what MLflow's client reads
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "adm1n-Pw-long")
        assert MlflowClient(url).create_experiment("with-auth")


class _OneRateCannotLearn(keras_tuner.HyperModel):
    """A tiny model; learning rate 0 leaves it at chance (a trial a pruner should stop)."""

    def build(self, hp):
        rate = hp.Choice("learning_rate", [0.01, 0.0])
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
        model.compile(
            keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        return model


def test_a_pruned_trial_is_visible_as_such(tiny_config, tiny_dataset, monkeypatch):
    """Status, the epoch it stopped at, the pruner's reason and its curve up to there; the
    parent counts the pruned trials and the epochs they saved."""
    search_builds(monkeypatch, lambda: _OneRateCannotLearn())
    cfg = tiny_config(
        "tuner=grid",
        "training.epochs=4",
        "tuner.pruner={name: threshold, lower: 0.3, n_warmup_steps: 1}",
    )
    result, _ = tracked_run(cfg)
    assert [(t.status, t.epochs_run) for t in result.trials] == [("COMPLETED", 4), ("PRUNED", 2)]
    client, runs = all_runs(cfg.mlflow.tracking_uri)
    parents, children = split_runs(runs)
    pruned = next(r for r in children if r.data.params["learning_rate"] == "0.0")
    assert pruned.info.status == "FINISHED"
    assert pruned.data.tags["trial_status"] == "PRUNED"
    assert pruned.data.metrics["pruned_at_epoch"] == 2
    assert pruned.data.tags["pruned_reason"].startswith(
        "pruned by ThresholdPruner after epoch 2: val_accuracy 0.1"
    )
    history = client.get_metric_history(pruned.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    completed = next(r for r in children if r.data.params["learning_rate"] == "0.01")
    assert completed.data.tags["trial_status"] == "COMPLETED"
    assert len(client.get_metric_history(completed.info.run_id, "val_accuracy")) == 4
    # Every score carries its interval on the validation digits.
    low, high = (
        completed.data.metrics["trial_score_ci_low"],
        completed.data.metrics["trial_score_ci_high"],
    )
    assert low < completed.data.metrics["trial_score"] < high
    assert parents[0].data.metrics["trials_pruned"] == 1
    assert parents[0].data.metrics["trials_epochs_saved"] == 2
    assert parents[0].data.tags["best_trial_id"] == result.best.trial_id != "1"


def test_a_cross_validated_trial_logs_one_curve_per_fold(tiny_config, tiny_dataset, monkeypatch):
    """`tuner.cv_folds=2`: each trial trains once per fold of the training and validation
    digits; its score is the mean of the folds' best validation accuracies, scored on all
    of those digits, and MLflow holds each fold's curve."""
    from test_search import _DenseHyperModel

    search_builds(monkeypatch, lambda: _DenseHyperModel())
    cfg = tiny_config("tuner.cv_folds=2", "training.epochs=2", "tuner.max_trials=1")
    result, _ = tracked_run(cfg)
    trial = result.trials[0]
    client, runs = all_runs(cfg.mlflow.tracking_uri)
    _, children = split_runs(runs)
    run_id = children[0].info.run_id
    best_per_fold = []
    for fold in (1, 2):
        history = client.get_metric_history(run_id, f"fold{fold}/val_accuracy")
        assert [m.step for m in history] == [0, 1]
        best_per_fold.append(max(m.value for m in history))
    assert trial.score == pytest.approx(sum(best_per_fold) / 2)
    assert not client.get_metric_history(run_id, "val_accuracy")  # only per-fold curves
    # The interval is over every training and validation digit (each scored once).
    scored = result.data["sizes"]["train"] + result.data["sizes"]["val"]
    expected = accuracy_with_interval(round(trial.score * scored), scored)
    assert trial.interval == pytest.approx([expected.ci_low, expected.ci_high])
