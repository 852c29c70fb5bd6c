"""Entry point: a Hydra-composed hyperparameter search for an MNIST CNN.

    python -m src.run                                  # default: random search, seed space
    python -m src.run tuner=bayesian                   # another tuner
    python -m src.run experiment=quick                 # a smoke run in well under a minute
    python -m src.run data=mnist_10k training.epochs=10 tuner.max_trials=20
    python -m src.run -m tuner=random,bayesian,hyperband   # one search per tuner

Each run writes to its own folder under outputs/ (Hydra's run folder): the log,
``results.json`` and the tuner's state.
"""

from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, validate_config

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Validate the config, then load the data and run the search.

    Returns:
        The best trial's score, so that Hydra sweepers can optimise over searches.
    """
    try:
        validate_config(cfg)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None

    # Heavy imports only after the config is known to be good.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from src.data import DataError, load_dataset
    from src.tuning import SearchFailed, run_search

    try:
        dataset = load_dataset(
            OmegaConf.to_container(cfg.data, resolve=True), cfg.training.val_fraction
        )
        result = run_search(cfg, dataset)
    except (DataError, SearchFailed) as error:
        raise SystemExit(f"error: {error}") from None
    log.info("results written to %s", os.path.join(cfg.paths.output_dir, "results.json"))
    return result.best.score


if __name__ == "__main__":
    main()
