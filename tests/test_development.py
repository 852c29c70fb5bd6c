"""The development split is named once (conf's ``development_digits``) and never overlaps
the digits the project trains on by default."""

from __future__ import annotations

from helpers import compose_config

from src.data.dataset import load_dataset
from src.data.development import development_digits, development_slice, official_training


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
