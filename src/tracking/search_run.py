"""A search's parent run in MLflow: opened (or reopened on resume, or found by a
distributed worker), summarised when the search ends, and ended however it ends."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras_tuner
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from src.config.secrets import redact
from src.data.dataset import Dataset
from src.errors import DistributedError
from src.search.importance import importance_figure
from src.search.results import SearchResult
from src.search.tradeoffs import front_figure
from src.tracking.provenance import flatten_config
from src.tracking.records import (
    MAX_TAG_LENGTH,
    SEARCH_ID_TAG,
    dataset_input,
    log_params,
    now_ms,
    search_tags,
)

log = logging.getLogger(__name__)

# Saved in the tuner's project folder, so that a resumed search reopens its parent run.
PARENT_RUN_FILE = "mlflow_parent_run_id.txt"
TRIAL_ID_TAG = "trial_id"


class SearchRun:
    """One search's parent run.

    Args:
        client: The store's client.
        experiment_id: The experiment the runs go in.
        cfg: The validated root config.
        dataset: The dataset searched on, logged as the parent run's input.
        resume: Reopen the parent run saved in the tuner's folder, if there is one.
    """

    def __init__(
        self,
        client: MlflowClient,
        experiment_id: str,
        cfg: DictConfig,
        dataset: Dataset,
        resume: bool = False,
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.cfg = cfg
        self.dataset = dataset
        self.resume = resume
        # Distributed: the chief opens the search's parent run, tagged with the search id;
        # each worker finds it by that tag and logs its trials under it.
        self.role = cfg.distributed.role
        self.search_id = cfg.distributed.search_id
        self.run_id: str | None = None

    # -- opening ---------------------------------------------------------------------------
    def join(self) -> None:
        """On a distributed worker: find the chief's parent run, or fail in one line."""
        self.run_id = self._distributed_parent()
        if self.run_id is None:
            raise DistributedError(
                f"no MLflow run of search {self.search_id!r} in experiment "
                f"{self.cfg.mlflow.experiment_name!r} at {self.cfg.mlflow.tracking_uri}: "
                "the chief and its workers must share the tracking store"
            )
        log.info("MLflow: worker logs trials under parent run %s", self.run_id)

    def open(self, state_dir: Path) -> None:
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
            self.run_id = previous
            self.client.update_run(previous, status=RunStatus.to_string(RunStatus.RUNNING))
            log.info("MLflow: resuming parent run %s", previous)
        else:
            self.run_id = self._create()
            id_file.write_text(self.run_id + "\n")
            log.info(
                "MLflow: parent run %s in experiment %r at %s",
                self.run_id,
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

    def _create(self) -> str:
        cfg = self.cfg
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{cfg.tuner.name}-{cfg.search_space.name}",
            tags=search_tags(cfg, self.dataset),
        )
        # Known at once, so that `end()` ends the run even if what follows fails.
        self.run_id = run.info.run_id
        log_params(self.client, self.run_id, flatten_config(cfg))
        self.client.log_text(
            self.run_id, redact(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml"
        )
        self.client.log_inputs(self.run_id, datasets=[dataset_input(self.dataset)])
        return self.run_id

    # -- summaries -------------------------------------------------------------------------
    def record_result(self, result: SearchResult) -> None:
        """Log the search's results, its budget, its pruning counts, and each trial's score
        interval and whether it can be told apart from the best."""
        self.client.log_dict(self.run_id, result.to_dict(), "results.json")
        if result.importance:
            self.record_importance(result.importance)
        if result.pareto_front:
            self.record_front(result)
        if result.budget:
            self.record_budget(result.budget)
        timestamp = now_ms()
        if result.pruning:
            metrics = [
                Metric(f"trials_{k}", float(v), timestamp, 0) for k, v in result.pruning.items()
            ]
            self.client.log_batch(self.run_id, metrics=metrics)
        runs = self.trial_runs()
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

    def record_importance(self, importance: Mapping[str, Any]) -> None:
        """Log ``importance.json`` and its bar chart, or the reason there is none as a tag."""
        if not importance.get("values"):
            why = str(importance.get("why_none"))[:MAX_TAG_LENGTH]
            self.client.set_tag(self.run_id, "importance", why)
            return
        import matplotlib.pyplot as plt

        self.client.log_dict(self.run_id, dict(importance), "importance.json")
        figure = importance_figure(importance)
        try:
            self.client.log_figure(self.run_id, figure, "importance.png")
        finally:
            plt.close(figure)

    def record_front(self, result: SearchResult) -> None:
        """Log the accuracy-against-latency front as ``pareto_front.json`` and a figure."""
        import matplotlib.pyplot as plt

        self.client.log_dict(self.run_id, {"front": result.pareto_front}, "pareto_front.json")
        figure = front_figure(result)
        try:
            self.client.log_figure(self.run_id, figure, "pareto_front.png")
        finally:
            plt.close(figure)

    def record_budget(self, budget: Mapping[str, Any]) -> None:
        """Log the run's time budget: given, spent, and by which part."""
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
            self.run_id, metrics=metrics, tags=[RunTag("budget.search_stopped", why)]
        )

    def record_best(self, tuner: keras_tuner.Tuner) -> None:
        """Tag each child with its rank and the parent with the best trial, as the tuner ranks."""
        ranked = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
        runs = self.trial_runs()
        for rank, trial in enumerate(ranked, start=1):
            if trial.trial_id in runs:
                self.client.set_tag(runs[trial.trial_id], "rank", str(rank))
        if not ranked:
            return
        best = ranked[0]
        tags = [RunTag("best_trial_id", best.trial_id)]
        tags += [RunTag(f"best.{k}", str(v)) for k, v in best.hyperparameters.values.items()]
        metrics = [Metric("best_score", float(best.score), now_ms(), 0)]
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    # -- its children and its end ----------------------------------------------------------
    def children(self, extra_filter: str | None = None) -> list[Any]:
        """The parent's child runs (every page), optionally filtered further."""
        query = f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.run_id}'"
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

    def trial_runs(self) -> dict[str, str]:
        """Each trial id's child run id."""
        return {run.data.tags.get(TRIAL_ID_TAG): run.info.run_id for run in self.children()}

    def end(self, status: str, unlogged: list[str]) -> None:
        """End the children still RUNNING (KILLED or FAILED) and the parent with ``status``;
        tag the parent with the hooks that could not log."""
        if unlogged:
            log.warning("MLflow: %d hook(s) could not log: %s", len(unlogged), unlogged)
            self.client.set_tag(self.run_id, "unlogged", ", ".join(unlogged)[:MAX_TAG_LENGTH])
        for run in self.children("attributes.status = 'RUNNING'"):
            # Still RUNNING after a search that ended: interrupted, or its end went unlogged.
            self.client.set_terminated(run.info.run_id, child_status(status))
        self.client.set_terminated(self.run_id, status)


def child_status(search_status: str) -> str:
    """How a run still open ends when its search ends with ``search_status``."""
    return "KILLED" if search_status == "KILLED" else "FAILED"
