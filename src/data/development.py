"""The development split: official training digits held out from every training set used in
design, on which defaults, rules, schedules and configurations are chosen.

The official test set reports results and never chooses them (docs/decisions.md has the
protocol). The split is named once, as ``development_digits`` in ``conf/config.yaml``; the
bundled sample (the first 10,000 training digits) never overlaps it, which a test checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src.data.dataset import Dataset, Split, load_dataset
from src.data.sources import read_idx_folder


def development_slice(cfg: DictConfig) -> slice:
    """Which official training digits are development digits (``cfg.development_digits``)."""
    node = cfg.development_digits
    return slice(int(node.start), int(node.stop))


def official_training(folder: Path, part: slice) -> Split:
    """Official training digits ``part``, read from the four IDX files in ``folder`` and
    scaled as the project's data are."""
    arrays = read_idx_folder(folder)
    images = np.divide(arrays["train_images"][part], 255.0, dtype=np.float32)[..., None]
    return Split(images, arrays["train_labels"][part].astype(np.int32))


def development_digits(cfg: DictConfig, folder: Path) -> Split:
    """The development digits, from the official IDX files in ``folder``."""
    return official_training(folder, development_slice(cfg))


def run_dataset(cfg: DictConfig) -> Dataset:
    """The dataset a run loads: ``cfg.data``, tested on the official test set, or with
    ``evaluate_on=development`` on the development digits (out of training), so that a
    default can be chosen without reading the test set."""
    development = None
    if cfg.evaluate_on == "development":
        development = OmegaConf.to_container(cfg.development_digits, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return load_dataset(data, cfg.training.val_fraction, development)
