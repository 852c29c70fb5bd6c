"""Entry point: a Hydra-composed hyperparameter search for an MNIST CNN, tracked in MLflow.

    python -m src.run                                  # a 4-minute TPE search, final stage
    python -m src.run tuner=bayesian                   # another tuner
    python -m src.run experiment=quick                 # a smoke run in well under a minute
    python -m src.run data=mnist_10k training.epochs=10 tuner.max_trials=20
    python -m src.run -m tuner=tpe,random,bayesian,hyperband   # one search each, compared
    python -m src.run final.from_results=shipped      # no search: retrain the shipped best
    python -m src.run hydra.run.dir=outputs/runs/X resume=true   # continue an interrupted run
    KERASTUNER_ORACLE_IP=... python -m src.run distributed.role=worker ...   # docs/distributed.md

Each run writes to its own folder under outputs/ (Hydra's run folder): the log,
``results.json`` and the tuner's state; MLflow gets a parent run with a child per trial.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.budget import process_started
from src.config.compose import CONFIG_DIR
from src.config.rules import validate_config
from src.config.secrets import RedactingFilter, redact, redact_files
from src.errors import ProjectError
from src.interrupts import interrupt
from src.search.distributed import arm_release_signal, configure_role

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    """Validate the config, then run the pipeline; signals and errors become exit codes.

    Returns:
        The best trial's score, so that Hydra sweepers can optimise over searches.
    """
    started = _clock_start()
    if cfg.distributed.role == "chief":
        arm_release_signal()  # before anything slow: see src.search.distributed
    # A password in a tracking or database URI is never written down: not in the log, not
    # in Hydra's record of the run (MLflow params and artifacts redact it too).
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    redact_files(Path(cfg.paths.output_dir) / ".hydra")
    try:
        validate_config(cfg)
        configure_role(cfg.distributed)
    except ProjectError as error:
        raise SystemExit(f"error: {redact(str(error))}") from None

    # Heavy imports only after the config is known to be good.
    # TensorFlow 2.21's C++ log prints a harmless tf.data attribute "error" at every fit;
    # real failures still raise Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from mlflow.exceptions import MlflowException

    from src.pipeline import run_pipeline

    # SIGTERM (a scheduler stopping the job) and Ctrl-C end the search alike: runs KILLED.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        result = run_pipeline(cfg, started=started)
    except ProjectError as error:  # every stage's errors: one line, exit status 1
        raise SystemExit(f"error: {redact(str(error))}") from None
    except MlflowException as error:  # e.g. the store stopped answering before registration
        first_line = str(error).strip().splitlines()[0]
        raise SystemExit(f"error: MLflow: {redact(first_line)}") from None
    except KeyboardInterrupt:
        log.error(
            "interrupted; continue with the same command plus hydra.run.dir=%s resume=true",
            cfg.paths.output_dir,
        )
        raise SystemExit(130) from None
    if result.search is None:  # a distributed worker: the chief has the results
        return float("nan")
    log.info("results written to %s", os.path.join(cfg.paths.output_dir, "results.json"))
    return result.search.best.score


def _clock_start() -> float:
    """When this run's `budget` starts: the process's start, so that start-up and imports
    count; in a Hydra multirun, each job's own start, so that every job gets all of it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return time.monotonic()
    return process_started()


if __name__ == "__main__":
    main()
