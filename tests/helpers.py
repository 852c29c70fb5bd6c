"""Helpers the tests import (pytest advises against importing ``conftest``): the tiny
config, subprocesses of the command line, waiting on conditions, throw-away servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType
from omegaconf import DictConfig

from src.config.compose import CONFIG_DIR, compose_config
from src.scaleout.process import Service, free_port, http_ok

REPO_ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SHARED_MNIST = REPO_ROOT.parent / "shared" / "datasets" / "mnist"
# Every option of every config group, found in conf/ so that a new option is tested too.
GROUP_OPTIONS = {
    group.name: sorted(p.stem for p in group.glob("*.yaml"))
    for group in sorted(CONFIG_DIR.iterdir())
    if group.is_dir()
}

# A search that finishes in seconds: a few hundred digits, 1 epoch, 2 trials, narrow layers.
TINY_OVERRIDES = [
    # Count-based, over the seed study's space: what the bookkeeping tests were written for.
    "budget=null",
    "search_space=cnn",
    "tuner=random",
    "tuner.warm_start=null",
    "tuner.pruner=null",
    "data=mnist_10k",
    "data.max_train_examples=300",
    # A tiny final stage scores 500 test digits, not 10,000 (twice with a champion).
    "data.max_test_examples=500",
    "search_space.filters=[8,16]",
    "search_space.dense_units=[32,64]",
    "training.epochs=1",
    "training.batch_size=64",
    "training.verbose=0",
    "tuner.max_trials=2",
]

# For HTTP to the servers tests start: loopback never goes through a proxy, whatever the
# environment (or an earlier test) set.
loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))

__all__ = ["compose_config", "free_port"]


def sqlite_uri(folder: Path) -> str:
    """A fresh MLflow SQLite store in `folder`."""
    return f"sqlite:///{folder / 'mlflow.db'}"


def make_tiny_config(folder: Path, *overrides: str) -> DictConfig:
    """The tiny search's config, writing results, tuner state and MLflow under `folder`."""
    store = [
        f"mlflow.tracking_uri={sqlite_uri(folder)}",
        f"mlflow.artifact_location={folder / 'artifacts'}",
    ]
    return compose_config([*TINY_OVERRIDES, *store, *overrides], output_dir=folder)


def _cli_env() -> dict[str, str]:
    """A user's environment for the CLIs: no MLFLOW_TRACKING_URI (runs go where the
    arguments say), the checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, module: str = "src.run"
) -> subprocess.CompletedProcess[str]:
    """Run `python -m MODULE ARGS` in a subprocess from `cwd`, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(
    *args: str, cwd: Path, module: str = "src.run", **popen: Any
) -> subprocess.Popen[str]:
    """Start `python -m MODULE ARGS` in the background from `cwd` (output discarded unless
    `popen` says otherwise), for tests that signal or kill it."""
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=cwd, env=_cli_env(), text=True, **options
    )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def http_service(
    command: Sequence[str], ready_path: str, env: dict[str, str] | None = None, timeout: float = 120
) -> Iterator[str]:
    """Start `command` (with `{port}` filled in) on a free loopback port; yield its URL.

    The process gets a session of its own and is stopped, with everything it started, at exit.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = Path(tempfile.mkdtemp(prefix="mnist-hps-service-")) / "service.log"
    service = Service(Path(command[0]).name, [p.format(port=port) for p in command], log_file, env)
    try:
        with service.start(lambda: http_ok(f"{url}{ready_path}"), timeout):
            yield url
    finally:
        shutil.rmtree(log_file.parent, ignore_errors=True)


def search_builds(monkeypatch: Any, make: Callable[[], Any]) -> None:
    """Make the search stage tune ``make()`` instead of the CNN hypermodel (the final
    stage still builds the real one)."""
    import src.search.stage as search_stage

    stand_in = SimpleNamespace(from_config=lambda *args: make())
    monkeypatch.setattr(search_stage, "CNNHyperModel", stand_in)


def tracked_run(cfg: DictConfig, *observers: Any) -> tuple[Any, str]:
    """The pipeline as `python -m src.run` runs it, without the final stage; the search's
    result and its parent run's id."""
    cfg.final.enabled = False
    from src.pipeline import run_pipeline
    from src.tracking.tracker import PARENT_RUN_FILE

    result = run_pipeline(cfg, observers)
    project_dir = Path(cfg.tuner.directory) / cfg.tuner.project_name
    return result.search, (project_dir / PARENT_RUN_FILE).read_text().strip()


def all_runs(uri: str, view: int = ViewType.ACTIVE_ONLY) -> tuple[Any, list[Any]]:
    """A client of the store and every run of its `mnist-cnn` experiment."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist-cnn")
    return client, client.search_runs([experiment.experiment_id], run_view_type=view)
