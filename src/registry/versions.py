"""Registered versions: create them, find the one a search registered, read the champion."""

from __future__ import annotations

import base64
import tempfile
import zlib

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

CHAMPION, CHALLENGER = "champion", "challenger"


def champion_uri(model_name: str) -> str:
    """The URI of a registered model's champion, e.g. ``models:/mnist-cnn@champion``."""
    return f"models:/{model_name}@{CHAMPION}"


# Tagged on each version: the search (its parent run) whose final stage registered it.
SEARCH_RUN_TAG = "search_run_id"
# Tagged on each version: which test digits it got right, so that a later challenger is
# compared with it without loading and re-running it (a three-model ensemble champion took
# 6.2 s to load and score on a 2-core AMD EPYC, half the 12 s a budget keeps after
# training).
TEST_RIGHT_TAG = "test_right"
# Registry tag values of some stores' schemas hold 5,000 characters; 10,000 digits take
# under 1,700 as packed bits, however they fall.
_MOST_TAG_CHARACTERS = 5000


def register(
    client: MlflowClient,
    model_name: str,
    source: str,
    run_id: str,
    search_run_id: str | None = None,
) -> str:
    """Register a logged model as a new version of ``model_name``; returns the version.

    With ``search_run_id`` the version is tagged with the search it comes from, so that a
    resumed final stage finds it (`registered_for`) instead of registering a duplicate.
    """
    try:
        client.create_registered_model(model_name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    tags = {SEARCH_RUN_TAG: search_run_id} if search_run_id else None
    return str(client.create_model_version(model_name, source, run_id=run_id, tags=tags).version)


def registered_for(client: MlflowClient, model_name: str, search_run_id: str) -> str | None:
    """The version an earlier attempt of this search's final stage registered, if any."""
    versions = client.search_model_versions(
        f"name = '{model_name}' and tags.{SEARCH_RUN_TAG} = '{search_run_id}'"
    )
    return str(max(int(v.version) for v in versions)) if versions else None


def encoded_right(right: np.ndarray) -> str | None:
    """Per digit right or not, as a `TEST_RIGHT_TAG` value: ``<digits>:<base64 of the
    zlib-packed bits>``; None where that is too long for a tag (a test split of more than
    about 30,000 digits)."""
    packed = zlib.compress(np.packbits(np.asarray(right, dtype=bool)).tobytes(), 9)
    value = f"{len(right)}:{base64.b64encode(packed).decode('ascii')}"
    return value if len(value) <= _MOST_TAG_CHARACTERS else None


def decoded_right(value: str | None, digits: int) -> np.ndarray | None:
    """The per-digit rights an `encoded_right` value holds, or None where it holds none for
    ``digits`` digits (no tag, another split's, or a damaged one)."""
    if not value:
        return None
    count, _, packed = value.partition(":")
    try:
        if int(count) != digits:
            return None
        bits = np.frombuffer(zlib.decompress(base64.b64decode(packed, validate=True)), np.uint8)
    except (ValueError, zlib.error):  # binascii.Error is a ValueError
        return None
    if len(bits) != (digits + 7) // 8:
        return None
    return np.unpackbits(bits, count=digits).astype(bool)


def current_champion(client: MlflowClient, model_name: str) -> object | None:
    """The version aliased champion, or None when there is none (and only then: any other
    error, a locked database or a server that does not answer, is raised, not taken as
    "no champion")."""
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as error:
        code, message = error.error_code, error.message
        # MLflow's own words for a missing alias ("Registered model alias ... not found.").
        missing_alias = code == ErrorCode.Name(INVALID_PARAMETER_VALUE) and (
            "alias" in message and "not found" in message
        )
        if missing_alias or code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


def load_version(tracking_uri: str, model_name: str, version: str) -> object:
    """A registered version as a Keras model, read from the store at ``tracking_uri``."""
    import mlflow.artifacts
    import mlflow.keras

    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(model_name, version),
            dst_path=folder,
            tracking_uri=tracking_uri,
        )
        return mlflow.keras.load_model(local)
