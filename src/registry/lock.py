"""The promotion lock: one read-compare-set of a model's champion at a time, across machines."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode

from src.errors import PromotionLockTimeout

log = logging.getLogger(__name__)

# The registered model whose existence is the promotion lock of `<name>`, and the age after
# which a lock is taken as left behind by a process that died holding it.
LOCK_SUFFIX = ".promotion-lock"
LOCK_STALE_S = 600.0


@contextmanager
def promotion_lock(
    client: MlflowClient, model_name: str, timeout_s: float = LOCK_STALE_S, poll_s: float = 0.2
) -> Iterator[None]:
    """Hold ``model_name``'s promotion lock: one read-compare-set of the champion at a time.

    MLflow has no compare-and-set on aliases, and two final stages that read the same
    champion could both promote, the weaker last. Creating a registered model is atomic in
    every store MLflow has (the name is unique, in SQLite as behind a tracking server), so
    a registered model named ``<name>.promotion-lock`` is the lock, across processes and
    machines. One older than `LOCK_STALE_S` was left by a process that died and is broken.
    """
    lock = f"{model_name}{LOCK_SUFFIX}"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                lock, tags={"holder": holder}, description="held while a champion is decided"
            )
            break
        except MlflowException as error:
            # MLflow's SQL store answers a taken name by looking the model up, so a lock
            # released between its insert and that lookup reads as "does not exist".
            if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                continue
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released meanwhile: try again at once
        age_s = time.time() - held.creation_timestamp / 1000
        if age_s > LOCK_STALE_S:
            log.warning("breaking %s, held by %s for %.0f s", lock, held.tags.get("holder"), age_s)
            _delete_quietly(client, lock)
            continue
        if time.monotonic() > deadline:
            raise PromotionLockTimeout(f"{lock} is held by {held.tags.get('holder')}")
        time.sleep(poll_s)
    try:
        yield
    finally:
        _delete_quietly(client, lock)


def _delete_quietly(client: MlflowClient, lock: str) -> None:
    try:
        client.delete_registered_model(lock)
    except MlflowException as error:  # already broken by another process
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
