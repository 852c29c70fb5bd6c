"""Damaged digits: nine kinds, made the same way every time, each really damaging."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from src.final.robustness import CORRUPTIONS, corrupted, robustness


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_each_kind_damages_the_digits_the_same_way_every_time(kind, tiny_dataset):
    images = tiny_dataset.test.images[:50]
    damaged = corrupted(images, kind)
    assert damaged.shape == images.shape and damaged.dtype == np.float32
    assert damaged.min() >= 0.0 and damaged.max() <= 1.0
    assert np.array_equal(damaged, corrupted(images, kind))
    assert np.abs(damaged - images).mean() > 0.005


def test_a_model_that_ignores_its_input_scores_the_same_on_every_damage(tiny_dataset):
    """A constant model is right on the same digits whatever the damage: the report measures
    the model on the digits, not the damage alone."""
    inputs = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_initializer="zeros")(flat)
    report = robustness(keras.Model(inputs, outputs), tiny_dataset.test, digits=100)
    assert report.digits == 100 and len(report.accuracy) >= 8
    assert set(report.accuracy.values()) == {report.clean} and report.mean == report.clean
