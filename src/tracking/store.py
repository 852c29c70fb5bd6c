"""The MLflow store and experiment, opened safely by however many processes at once.

Kept apart from ``tracking.py`` so that processes which only prepare the store (the
supervisor of ``src.scaleout.cluster``) do not import TensorFlow and Keras Tuner.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient

# Without it MLflow 3's UI opens the experiment on its GenAI overview, which hides the runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def open_store(
    uri: str, experiment_name: str, artifact_location: str | None = None
) -> tuple[MlflowClient, str]:
    """A client of the store at ``uri`` and the experiment's id, both created if need be.

    A tracking server chooses (and proxies) artifact locations itself: a local folder
    configured for file stores would mean nothing to clients on other machines.
    """
    if uri.startswith(("http://", "https://")):
        artifact_location = None
    with sqlite_store_lock(uri):
        client = MlflowClient(tracking_uri=uri)  # creates a new store's tables
        return client, ensure_experiment(client, experiment_name, artifact_location)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """Return the experiment's id, creating it (tagged for the UI's training view) if needed."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if artifact_location and "://" not in artifact_location:
            location = Path(artifact_location).resolve().as_uri()
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except Exception:  # another process created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
        for key, value in EXPERIMENT_KIND.items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


@contextmanager
def sqlite_store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store while it may be created.

    MLflow creates a new SQLite store's tables on first use, and two processes doing that
    at once crash ("table ... already exists"); a parallel multirun's first jobs would.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    # SQLite creates the database file but not the folder holding it.
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
