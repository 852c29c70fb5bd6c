"""Store trouble is found before the search starts, and said in one line naming the store."""

from __future__ import annotations

import os
import stat
import time

import pytest

from src.errors import StoreError
from src.scaleout.process import free_port
from src.tracking.store import artifact_root, open_store


def _store(folder):
    return f"sqlite:///{folder / 'mlflow.db'}"


def test_a_stores_artifacts_default_to_a_folder_beside_it(tmp_path):
    assert artifact_root(_store(tmp_path)) == str(tmp_path / "artifacts")
    assert artifact_root("sqlite:///mlruns/mlflow.db") == "mlruns/artifacts"
    assert artifact_root("postgresql://db/mlflow") is None
    client, experiment_id = open_store(_store(tmp_path), "e")
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "artifacts").resolve().as_uri()


def test_a_sqlite_store_cut_in_half_is_named_as_damaged(tmp_path):
    open_store(_store(tmp_path), "e")  # a real store, tables and all
    database = tmp_path / "mlflow.db"
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])
    with pytest.raises(StoreError) as error:
        open_store(_store(tmp_path), "e")
    message = str(error.value)
    assert message.startswith(f"MLflow store {database} is damaged (") and "\n" not in message
    assert "restore it from a copy" in message


def test_a_file_that_is_no_database_is_named_as_damaged(tmp_path):
    (tmp_path / "mlflow.db").write_text("not a database at all" * 100)
    with pytest.raises(StoreError, match=r"is damaged .*file is not a database"):
        open_store(_store(tmp_path), "e")


def _read_only(folder):
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    probe = folder / "probe"
    try:
        probe.write_text("")
    except OSError:
        return folder
    probe.unlink()
    folder.chmod(stat.S_IRWXU)
    pytest.skip("this user writes into read-only folders (root): permissions cannot fail here")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc here")
def test_a_store_folder_where_no_file_can_be_created_is_refused():
    # /proc takes no new files, whoever asks (root too): what a read-only mount does.
    with pytest.raises(
        StoreError, match=r"the MLflow store's folder /proc/self/.*cannot be written"
    ):
        open_store("sqlite:////proc/self/store/mlflow.db", "e")


def test_a_read_only_store_folder_is_refused_before_anything_is_written(tmp_path):
    folder = _read_only(tmp_path / "store")
    try:
        with pytest.raises(StoreError, match=r"the MLflow store's folder .*cannot be written"):
            open_store(_store(folder), "e")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_an_unwritable_artifact_location_is_refused_before_the_experiment_keeps_it(tmp_path):
    # A file where a folder should be: no one, root included, can create files under it.
    blocked = tmp_path / "artifacts"
    blocked.write_text("a file, not a folder")
    with pytest.raises(StoreError, match=r"mlflow.artifact_location=.*cannot be written"):
        open_store(_store(tmp_path / "store"), "e", str(blocked / "inside"))
    # The experiment was not created with that location: fixed, the same name works.
    client, experiment_id = open_store(_store(tmp_path / "store"), "e", str(tmp_path / "ok"))
    assert client.get_experiment(experiment_id).artifact_location.endswith("/ok")


def test_an_experiment_whose_kept_location_went_bad_is_named(tmp_path):
    location = tmp_path / "kept"
    open_store(_store(tmp_path), "e", str(location))
    if location.exists():
        location.rmdir()  # nothing was logged into it yet
    location.write_text("now a file")
    with pytest.raises(StoreError, match=r"experiment 'e' keeps its artifacts in .*another"):
        open_store(_store(tmp_path), "e")


def test_a_tracking_server_that_does_not_answer_fails_within_the_promise(monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    from src.tracking.tracker import _HTTP_RETRY_DEFAULTS

    for name, value in _HTTP_RETRY_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(StoreError) as error:
        open_store(uri, "e")
    assert time.monotonic() - start < 2 * int(_HTTP_RETRY_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    assert str(error.value).startswith(f"MLflow tracking server {uri} does not answer (2 retries)")


def test_the_tracker_sets_the_retry_promise_before_its_first_request(tmp_path, monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    from helpers import make_tiny_config

    from src.data.dataset import Dataset
    from src.tracking.tracker import MLflowTracker

    cfg = make_tiny_config(tmp_path, f"mlflow.tracking_uri=http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(StoreError, match="does not answer"):
        MLflowTracker(cfg, Dataset("tiny", "test", "digest", None, None, None))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert time.monotonic() - start < 40
