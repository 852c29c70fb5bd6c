"""The JAX backend (`KERAS_BACKEND=jax`): the hypermodel, a tiny search and the final stage.

Skipped where JAX is not installed (`make install EXTRAS=cpu,dev,jax`; CI installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, TINY_OVERRIDES, sqlite_uri
from mlflow import MlflowClient

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("jax") is None,
        reason="JAX is not installed (make install EXTRAS=cpu,dev,jax; CI installs it)",
    ),
]


def test_a_tpe_search_with_pruning_and_the_final_stage_run_on_jax(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO_ROOT), KERAS_BACKEND="jax")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.run",
            *TINY_OVERRIDES,
            "tuner=tpe",
            "training.epochs=2",
            "tuner.pruner=median",
            "final.epochs=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"mlflow.tracking_uri={sqlite_uri(tmp_path)}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["COMPLETED", "COMPLETED"]
    final = json.loads((tmp_path / "run/final/final.json").read_text())
    assert final["test_size"] == 500 and final["test_accuracy"] > 0.3
    # The search ran on JAX, and MLflow says so.
    client = MlflowClient(sqlite_uri(tmp_path))
    experiment = client.get_experiment_by_name("mnist-cnn")
    parent = next(
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("run_kind") != "trial" and "keras_backend" in r.data.tags
    )
    assert parent.data.tags["keras_backend"] == "jax"
    assert "version.jax" in parent.data.tags
