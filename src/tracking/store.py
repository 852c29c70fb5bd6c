"""The MLflow store and experiment, opened safely by however many processes at once.

Kept apart from ``tracking.py`` so that processes which only prepare the store (the
supervisor of ``src.scaleout.cluster``) do not import TensorFlow and Keras Tuner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient

from src.config.secrets import redact
from src.errors import StoreError
from src.folders import unwritable_reason

# Without it MLflow 3's UI opens the experiment on its GenAI overview, which hides the runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def open_store(
    uri: str, experiment_name: str, artifact_location: str | None = None
) -> tuple[MlflowClient, str]:
    """A client of the store at ``uri`` and the experiment's id, both created if need be.

    A tracking server chooses (and proxies) artifact locations itself: a local folder
    configured for file stores would mean nothing to clients on other machines. Without an
    ``artifact_location``, a new experiment keeps its artifacts beside the store
    (`artifact_root`), never in a folder that depends on where the command ran.
    """
    if uri.startswith(("http://", "https://")):
        artifact_location = None
    else:
        artifact_location = artifact_location or artifact_root(uri)
    check_sqlite_store(uri)
    with sqlite_store_lock(uri):
        try:
            client = MlflowClient(tracking_uri=uri)  # creates a new store's tables
            existing = client.get_experiment_by_name(experiment_name)
        except Exception as error:  # MLflow raises many kinds; each means the same here
            raise StoreError(_unusable(uri, error)) from None
        if existing is None:
            # Checked before the experiment keeps it: a location is never changed later.
            _check_writable(artifact_location, f"mlflow.artifact_location={artifact_location}")
            experiment_id = ensure_experiment(client, experiment_name, artifact_location)
        else:
            experiment_id = ensure_experiment(client, experiment_name)
            _check_writable(
                existing.artifact_location,
                f"experiment {experiment_name!r} keeps its artifacts in "
                f"{existing.artifact_location}, which",
                "an experiment's artifact location cannot be changed: make it writable, or "
                "use another mlflow.experiment_name",
            )
        return client, experiment_id


def check_sqlite_store(uri: str) -> None:
    """A SQLite store that exists must be a sound database in a folder that can be written
    (SQLite writes a journal beside the file); one that does not exist yet, a folder where
    it can be created.

    Raises:
        StoreError: naming the store and what to do.
    """
    if not uri.startswith("sqlite:///"):
        return
    database = Path(uri.removeprefix("sqlite:///"))
    elsewhere = "or point mlflow.tracking_uri (MLFLOW_TRACKING_URI) at another store"
    if database.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as error:
            verdict = str(error)
        if verdict != "ok":
            raise StoreError(
                f"MLflow store {database} is damaged ({verdict}): restore it from a copy, "
                f"{elsewhere}"
            )
    _check_writable(
        str(database.parent),
        f"the MLflow store's folder {database.parent}",
        f"fix that, {elsewhere}",
    )


def _check_writable(location: str | None, what: str, advice: str | None = None) -> None:
    """Refuse a local folder (a path or file URI) in which no file can be created."""
    if not location or location.startswith(("http://", "https://", "mlflow-artifacts:")):
        return  # a server's: it checks its own
    if "://" in location and not location.startswith("file:"):
        return  # s3://, gs://, ...: their credentials are checked where they are used
    folder = (
        Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))
        if location.startswith("file:")
        else Path(location)
    )
    reason = unwritable_reason(folder)
    if reason is not None:
        raise StoreError(
            f"{what} cannot be written ({reason}); "
            + (
                advice
                or "choose a writable folder, or leave it null to keep artifacts beside the store"
            )
        )


def _unusable(uri: str, error: Exception) -> str:
    """One line for a store that failed its first request."""
    text = str(error).strip() or type(error).__name__
    if uri.startswith(("http://", "https://")):
        silent = ("Max retries exceeded", "Connection refused", "timed out", "Failed to resolve")
        if any(sign in text for sign in silent):
            retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLflow's default")
            return (
                f"MLflow tracking server {redact(uri)} does not answer ({retries} retries): "
                "start it (make tracking-server), or point mlflow.tracking_uri "
                "(MLFLOW_TRACKING_URI) at one that runs"
            )
    return f"MLflow store {redact(uri)}: {text.splitlines()[0][:300]}"


def use_model_store(uri: str, model_uri: str) -> str | None:
    """Point this process's MLflow at the store ``uri`` to load ``model_uri`` from it, for a
    command line; or why that cannot work without creating the store: a registry or run URI
    against a SQLite file that does not exist (MLflow would create an empty store there, as
    a side effect of a command that then fails). None when MLflow was pointed there."""
    import mlflow

    database = Path(uri.removeprefix("sqlite:///"))
    from_store = model_uri.startswith(("models:/", "runs:/"))
    if from_store and uri.startswith("sqlite:///") and not database.is_file():
        return (
            f"no MLflow store at {database} (nothing registered there): point "
            "MLFLOW_TRACKING_URI at the store that holds the model"
        )
    mlflow.set_tracking_uri(uri)
    return None


def artifact_root(uri: str) -> str | None:
    """Where a store's artifacts belong when none is configured: ``artifacts/`` beside a
    SQLite file; None (the store's own default) for any other store."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
    return None


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
