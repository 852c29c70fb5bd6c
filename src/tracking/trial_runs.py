"""Each trial's child run in MLflow: opened with its hyperparameters and fidelity, its curves
logged every epoch, ended with its score and status; a trial run again retires its earlier,
interrupted attempt to MLflow's trash (restorable)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus
from mlflow.entities import Metric, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from src.search.distributed import tuner_id
from src.search.results import PRUNED, epochs_run, error_line, trial_status
from src.tracking.records import MAX_TAG_LENGTH, log_params, now_ms
from src.tracking.search_run import TRIAL_ID_TAG, SearchRun, child_status

log = logging.getLogger(__name__)

WORKER_TAG = "worker"


class TrialRuns:
    """The child runs of one search's trials, nested under its parent run.

    Args:
        search: The search's parent run.
        train_digits: The digits each trial trains on (its fidelity).
    """

    def __init__(self, search: SearchRun, train_digits: int) -> None:
        self.search = search
        self.client = search.client
        self.train_digits = train_digits
        self.open_runs: dict[str, str] = {}

    def begin(self, trial: Trial) -> None:
        """Open the trial's run, with its hyperparameters, its fidelity and its attempt."""
        cfg = self.search.cfg
        attempts = self._retire_earlier_attempts(trial.trial_id)
        tags = {
            MLFLOW_PARENT_RUN_ID: self.search.run_id,
            TRIAL_ID_TAG: trial.trial_id,
            "tuner": str(cfg.tuner.name),
            "run_kind": "trial",
            "attempt": str(attempts + 1),
            WORKER_TAG: tuner_id(),
            # The trial's fidelity: the digits it trains on and the most epochs it may train
            # (a pruner or Hyperband stops it earlier; `epochs_trained` says where).
            "fidelity.train_digits": str(self.train_digits),
            "fidelity.max_epochs": str(
                trial.hyperparameters.values.get("tuner/epochs", cfg.training.epochs)
            ),
        }
        run = self.client.create_run(
            self.search.experiment_id, run_name=f"trial-{trial.trial_id}", tags=tags
        )
        self.open_runs[trial.trial_id] = run.info.run_id
        log_params(self.client, run.info.run_id, trial.hyperparameters.values)

    def _retire_earlier_attempts(self, trial_id: str) -> int:
        """End earlier runs of this trial id KILLED and trash them; returns how many."""
        earlier = self.search.children(f"tags.{TRIAL_ID_TAG} = '{trial_id}'")
        for run in earlier:
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
            self.client.delete_run(run.info.run_id)
        if earlier:
            log.info("MLflow: trial %s runs again; its earlier attempt is in the trash", trial_id)
        return len(earlier)

    def log_epoch(self, trial: Trial, epoch: int, logs: Mapping[str, float]) -> None:
        """Log one epoch's metrics on the trial's run: its learning curves."""
        run_id = self.open_runs.get(trial.trial_id)
        if run_id is None:
            return
        timestamp = now_ms()
        metrics = [Metric(name, float(value), timestamp, epoch) for name, value in logs.items()]
        self.client.log_batch(run_id, metrics=metrics)

    def end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        """End the trial's run with the oracle's verdict: score, epochs, and why it ended."""
        run_id = self.open_runs.pop(trial.trial_id, None)
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
        cost = getattr(tuner, "trial_costs", {}).get(trial.trial_id)
        if cost is not None:  # what the trial's model costs to serve, on this machine
            metrics += [
                Metric(f"cost_{name}", float(value), timestamp, 0)
                for name, value in cost.to_dict().items()
            ]
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

    def end_open(self, search_status: str) -> None:
        """End the runs this process still has open (a worker's last trial)."""
        for run_id in self.open_runs.values():
            self.client.set_terminated(run_id, child_status(search_status))
        self.open_runs.clear()
