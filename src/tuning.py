"""The search stage: build the configured Keras Tuner tuner and run it.

Tuners are configured, not coded: ``conf/tuner/<name>.yaml`` names the Keras Tuner class
(``_target_``) and its arguments. The class is wrapped with `ObservedTunerMixin`, which
passes the tuner's own hooks (search, trial and epoch begin/end) to `TrialObserver`
objects: the progress lines here, the MLflow tracker in ``tracking.py``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner
from hydra.utils import get_class
from keras_tuner.engine.trial import Trial, TrialStatus
from omegaconf import DictConfig, OmegaConf

from src.config import HYPERBAND
from src.data import Dataset
from src.distributed import serve_oracle, tuner_id, wait_for_chief
from src.hypermodel import CNNHyperModel

log = logging.getLogger(__name__)

# Keys of conf/tuner/*.yaml that are the project's, not arguments of the tuner class.
_PROJECT_TUNER_KEYS = ("_target_", "name")


class SearchFailed(RuntimeError):
    """The search produced no usable result (every trial failed, or Keras Tuner gave up)."""


def keras_verbosity(verbose: int) -> int:
    """Keras' `fit(verbose=...)` for `training.verbose`: 1 is a line per epoch (Keras' 2)."""
    return {0: 0, 1: 2, 2: 1}[verbose]


def configure_backend(training: Mapping[str, Any]) -> None:
    """Seed every RNG, select the dtype policy and, on TensorFlow, op determinism.

    Args:
        training: The ``training`` config node.
    """
    threads = training.get("threads")
    if threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Must come before TensorFlow's first op, which fixes its thread pools (the final
        # stage calls this again, with the pools already set).
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(training["seed"])
    keras.config.set_dtype_policy(training["precision"])
    if training["deterministic"] and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


class TrialObserver:
    """Receives a tuner's hooks. Subclass it and override what you need.

    Every hook gets the tuner, so an observer can read the oracle (trial scores, the best
    trial) without keeping a reference of its own.
    """

    def on_search_begin(self, tuner: keras_tuner.Tuner) -> None:
        """Called once before the first trial."""

    def on_trial_begin(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        """Called when a trial starts, before its model is built."""

    def on_epoch_end(
        self, tuner: keras_tuner.Tuner, trial: Trial, epoch: int, logs: Mapping[str, float]
    ) -> None:
        """Called after every epoch of every execution of a trial."""

    def on_trial_end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        """Called when a trial ends, after the oracle has scored it (or marked it failed)."""

    def on_search_end(self, tuner: keras_tuner.Tuner) -> None:
        """Called once after the last trial."""


class ObservedTunerMixin:
    """Mixed in before a Keras Tuner class: forwards its hooks to observers.

    It also starts every trial from the same seed, so a trial's score depends on its
    hyperparameters alone, and fails trials whose loss became NaN (Keras Tuner would
    otherwise score them as COMPLETED at chance-level accuracy).
    """

    def __init__(
        self,
        *args: Any,
        observers: Sequence[TrialObserver] = (),
        trial_seed: int = 0,
        role: str | None = None,
        chief_timeout_s: float = 300,
        **kwargs: Any,
    ) -> None:
        self.observers = list(observers)
        self.trial_seed = trial_seed
        self.role = role
        self.chief_timeout_s = chief_timeout_s
        super().__init__(*args, **kwargs)

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        if self.role == "chief":
            # Keras Tuner's chief serves the oracle and returns without calling the search
            # hooks; call them here so that observers open and close the search (the MLflow
            # parent run) on the chief, before any worker asks for a trial.
            self.save()
            self.on_search_begin()
            serve_oracle(self.oracle)
            self.on_search_end()
            return
        if self.role == "worker":
            wait_for_chief(self.chief_timeout_s)
        super().search(*fit_args, **fit_kwargs)

    def on_search_begin(self) -> None:
        super().on_search_begin()
        # Keras Tuner's own multi-line display repeats what ProgressReporter says in one
        # line; on the chief, which runs no trial, it is the only news of the workers' trials.
        if self.role != "chief":
            self.oracle.verbose = 0
        for observer in self.observers:
            observer.on_search_begin(self)

    def on_trial_begin(self, trial: Trial) -> None:
        super().on_trial_begin(trial)
        for observer in self.observers:
            observer.on_trial_begin(self, trial)

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        keras.utils.set_random_seed(self.trial_seed)
        histories = super().run_trial(trial, *args, **kwargs)
        for history in histories if isinstance(histories, list) else [histories]:
            losses = getattr(history, "history", {}).get("loss", [])
            bad_epoch = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
            if bad_epoch is not None:
                raise keras_tuner.errors.FailedTrialError(
                    f"loss became {losses[bad_epoch]} at epoch {bad_epoch}"
                )
        return histories

    def on_epoch_end(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        super().on_epoch_end(trial, model, epoch, logs)
        for observer in self.observers:
            observer.on_epoch_end(self, trial, epoch, dict(logs or {}))

    def on_trial_end(self, trial: Trial) -> None:
        # The base scores the trial and may raise once too many trials failed in a row;
        # observers must hear of the trial's end either way.
        try:
            super().on_trial_end(trial)
        finally:
            for observer in self.observers:
                observer.on_trial_end(self, trial)

    def on_search_end(self) -> None:
        super().on_search_end()
        for observer in self.observers:
            observer.on_search_end(self)


def build_tuner(
    tuner_cfg: Mapping[str, Any],
    hypermodel: keras_tuner.HyperModel,
    observers: Sequence[TrialObserver] = (),
    trial_seed: int = 0,
    **distributed: Any,
) -> keras_tuner.Tuner:
    """Instantiate the configured Keras Tuner class, wrapped with `ObservedTunerMixin`.

    Args:
        tuner_cfg: The ``tuner`` config node, resolved to a plain mapping.
        hypermodel: The hypermodel to tune.
        observers: Receive the tuner's hooks, in order.
        trial_seed: The seed every trial starts from.
        distributed: ``role`` (chief, worker or None) and ``chief_timeout_s``.

    Returns:
        The tuner, ready to ``search``.
    """
    kwargs = {k: v for k, v in tuner_cfg.items() if k not in _PROJECT_TUNER_KEYS}
    tuner_class = get_class(tuner_cfg["_target_"])
    max_trials = kwargs.pop("max_trials", None) if tuner_cfg["_target_"] == HYPERBAND else None
    observed_class = type(f"Observed{tuner_class.__name__}", (ObservedTunerMixin, tuner_class), {})
    tuner = observed_class(
        hypermodel=hypermodel, observers=observers, trial_seed=trial_seed, **distributed, **kwargs
    )
    if max_trials is not None:
        # Hyperband takes no max_trials, but the base Oracle honours it as a cap on trials.
        tuner.oracle.max_trials = max_trials
    return tuner


@dataclass
class TrialSummary:
    """One trial as the oracle saw it."""

    trial_id: str
    status: str
    score: float | None
    best_step: int | None
    hyperparameters: dict[str, Any]
    error: str | None = None


@dataclass
class SearchResult:
    """The outcome of a search: every trial, the best one, and how long it took."""

    trials: list[TrialSummary]
    objective: str
    wall_time_s: float
    best_trial_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None

    @property
    def completed(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.status == TrialStatus.COMPLETED]

    @property
    def best(self) -> TrialSummary | None:
        """The best trial, as the oracle ranks them."""
        return next((t for t in self.trials if t.trial_id == self.best_trial_id), None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "objective": self.objective,
            "wall_time_s": round(self.wall_time_s, 2),
            "data": self.data,
            "stopped_early": self.stopped_early,
            "best": asdict(best) if best else None,
            "trials": [asdict(t) for t in self.trials],
        }


def summarize(tuner: keras_tuner.Tuner, wall_time_s: float, data: dict[str, Any]) -> SearchResult:
    """Collect every trial of a tuner's oracle into a `SearchResult`."""
    trials = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        error = error_line(trial.message) if trial.status != TrialStatus.COMPLETED else None
        trials.append(
            TrialSummary(
                trial_id=trial_id,
                status=trial.status,
                score=trial.score,
                best_step=trial.best_step,
                hyperparameters=dict(trial.hyperparameters.values),
                error=error,
            )
        )
    best_trials = tuner.oracle.get_best_trials(1)
    return SearchResult(
        trials=trials,
        objective=tuner.oracle.objective.name,
        wall_time_s=wall_time_s,
        best_trial_id=best_trials[0].trial_id if best_trials else None,
        data=data,
    )


def error_line(message: str | None) -> str | None:
    """The last non-empty line of a trial's message: the exception, without its traceback."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def run_search(
    cfg: DictConfig, dataset: Dataset, observers: Sequence[TrialObserver] = ()
) -> SearchResult | None:
    """Run the configured search on a dataset and write ``results.json``.

    On a distributed worker (``distributed.role=worker``) it runs the trials the chief hands
    out and returns None: the chief writes the results.

    Args:
        cfg: The validated root config.
        dataset: The split dataset (the test split is not touched here).
        observers: Extra observers of the tuner's hooks (progress lines are always on).

    Returns:
        Every trial and the best one (None on a worker).

    Raises:
        SearchFailed: no trial completed, or Keras Tuner stopped after too many failures.
    """
    training = OmegaConf.to_container(cfg.training, resolve=True)
    tuner_cfg = OmegaConf.to_container(cfg.tuner, resolve=True)
    # A resumed search reloads the tuner's state from its folder; a new one starts afresh.
    tuner_cfg["overwrite"] = not cfg.get("resume", False)
    search_space = OmegaConf.to_container(cfg.search_space, resolve=True)
    configure_backend(training)

    hypermodel = CNNHyperModel(search_space, dataset.input_shape, dataset.num_classes)
    progress = ProgressReporter()
    role = cfg.distributed.role
    tuner = build_tuner(
        tuner_cfg,
        hypermodel,
        [progress, *observers],
        training["seed"],
        role=role,
        chief_timeout_s=cfg.distributed.chief_timeout_s,
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=tuner_cfg["objective"], patience=training["early_stopping_patience"]
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    log.info(
        "searching %s over %s: %d train / %d validation digits from %s",
        tuner_cfg["name"],
        search_space.get("name"),
        len(dataset.train),
        len(dataset.val),
        dataset.name,
    )
    stopped_early = None
    start = time.perf_counter()
    try:
        tuner.search(
            dataset.train.images,
            dataset.train.labels,
            validation_data=(dataset.val.images, dataset.val.labels),
            epochs=training["epochs"],
            batch_size=training["batch_size"],
            callbacks=callbacks,
            verbose=keras_verbosity(training["verbose"]),
        )
    except RuntimeError as error:  # Keras Tuner: too many consecutive failed trials
        stopped_early = str(error).splitlines()[0]
    if role == "worker":
        # The chief holds the oracle: it summarises the search and runs the final stage.
        log.info(
            "worker %s: the chief has no more trials; this worker ran %d in %s",
            tuner_id(),
            len(progress.durations),
            _duration(time.perf_counter() - start),
        )
        return None
    result = summarize(tuner, time.perf_counter() - start, dataset.describe())
    result.stopped_early = stopped_early

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    log.info("trials:\n%s", format_trials(result))

    if not result.completed:
        first_error = next((t.error for t in result.trials if t.error), "no trial ran")
        raise SearchFailed(f"every trial failed; the first with: {first_error}")
    if stopped_early:
        raise SearchFailed(f"Keras Tuner stopped the search: {stopped_early}")
    best = result.best
    log.info(
        "best trial %s: %s=%.4f with %s",
        best.trial_id,
        result.objective,
        best.score,
        format_values(best.hyperparameters),
    )
    return result


def format_values(values: Mapping[str, Any]) -> str:
    """Hyperparameters on one line, floats to 3 significant digits."""
    return ", ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in values.items()
    )


def format_trials(result: SearchResult) -> str:
    """A compact table: trial id, status, score, best epoch and hyperparameters."""
    rows = [f"{'trial':>5}  {'status':<9}  {result.objective:>12}  {'epoch':>5}  hyperparameters"]
    for trial in result.trials:
        score = "-" if trial.score is None else f"{trial.score:.4f}"
        epoch = "-" if trial.best_step is None else str(trial.best_step + 1)
        detail = format_values(trial.hyperparameters)
        if trial.error:
            detail += f"  [{trial.error}]"
        rows.append(f"{trial.trial_id:>5}  {trial.status:<9}  {score:>12}  {epoch:>5}  {detail}")
    return "\n".join(rows)


class ProgressReporter(TrialObserver):
    """One log line per trial start and end: k of N, values, time taken and left, best so far."""

    def __init__(self) -> None:
        self.search_start = 0.0
        self.trial_start = 0.0
        self.durations: list[float] = []

    def on_search_begin(self, tuner: keras_tuner.Tuner) -> None:
        self.search_start = time.perf_counter()

    def _position(self, tuner: keras_tuner.Tuner) -> str:
        created = _trials_created(tuner)
        if created is None:  # a distributed worker sees only its own trials
            return f"{len(self.durations) + 1} of this worker"
        total = tuner.oracle.max_trials
        return f"{created}/{total}" if total else str(created)

    def on_trial_begin(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        self.trial_start = time.perf_counter()
        log.info(
            "trial %s (id %s) started: %s",
            self._position(tuner),
            trial.trial_id,
            format_values(trial.hyperparameters.values),
        )

    def on_trial_end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        now = time.perf_counter()
        position = self._position(tuner)
        self.durations.append(now - self.trial_start)
        trial = tuner.oracle.get_trial(trial.trial_id)
        objective = tuner.oracle.objective.name
        outcome = f"{objective}={trial.score:.4f}" if trial.score is not None else "no score"
        best_trials = tuner.oracle.get_best_trials(1)
        best = (
            f"best {best_trials[0].score:.4f} (id {best_trials[0].trial_id})"
            if best_trials and best_trials[0].score is not None
            else "no best yet"
        )
        left = ""
        created = _trials_created(tuner)
        if tuner.oracle.max_trials and created is not None:
            remaining = max(tuner.oracle.max_trials - created, 0)
            mean = sum(self.durations) / len(self.durations)
            left = f", ~{_duration(remaining * mean)} left"
        log.info(
            "trial %s (id %s) %s in %s: %s | %s | elapsed %s%s",
            position,
            trial.trial_id,
            trial.status,
            _duration(self.durations[-1]),
            outcome,
            best,
            _duration(now - self.search_start),
            left,
        )


def _trials_created(tuner: keras_tuner.Tuner) -> int | None:
    """How many trials the oracle has created; None on a worker, whose oracle is remote."""
    trials = getattr(tuner.oracle, "trials", None)  # Keras Tuner's OracleClient has none
    return None if trials is None else len(trials)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
