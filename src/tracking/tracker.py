"""MLflow tracking: one parent run per search, one nested child run per trial.

`MLflowTracker` is a `TrialObserver`: Keras Tuner drives it through its own hooks (trial
begin, every epoch end, trial end), so it sees each trial with its id, hyperparameters and
the oracle's score. Plain Keras callbacks could not: Keras Tuner deep-copies them for every
execution and never hands them the trial. `mlflow.keras.autolog` is not used either: it
logs per model, not per trial, and it perturbs training (it changed the seeded search's
best score here), while this tracker only listens.

Store semantics, which the tests check:

- one search is one parent run, also across an interruption and ``resume=true``;
- one child per trial id, nested under the parent, FINISHED or FAILED with the error; a
  pruned trial is FINISHED with ``trial_status=PRUNED``, ``pruned_at_epoch`` and the
  pruner's ``pruned_reason``, and the parent counts ``trials_pruned`` and
  ``trials_epochs_saved``;
- an attempt that was interrupted (Ctrl-C, SIGTERM, SIGKILL) ends KILLED and, once its
  trial is run again, is moved to MLflow's trash (restorable), so the store ends with one
  child per trial and no RUNNING run;
- tracking trouble never fails a trial: a hook that cannot reach the store warns, the
  trial runs on, later trials are logged once the store answers again, and the parent
  run's ``unlogged`` tag (and the log) lists what is missing; ``results.json`` in the run
  folder always holds every trial.

The tracker routes Keras Tuner's hooks: the parent run is `src.tracking.search_run`'s, each
trial's run `src.tracking.trial_runs`'; what they write is shaped in `src.tracking.records`;
store trouble is absorbed by `src.tracking.tolerance`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine.trial import Trial
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from src.config.secrets import redact
from src.data.dataset import Dataset
from src.search.budgeting import search_digits
from src.search.observers import TrialObserver
from src.search.results import SearchResult, error_line
from src.tracking.search_run import PARENT_RUN_FILE, SearchRun
from src.tracking.store import open_store
from src.tracking.tolerance import tolerant
from src.tracking.trial_runs import TrialRuns

__all__ = ["PARENT_RUN_FILE", "MLflowTracker", "tracked_search"]

log = logging.getLogger(__name__)

# Over HTTP, MLflow retries a failed request 7 times with growing pauses (minutes in all);
# a search waits on every hook, so the tracker asks for fewer unless the user set them.
_HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class MLflowTracker(TrialObserver):
    """Logs a search and its trials to MLflow as a parent run with nested children.

    Args:
        cfg: The validated root config (``mlflow`` group included).
        dataset: The dataset searched on, logged as the parent run's input.
        resume: Reopen the parent run saved in the tuner's folder, if there is one.
    """

    def __init__(self, cfg: DictConfig, dataset: Dataset, resume: bool = False) -> None:
        self.role = cfg.distributed.role
        self.tracking_uri = str(cfg.mlflow.tracking_uri)
        if self.tracking_uri.startswith(("http://", "https://")):
            # Before the first request: a server that does not answer fails in seconds.
            for name, value in _HTTP_RETRY_DEFAULTS.items():
                os.environ.setdefault(name, value)
        if redact(self.tracking_uri) != self.tracking_uri:
            # MLflow prints each run's URL, credentials included, straight to stdout.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        self.client, self.experiment_id = open_store(
            self.tracking_uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location
        )
        self.search = SearchRun(self.client, self.experiment_id, cfg, dataset, resume=resume)
        digits = search_digits(len(dataset.train), cfg.tuner.get("search_examples"))
        self.trials = TrialRuns(self.search, digits)
        # The hooks that could not log, e.g. "on_epoch_end(3)"; tagged on the parent.
        self.unlogged: list[str] = []

    @property
    def parent_run_id(self) -> str | None:
        """The search's parent run, once opened or found."""
        return self.search.run_id

    # -- the search ------------------------------------------------------------------------
    def on_search_begin(self, tuner: keras_tuner.Tuner) -> None:
        if self.role == "worker":
            self.search.join()
        else:
            self.search.open(Path(tuner.project_dir))

    def on_recorded_search(self, state_dir: Path) -> None:
        self.search.open(state_dir)

    @tolerant
    def on_search_end(self, tuner: keras_tuner.Tuner) -> None:
        if self.role != "worker":  # only the chief's oracle knows every trial
            self.search.record_best(tuner)

    @tolerant
    def on_search_result(self, result: SearchResult) -> None:
        if self.parent_run_id is not None:
            self.search.record_result(result)

    @tolerant
    def record_budget(self, budget: Mapping[str, Any]) -> None:
        """Log the run's time budget on the parent run: given, spent, and by which part."""
        if self.parent_run_id is not None:
            self.search.record_budget(budget)

    # -- each trial -------------------------------------------------------------------------
    @tolerant
    def on_trial_begin(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        self.trials.begin(trial)

    @tolerant
    def on_epoch_end(
        self, tuner: keras_tuner.Tuner, trial: Trial, epoch: int, logs: Mapping[str, float]
    ) -> None:
        self.trials.log_epoch(trial, epoch, logs)

    @tolerant
    def on_trial_end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        self.trials.end(tuner, trial)

    # -- the end ----------------------------------------------------------------------------
    def close(self, status: str) -> None:
        """End every run still open: children KILLED (or FAILED), the parent with `status`.

        A store that cannot be reached by then is reported, not raised: the search is over
        and its results are in ``results.json``; the runs stay RUNNING in the store.
        """
        if self.parent_run_id is None:
            return
        try:
            self._end(status)
        except (MlflowException, OSError) as error:
            if self.tracking_uri.startswith(("http://", "https://")):
                self._report_unended(error)  # a server that did not answer: do not wait twice
                return
            # An interrupt in the middle of a database call can leave the client's session
            # unusable: once more with a fresh client.
            self.client = self.search.client = self.trials.client = MlflowClient(self.tracking_uri)
            try:
                self._end(status)
            except (MlflowException, OSError) as error:
                self._report_unended(error)

    def _end(self, status: str) -> None:
        self.trials.end_open(status)
        if self.role != "worker":  # the search is the chief's
            self.search.end(status, self.unlogged)

    def _report_unended(self, error: Exception) -> None:
        log.warning(
            "MLflow: could not end the search's runs (%s); parent run %s stays RUNNING "
            "in the store, results.json holds every trial",
            error_line(str(error)),
            self.parent_run_id,
        )


@contextmanager
def tracked_search(
    cfg: DictConfig, dataset: Dataset, resume: bool = False
) -> Iterator[MLflowTracker | None]:
    """Yield a tracker (None when ``mlflow.enabled`` is false) whose runs end however the
    search does: FINISHED, FAILED on an error, KILLED on Ctrl-C or SIGTERM."""
    if not cfg.mlflow.enabled:
        yield None
        return
    tracker = MLflowTracker(cfg, dataset, resume=resume)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.close(status)
