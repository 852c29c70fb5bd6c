"""The Model Registry: log a trained model, register it, and move its aliases.

A new version gets the alias ``challenger``; it becomes ``champion`` only if it beats the
current champion on the same test digits (the champion is re-evaluated here, and versions
tested on other digits, another dataset, are never compared), by the rule
``final.promotion`` names: ``better`` (more digits right) or ``significant`` (better, with
an exact McNemar p-value below ``final.alpha``). Everything goes through an `MlflowClient`
bound to the search's store: nothing here changes MLflow's global tracking URI.

    python -m src.registry champion-uri     # the URI `make serve` and `src.predict` load
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

from src.provenance import installed_versions
from src.stats import Accuracy, PairedComparison, accuracy_with_interval, mcnemar

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# The registered model whose existence is the promotion lock of `<name>`, and the age after
# which a lock is taken as left behind by a process that died holding it.
LOCK_SUFFIX = ".promotion-lock"
LOCK_STALE_S = 600.0
# The packages a served model needs, pinned to the versions that trained it.
_MODEL_PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "numpy", "mlflow")


def champion_uri(model_name: str) -> str:
    """The URI of a registered model's champion, e.g. ``models:/mnist-cnn@champion``."""
    return f"models:/{model_name}@{CHAMPION}"


@dataclass
class Promotion:
    """What the registry decided about a new version, and the evidence."""

    model_version: str
    promoted: bool
    decision: str
    champion_version: str | None = None
    champion_accuracy: Accuracy | None = None
    comparison: PairedComparison | None = None


def log_model(client: MlflowClient, run_id: str, model: object, example: np.ndarray) -> str:
    """Log a Keras model under ``model/`` of a run with MLflow's Keras flavour.

    Returns:
        The model's artifact URI.
    """
    import mlflow.keras
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as folder:
        # mlflow.keras.log_model(..., input_example=...) writes the example before it
        # creates its folder and fails (mlflow issue #16183): save into a folder made
        # here, then log that.
        saved = Path(folder) / "model"
        saved.mkdir()
        mlflow.keras.save_model(
            model,
            str(saved),
            signature=infer_signature(example, model.predict(example, verbose=0)),
            input_example=example[:2],
            # Pinned explicitly: inferring requirements costs ~10 s per model here.
            pip_requirements=[
                f"{name}=={version}"
                for name, version in installed_versions(_MODEL_PACKAGES).items()
            ],
        )
        _serve_through_unit_range_input(saved)
        client.log_artifacts(run_id, str(saved), "model")
    return f"{client.get_run(run_id).info.artifact_uri}/model"


# The name `src.serving` takes inside a logged model's code/ folder.
_SERVING_MODULE = "mnist_serving"


def _serve_through_unit_range_input(saved: Path) -> None:
    """Make `src.serving` the saved model's pyfunc loader (raw 0-255 pixels accepted,
    out-of-range ones refused); the Keras flavour, and the flavour's own pyfunc loader
    behind ours, stay as MLflow wrote them."""
    from mlflow.models import Model

    from src import serving

    mlmodel = Model.load(str(saved / "MLmodel"))
    pyfunc = mlmodel.flavors["python_function"]
    pyfunc[serving.INNER_LOADER] = pyfunc["loader_module"]
    pyfunc["loader_module"] = _SERVING_MODULE
    pyfunc["code"] = "code"
    (saved / "code").mkdir()
    shutil.copyfile(serving.__file__, saved / "code" / f"{_SERVING_MODULE}.py")
    mlmodel.save(str(saved / "MLmodel"))


# Tagged on each version: the search (its parent run) whose final stage registered it.
SEARCH_RUN_TAG = "search_run_id"


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


class PromotionLockTimeout(TimeoutError):
    """Another final stage held the promotion lock for longer than the wait allowed."""


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


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    challenger: Accuracy,
    challenger_right: np.ndarray,
    test_digest: str,
    champion_right: Callable[[str], np.ndarray | None],
    rule: str = "significant",
    alpha: float = 0.05,
) -> Promotion:
    """Alias ``version`` `CHALLENGER`, and `CHAMPION` if it beats the current champion.

    The two are compared only on the same test digits (the versions' ``test_digest`` tags
    agree), digit by digit: with ``rule="better"`` the challenger must get more digits
    right; with ``rule="significant"`` also with an exact McNemar p-value below ``alpha``.

    Args:
        client: A client of the registry.
        model_name: The registered model.
        version: The new version.
        challenger: The new version's accuracy on the test split.
        challenger_right: Per test digit, whether the new version got it right.
        test_digest: The test split's digest (``Dataset.test_digest``).
        champion_right: Scores a registered version on the same digits (None if it
            cannot take them).
        rule: ``better`` or ``significant``.
        alpha: The significance level of the ``significant`` rule.
    """
    client.set_model_version_tag(model_name, version, "test_digest", test_digest)
    client.set_model_version_tag(model_name, version, "test_accuracy", f"{challenger.value:.6f}")
    with promotion_lock(client, model_name):
        champion = current_champion(client, model_name)
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        if champion is None:
            outcome = Promotion(version, True, f"version {version} is the first {CHAMPION}")
        elif str(champion.version) == version:  # a resumed final stage, promoted last time
            outcome = Promotion(version, True, f"version {version} is already {CHAMPION}")
        else:
            outcome = _compare(
                version,
                challenger,
                challenger_right,
                test_digest,
                champion,
                champion_right,
                rule,
                alpha,
            )
        if outcome.promoted:
            client.set_registered_model_alias(model_name, CHAMPION, version)
    return outcome


def _compare(
    version: str,
    challenger: Accuracy,
    challenger_right: np.ndarray,
    test_digest: str,
    champion: object,
    champion_right: Callable[[str], np.ndarray | None],
    rule: str,
    alpha: float,
) -> Promotion:
    """The decision on a challenger against an existing champion version."""
    champion_version = str(champion.version)
    name = f"{CHAMPION} version {champion_version}"
    if champion.tags.get("test_digest") != test_digest:
        return Promotion(
            version,
            False,
            f"version {version} stays {CHALLENGER}: {name} was tested on other digits "
            "(another dataset); register other data under its own final.model_name",
            champion_version,
        )
    right = champion_right(champion_version)
    if right is None:
        return Promotion(
            version, False, f"version {version} stays {CHALLENGER}: {name} cannot be scored here"
        )
    held = accuracy_with_interval(int(right.sum()), len(right))
    comparison = mcnemar(challenger_right, right)
    better = challenger.correct > held.correct
    promoted = better and (rule == "better" or comparison.p_value < alpha)
    verb = "replaces" if promoted else "stays behind"
    why = (
        f"{comparison.only_challenger_right} digits only it got right, "
        f"{comparison.only_champion_right} only the {CHAMPION}; McNemar p={comparison.p_value:.3g}"
    )
    if better and not promoted:
        why += f" (not below final.alpha={alpha:g}: the difference may be chance)"
    decision = f"version {version} ({challenger}) {verb} {name} ({held}): {why}"
    return Promotion(version, promoted, decision, champion_version, held, comparison)


def record_promotion(client: MlflowClient, run_id: str, outcome: Promotion) -> None:
    """Log the registry's decision and its evidence on the final run."""
    tags = [
        RunTag("registry.decision", outcome.decision[:5000]),
        RunTag("registry.model_version", outcome.model_version),
        RunTag("registry.promoted", str(outcome.promoted).lower()),
    ]
    now_ms = int(time.time() * 1000)
    values: dict[str, float] = {}
    if outcome.champion_accuracy is not None:
        values["champion_test_accuracy"] = outcome.champion_accuracy.value
        values["champion_test_errors"] = outcome.champion_accuracy.errors
    if outcome.comparison is not None:
        values["mcnemar_only_challenger_right"] = outcome.comparison.only_challenger_right
        values["mcnemar_only_champion_right"] = outcome.comparison.only_champion_right
        values["mcnemar_p_value"] = outcome.comparison.p_value
    metrics = [Metric(key, float(value), now_ms, 0) for key, value in values.items()]
    client.log_batch(run_id, metrics=metrics, tags=tags)


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.registry champion-uri``: the champion's URI from the composed config."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["champion-uri"]:
        print("usage: python -m src.registry champion-uri [override ...]", file=sys.stderr)
        return 2
    from src.compose import compose_config

    print(champion_uri(compose_config(args[1:]).final.model_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
