"""Shared fixtures: the real composed config shrunk to run in seconds, the tiny dataset,
Fashion-MNIST where installed, and one PostgreSQL-backed tracking server per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import FASHION_MNIST, SHARED_MNIST, make_tiny_config
from omegaconf import DictConfig

from src.scaleout.mlflow_server import scratch_tracking_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# `make test` runs two xdist workers on two cores: one TensorFlow thread each (here and in
# the processes the tests start) keeps them from fighting over the cores.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# Tests log to stores under tmp_path, never to a server the environment points at.
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """A factory of tiny configs writing (results, tuner state, MLflow) under tmp_path."""
    return lambda *overrides: make_tiny_config(tmp_path, *overrides)


@pytest.fixture(scope="session")
def tiny_dataset():
    """300 training digits of the bundled sample (validation and test as usual)."""
    from src.data.dataset import load_dataset

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


@pytest.fixture(scope="session")
def official_mnist() -> Path:
    """The four official MNIST IDX files in ../shared (the project's CI has them; a user's
    clone does not, and the project never needs them at run time)."""
    if not SHARED_MNIST.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_MNIST} is missing in CI")
        pytest.skip(f"no official MNIST files at {SHARED_MNIST} (the project's CI has them)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def postgres_tracking_server() -> Iterator[str]:
    """An MLflow tracking server on a PostgreSQL cluster of the session's own, both on free
    loopback ports in a temporary folder; stopped and removed after the session."""
    from src.scaleout.process import ServiceError

    try:
        with scratch_tracking_server() as url:
            yield url
    except ServiceError as error:
        if "not installed" not in str(error):
            raise
        if os.environ.get("CI"):
            pytest.fail(f"{error}: .ci/run must install postgresql")
        pytest.skip(str(error))
