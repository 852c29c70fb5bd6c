"""MLflow stores the search writes to: a tracking server, its authentication, its outages,
and the lock that creates a new SQLite store once."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import (
    REPO_ROOT,
    TINY_OVERRIDES,
    all_runs,
    loopback,
    run_cli,
    sqlite_uri,
    tracked_run,
)
from mlflow import MlflowClient

import src.scaleout.mlflow_server as services
from src.pipeline import run_pipeline
from src.scaleout.process import free_port
from src.search.observers import TrialObserver

PARENT_TAG = "mlflow.parentRunId"


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


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "99999"], "error: --port=99999: expected a port from 1 to 65535"),
        (["--host", "no-such-host.invalid"], "error: --host=no-such-host.invalid: not an address"),
        (["--data-dir", "blocker/pg"], "error: --data-dir=blocker/pg: cannot be written"),
        (["--artifacts", "blocker/a"], "error: --artifacts=blocker/a: cannot be written"),
    ],
)
def test_every_argument_is_checked_before_anything_starts(tmp_path, arguments, message):
    """One line, exit 1; no PostgreSQL cluster, no .env with passwords, no folders."""
    (tmp_path / "blocker").write_text("a file where a folder would go")
    result = run_cli("tracking-server", *arguments, cwd=tmp_path, module="src.scaleout.services")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / ".env").exists() and not (tmp_path / "mlruns").exists()


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "tracking-server", "--port", str(port), cwd=tmp_path, module="src.scaleout.services"
        )
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: --port={port} on 127.0.0.1: cannot serve")
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
