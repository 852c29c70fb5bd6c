"""The development split is named once (conf's ``development_digits``) and never overlaps
the digits the project trains on by default."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import compose_config

from src.config.rules import validate_config
from src.data.dataset import load_dataset
from src.data.development import development_digits, development_slice, official_training
from src.errors import ConfigError, DataError


def _fingerprints(images) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_the_development_digits_are_official_training_digits_50000_to_59999(official_mnist):
    cfg = compose_config([])
    assert development_slice(cfg) == slice(50_000, 60_000)
    digits = development_digits(cfg, official_mnist)
    assert len(digits) == 10_000
    assert digits.images.dtype.name == "float32" and 0.0 <= digits.images.min() <= 1.0


def test_the_bundled_sample_holds_none_of_the_development_digits(official_mnist):
    """The bundle is the first 10,000 official training digits (regrouped by label): every
    digit it trains, validates or is sampled on lies outside the development split."""
    cfg = compose_config(["data=mnist_10k"])
    bundled = load_dataset(cfg.data, cfg.training.val_fraction)
    ours = _fingerprints(bundled.train.images) | _fingerprints(bundled.val.images)
    first = _fingerprints(official_training(official_mnist, slice(0, 10_000)).images)
    development = _fingerprints(development_digits(cfg, official_mnist).images)
    assert ours <= first
    assert not ours & development


def _development(cfg, folder=None) -> dict:
    return {**cfg.development_digits, "folder": str(folder) if folder else None}


def test_evaluating_on_development_digits_tests_on_them_and_trains_on_none(official_mnist):
    """``evaluate_on=development`` over the official files: the test split is digits
    50,000-59,999 and the train and validation splits are the other 50,000."""
    cfg = compose_config(["data=idx", f"data.path={official_mnist}"])
    dataset = load_dataset(cfg.data, cfg.training.val_fraction, _development(cfg))
    development = _fingerprints(development_digits(cfg, official_mnist).images)
    assert len(dataset.test) == 10_000
    assert _fingerprints(dataset.test.images) == development
    assert len(dataset.train) + len(dataset.val) == 50_000
    trained = _fingerprints(dataset.train.images) | _fingerprints(dataset.val.images)
    assert not trained & development
    assert "development" in dataset.origin


def test_the_bundled_sample_is_tested_on_development_digits_read_from_the_idx_files(
    official_mnist,
):
    cfg = compose_config(["data=mnist_10k"])
    bundled = load_dataset(cfg.data, cfg.training.val_fraction)
    scored = load_dataset(cfg.data, cfg.training.val_fraction, _development(cfg, official_mnist))
    assert np.array_equal(scored.train.images, bundled.train.images)
    assert _fingerprints(scored.test.images) == _fingerprints(
        development_digits(cfg, official_mnist).images
    )
    assert scored.test_digest != bundled.test_digest  # never compared with a test-set score


def test_the_bundled_sample_without_the_idx_files_cannot_be_scored_on_development_digits():
    cfg = compose_config(["data=mnist_10k"])
    with pytest.raises(DataError, match="set MNIST_IDX_FOLDER"):
        load_dataset(cfg.data, cfg.training.val_fraction, _development(cfg))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["evaluate_on=validation"], "evaluate_on='validation': expected one of test, development"),
        (
            ["evaluate_on=development", "data=mnist_10k", "development_digits.folder=null"],
            "the bundle lacks digits 50000-59999",
        ),
        (["development_digits.folder=/no/such/folder"], "no such folder"),
        (["development_digits.stop=100", "development_digits.start=200"], "expected an integer"),
    ],
)
def test_a_bad_evaluation_setting_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_config(overrides))
