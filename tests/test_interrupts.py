"""A search stopped from outside: SIGKILL then resume=true, SIGTERM. (Apart from
test_tracking.py so that pytest-xdist runs these subprocess-heavy tests beside it.)"""

from __future__ import annotations

import json
import signal

import pytest
from helpers import TINY_OVERRIDES, run_cli, sqlite_uri, start_cli, wait_for
from mlflow.entities import ViewType
from test_tracking import all_runs, split_runs

from src.tracking.tracker import PARENT_RUN_FILE


@pytest.mark.slow
def test_search_killed_mid_trial_resumes_into_the_same_parent(tmp_path):
    store = sqlite_uri(tmp_path)
    args = [
        *TINY_OVERRIDES,
        "tuner.max_trials=3",
        "training.epochs=4",
        "final.enabled=false",  # the search's runs are what resuming must keep whole
        f"mlflow.tracking_uri={store}",
        "hydra.run.dir=run",
    ]
    process = start_cli(*args, cwd=tmp_path)
    log_file = tmp_path / "run" / "run.log"

    def second_trial_running() -> bool:
        if not (tmp_path / "mlflow.db").exists():
            return False
        try:
            _, runs = all_runs(store)
        except Exception:  # the store is still being created
            return False
        return any(r.info.status == "RUNNING" and r.data.tags.get("trial_id") == "1" for r in runs)

    try:
        # The log line first (cheap to poll), then its child run in the store (a trial of
        # four epochs lasts seconds; the store is polled only once it has started).
        wait_for(
            lambda: log_file.is_file() and "trial 2/3" in log_file.read_text(),
            120,
            "the second trial to start",
        )
        wait_for(second_trial_running, 30, "the second trial's run in the store")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    _, runs = all_runs(store)
    # What SIGKILL leaves behind: the killed trial's own run RUNNING, not only the parent.
    assert any(r.info.status == "RUNNING" and r.data.tags.get("trial_id") == "1" for r in runs)

    resumed = run_cli(*args, "resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "MLflow: resuming parent run" in log_file.read_text()

    _, runs = all_runs(store)
    parents, children = split_runs(runs)
    assert len(parents) == 1
    parent_id = (tmp_path / "run" / "tuner" / PARENT_RUN_FILE).read_text().strip()
    assert parents[0].info.run_id == parent_id
    trial_ids = [r.data.tags["trial_id"] for r in children]
    assert sorted(trial_ids) == sorted(set(trial_ids)) and len(trial_ids) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    everything = all_runs(store, ViewType.ALL)[1]
    assert not [r for r in everything if r.info.status == "RUNNING"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED"] * 3


@pytest.mark.slow
def test_sigterm_ends_the_runs_killed_and_exits_130(tmp_path):
    """A scheduler's SIGTERM stops a search like Ctrl-C: exit 130, the open runs KILLED,
    none left RUNNING, and the command to resume in the log."""
    store = sqlite_uri(tmp_path)
    args = [
        *TINY_OVERRIDES,
        "tuner.max_trials=3",
        "training.epochs=4",
        f"mlflow.tracking_uri={store}",
        "hydra.run.dir=run",
    ]
    process = start_cli(*args, cwd=tmp_path)
    log_file = tmp_path / "run" / "run.log"
    try:
        wait_for(
            lambda: log_file.is_file() and "trial 2/3" in log_file.read_text(),
            120,
            "the second trial to start",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
    _, runs = all_runs(store)
    statuses = {r.data.tags.get("trial_id", "parent"): r.info.status for r in runs}
    assert statuses["parent"] == "KILLED" and statuses["0"] == "FINISHED"
    assert "RUNNING" not in statuses.values()
    assert "resume=true" in log_file.read_text()
