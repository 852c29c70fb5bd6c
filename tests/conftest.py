"""Shared fixtures: the real composed config, shrunk to run in seconds."""

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

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from src.services import Service, free_port, http_ok

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests log to stores under tmp_path, never to a server the environment points at.
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "conf"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# A search that finishes in seconds: a few hundred digits, 1 epoch, 2 trials, narrow layers.
TINY_OVERRIDES = [
    "data=mnist_10k",
    "data.max_train_examples=300",
    "search_space.filters=[8,16]",
    "search_space.dense_units=[32,64]",
    "training.epochs=1",
    "training.batch_size=64",
    "training.verbose=0",
    "tuner.max_trials=2",
]


def compose_config(overrides: Sequence[str] = (), output_dir: Path | None = None) -> DictConfig:
    """Compose conf/config.yaml as `python -m src.run` would, outside a Hydra run."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name="config", overrides=list(overrides))
    with open_dict(cfg):
        # ${hydra:runtime.output_dir} exists only inside a Hydra run.
        cfg.paths.output_dir = str(output_dir or "unused-output-dir")
    return cfg


def sqlite_uri(folder: Path) -> str:
    """A fresh MLflow SQLite store in `folder`."""
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """A factory of tiny configs writing (results, tuner state, MLflow) under tmp_path."""

    def make(*overrides: str) -> DictConfig:
        store = [
            f"mlflow.tracking_uri={sqlite_uri(tmp_path)}",
            f"mlflow.artifact_location={tmp_path / 'artifacts'}",
        ]
        return compose_config([*TINY_OVERRIDES, *store, *overrides], output_dir=tmp_path)

    return make


# For HTTP to the servers tests start: loopback never goes through a proxy, whatever the
# environment (or an earlier test) set.
loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, module: str = "src.run"
) -> subprocess.CompletedProcess[str]:
    """Run `python -m MODULE ARGS` in a subprocess from `cwd`, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_dataset():
    """300 training digits of the bundled sample (validation and test as usual)."""
    from src.data import load_dataset

    data_cfg = {
        "name": "mnist_10k",
        "path": None,
        "test_size": 1000,
        "split_seed": 0,
        "max_train_examples": 300,
    }
    return load_dataset(data_cfg, val_fraction=0.05)


@pytest.fixture
def fashion_mnist() -> Path:
    """The Fashion-MNIST IDX folder from Debian's dataset-fashion-mnist (CI installs it)."""
    if not FASHION_MNIST.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION_MNIST} is missing: .ci/run must install dataset-fashion-mnist")
        pytest.skip("apt-get install dataset-fashion-mnist to run the IDX tests")
    return FASHION_MNIST


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


@pytest.fixture(scope="session")
def postgres_tracking_server() -> Iterator[str]:
    """An MLflow tracking server on a PostgreSQL cluster of the session's own, both on free
    loopback ports in a temporary folder; stopped and removed after the session."""
    from src.services import ServiceError, scratch_tracking_server

    try:
        with scratch_tracking_server() as url:
            yield url
    except ServiceError as error:
        if "not installed" not in str(error):
            raise
        if os.environ.get("CI"):
            pytest.fail(f"{error}: .ci/run must install postgresql")
        pytest.skip(str(error))
