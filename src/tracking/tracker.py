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

(About 370 lines, one class: its hooks share the runs it keeps open. What it writes is
shaped in ``src.tracking.records``; store trouble is absorbed by ``src.tracking.tolerance``.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from src.config.secrets import redact
from src.data.dataset import Dataset
from src.errors import DistributedError
from src.search.budgeting import search_digits
from src.search.distributed import tuner_id
from src.search.observers import TrialObserver
from src.search.results import PRUNED, SearchResult, epochs_run, error_line, trial_status
from src.tracking.provenance import flatten_config
from src.tracking.records import (
    MAX_TAG_LENGTH,
    SEARCH_ID_TAG,
    dataset_input,
    log_params,
    now_ms,
    search_tags,
)
from src.tracking.store import open_store
from src.tracking.tolerance import tolerant

log = logging.getLogger(__name__)

# Saved in the tuner's project folder, so that a resumed search reopens its parent run.
PARENT_RUN_FILE = "mlflow_parent_run_id.txt"
TRIAL_ID_TAG = "trial_id"
WORKER_TAG = "worker"


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
        self.cfg = cfg
        self.dataset = dataset
        self.resume = resume
        # Distributed: the chief opens the search's parent run, tagged with the search id;
        # each worker finds it by that tag and logs its trials under it.
        self.role = cfg.distributed.role
        self.search_id = cfg.distributed.search_id
        self.tracking_uri = str(cfg.mlflow.tracking_uri)
        if self.tracking_uri.startswith(("http://", "https://")):
            # Before the first request: a server that does not answer fails in seconds.
            for name, value in _HTTP_RETRY_DEFAULTS.items():
                os.environ.setdefault(name, value)
        self.client, self.experiment_id = open_store(
            self.tracking_uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location
        )
        self.parent_run_id: str | None = None
        self.child_runs: dict[str, str] = {}
        # The digits each trial trains on (its fidelity), as the search stage draws them.
        self.trial_digits = search_digits(len(dataset.train), cfg.tuner.get("search_examples"))
        # The hooks that could not log, e.g. "on_epoch_end(3)"; tagged on the parent.
        self.unlogged: list[str] = []
        if redact(self.tracking_uri) != self.tracking_uri:
            # MLflow prints each run's URL, credentials included, straight to stdout.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

    # -- the search ------------------------------------------------------------------------
    def on_search_begin(self, tuner: keras_tuner.Tuner) -> None:
        if self.role == "worker":
            self.parent_run_id = self._distributed_parent()
            if self.parent_run_id is None:
                raise DistributedError(
                    f"no MLflow run of search {self.search_id!r} in experiment "
                    f"{self.cfg.mlflow.experiment_name!r} at {self.cfg.mlflow.tracking_uri}: "
                    "the chief and its workers must share the tracking store"
                )
            log.info("MLflow: worker logs trials under parent run %s", self.parent_run_id)
            return
        self.open_parent(Path(tuner.project_dir))

    def on_recorded_search(self, state_dir: Path) -> None:
        self.open_parent(state_dir)

    def open_parent(self, state_dir: Path) -> None:
        """Open the search's parent run (or reopen it on resume); its id is kept in
        ``state_dir`` so that a resumed run finds it. Also used without a tuner, when the
        final stage retrains a recorded configuration (``final.from_results``)."""
        state_dir.mkdir(parents=True, exist_ok=True)
        id_file = state_dir / PARENT_RUN_FILE
        previous = id_file.read_text().strip() if self.resume and id_file.is_file() else None
        if self.role == "chief":
            previous = self._distributed_parent()  # a restarted chief reopens its search
            if previous and not self.resume:
                # A fresh oracle would restart trial ids at 0 under the old parent run.
                raise DistributedError(
                    f"distributed.search_id={self.search_id!r} already has a search in the "
                    "store: add resume=true to continue it, or choose a new search id"
                )
        if previous and not self._exists(previous):
            log.warning("MLflow: run %s is not in this store; starting a new parent run", previous)
            previous = None
        if previous:
            self.parent_run_id = previous
            self.client.update_run(previous, status=RunStatus.to_string(RunStatus.RUNNING))
            log.info("MLflow: resuming parent run %s", previous)
        else:
            self.parent_run_id = self._create_parent_run()
            id_file.write_text(self.parent_run_id + "\n")
            log.info(
                "MLflow: parent run %s in experiment %r at %s",
                self.parent_run_id,
                self.cfg.mlflow.experiment_name,
                self.cfg.mlflow.tracking_uri,
            )

    def _distributed_parent(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{SEARCH_ID_TAG} = '{self.search_id}' and tags.run_kind = 'search'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def _create_parent_run(self) -> str:
        cfg = self.cfg
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{cfg.tuner.name}-{cfg.search_space.name}",
            tags=search_tags(self.cfg, self.dataset),
        )
        run_id = run.info.run_id
        # Known at once, so that `close()` ends the run even if what follows fails.
        self.parent_run_id = run_id
        log_params(self.client, run_id, flatten_config(cfg))
        self.client.log_text(run_id, redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
        self.client.log_inputs(run_id, datasets=[dataset_input(self.dataset)])
        return run_id

    # -- each trial -------------------------------------------------------------------------
    @tolerant
    def on_trial_begin(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        attempts = self._retire_earlier_attempts(trial.trial_id)
        tags = {
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            TRIAL_ID_TAG: trial.trial_id,
            "tuner": str(self.cfg.tuner.name),
            "run_kind": "trial",
            "attempt": str(attempts + 1),
            WORKER_TAG: tuner_id(),
            # The trial's fidelity: the digits it trains on and the most epochs it may train
            # (a pruner or Hyperband stops it earlier; `epochs_trained` says where).
            "fidelity.train_digits": str(self.trial_digits),
            "fidelity.max_epochs": str(
                trial.hyperparameters.values.get("tuner/epochs", self.cfg.training.epochs)
            ),
        }
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{trial.trial_id}", tags=tags
        )
        self.child_runs[trial.trial_id] = run.info.run_id
        log_params(self.client, run.info.run_id, trial.hyperparameters.values)

    def _retire_earlier_attempts(self, trial_id: str) -> int:
        """End earlier runs of this trial id KILLED and trash them; returns how many."""
        earlier = self._children(f"tags.{TRIAL_ID_TAG} = '{trial_id}'")
        for run in earlier:
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
            self.client.delete_run(run.info.run_id)
        if earlier:
            log.info("MLflow: trial %s runs again; its earlier attempt is in the trash", trial_id)
        return len(earlier)

    @tolerant
    def on_epoch_end(
        self, tuner: keras_tuner.Tuner, trial: Trial, epoch: int, logs: Mapping[str, float]
    ) -> None:
        run_id = self.child_runs.get(trial.trial_id)
        if run_id is None:
            return
        timestamp = now_ms()
        metrics = [Metric(name, float(value), timestamp, epoch) for name, value in logs.items()]
        self.client.log_batch(run_id, metrics=metrics)

    @tolerant
    def on_trial_end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        run_id = self.child_runs.pop(trial.trial_id, None)
        if run_id is None:
            return
        scored = tuner.oracle.get_trial(trial.trial_id)
        status = trial_status(scored)
        metrics, tags = [], [RunTag("trial_status", status)]
        timestamp = now_ms()
        epochs = epochs_run(scored, tuner.oracle.objective.name)
        if epochs is not None:
            metrics.append(Metric("epochs_trained", float(epochs), timestamp, 0))
        if scored.score is not None:
            metrics.append(Metric("trial_score", float(scored.score), timestamp, 0))
            if scored.best_step is not None:
                metrics.append(Metric("best_epoch", float(scored.best_step), timestamp, 0))
        if status == PRUNED:
            # A pruner's decision, not a failure: the run ends FINISHED, its curve stops at
            # the epoch the pruner stopped it, and the tags say when and why.
            if epochs is not None:
                metrics.append(Metric("pruned_at_epoch", float(epochs), timestamp, 0))
            tags.append(RunTag("pruned_reason", (scored.message or "")[:MAX_TAG_LENGTH]))
        elif status != TrialStatus.COMPLETED:
            error = error_line(scored.message) or "unknown error"
            tags.append(RunTag("error", error[:MAX_TAG_LENGTH]))
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        ended_well = status in (TrialStatus.COMPLETED, PRUNED)
        self.client.set_terminated(run_id, "FINISHED" if ended_well else "FAILED")

    @tolerant
    def on_search_end(self, tuner: keras_tuner.Tuner) -> None:
        if self.role != "worker":  # only the chief's oracle knows every trial
            self.record_best(tuner)

    @tolerant
    def on_search_result(self, result: SearchResult) -> None:
        if self.parent_run_id is None:
            return
        self.client.log_dict(self.parent_run_id, result.to_dict(), "results.json")
        if result.budget:
            self.record_budget(result.budget)
        timestamp = now_ms()
        if result.pruning:
            metrics = [
                Metric(f"trials_{k}", float(v), timestamp, 0) for k, v in result.pruning.items()
            ]
            self.client.log_batch(self.parent_run_id, metrics=metrics)
        # Each trial's score interval, and whether it can be told apart from the best.
        runs = {run.data.tags.get(TRIAL_ID_TAG): run.info.run_id for run in self._children()}
        for trial in result.trials:
            if trial.trial_id not in runs or trial.interval is None:
                continue
            low, high = trial.interval
            self.client.log_batch(
                runs[trial.trial_id],
                metrics=[
                    Metric("trial_score_ci_low", low, timestamp, 0),
                    Metric("trial_score_ci_high", high, timestamp, 0),
                ],
                tags=[RunTag("tied_with_best", str(trial.tied_with_best).lower())],
            )

    @tolerant
    def record_budget(self, budget: Mapping[str, Any]) -> None:
        """Log the run's time budget on the parent run: given, spent, and by which part."""
        if self.parent_run_id is None:
            return
        timestamp = now_ms()
        seconds = {
            "budget_s": budget.get("total_s"),
            "budget_spent_s": budget.get("spent_s"),
            "budget_search_s": budget.get("search_s"),
            "budget_final_s": budget.get("final_s"),
            "budget_final_after_training_s": budget.get("final_after_training_s"),
        }
        metrics = [Metric(k, float(v), timestamp, 0) for k, v in seconds.items() if v is not None]
        why = str(budget.get("search_stopped_because") or "")[:MAX_TAG_LENGTH]
        self.client.log_batch(
            self.parent_run_id, metrics=metrics, tags=[RunTag("budget.search_stopped", why)]
        )

    def record_best(self, tuner: keras_tuner.Tuner) -> None:
        """Tag each child with its rank and the parent with the best trial, as the tuner ranks."""
        ranked = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
        runs = {run.data.tags.get(TRIAL_ID_TAG): run.info.run_id for run in self._children()}
        for rank, trial in enumerate(ranked, start=1):
            if trial.trial_id in runs:
                self.client.set_tag(runs[trial.trial_id], "rank", str(rank))
        if not ranked:
            return
        best = ranked[0]
        tags = [RunTag("best_trial_id", best.trial_id)]
        tags += [RunTag(f"best.{k}", str(v)) for k, v in best.hyperparameters.values.items()]
        metrics = [Metric("best_score", float(best.score), now_ms(), 0)]
        self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)

    # -- the end ----------------------------------------------------------------------------
    def close(self, status: str) -> None:
        """End every run still open: children KILLED (or FAILED), the parent with `status`.

        A store that cannot be reached by then is reported, not raised: the search is over
        and its results are in ``results.json``; the runs stay RUNNING in the store.
        """
        if self.parent_run_id is None:
            return
        try:
            self._end_runs(status)
        except (MlflowException, OSError) as error:
            log.warning(
                "MLflow: could not end the search's runs (%s); parent run %s stays RUNNING "
                "in the store, results.json holds every trial",
                error_line(str(error)),
                self.parent_run_id,
            )

    def _end_runs(self, status: str) -> None:
        child_status = "KILLED" if status == "KILLED" else "FAILED"
        if self.role == "worker":
            # The search is the chief's: a worker ends only the trial it was running.
            for run_id in self.child_runs.values():
                self.client.set_terminated(run_id, child_status)
            self.child_runs.clear()
            return
        if self.unlogged:
            log.warning("MLflow: %d hook(s) could not log: %s", len(self.unlogged), self.unlogged)
            text = ", ".join(self.unlogged)
            self.client.set_tag(self.parent_run_id, "unlogged", text[:MAX_TAG_LENGTH])
        for run in self._children("attributes.status = 'RUNNING'"):
            # Still RUNNING after a search that ended: interrupted, or its end went unlogged.
            self.client.set_terminated(run.info.run_id, child_status)
        self.child_runs.clear()
        self.client.set_terminated(self.parent_run_id, status)

    def _children(self, extra_filter: str | None = None) -> list[Any]:
        query = f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.parent_run_id}'"
        if extra_filter:
            query += f" and {extra_filter}"
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=query, max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs


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
