"""Retrain one configuration from scratch on train + validation, and average seeds' models."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

from src.data.dataset import Dataset
from src.final.evaluation import Evaluation, evaluate
from src.model.backend import (
    ScheduleFittedToTime,
    StopWhenAsked,
    configure_backend,
    keras_verbosity,
)
from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters

log = logging.getLogger("src.final.stage")


def train_and_test(
    hypermodel: CNNHyperModel,
    values: dict[str, Any],
    dataset: Dataset,
    training: dict[str, Any],
    epochs: int,
    fitted: ScheduleFittedToTime | None = None,
) -> tuple[keras.Model, dict[str, list[float]], Evaluation]:
    """Train one model from scratch on train + validation with ``training["seed"]``, test it.

    ``epochs``: the most it trains; ``fitted``: where a budget fits its steps (and its
    learning-rate schedule) to the time left, which stops it sooner.
    """
    configure_backend(training)
    hp = fixed_hyperparameters(values)
    model = hypermodel.build(hp)
    images = np.concatenate([dataset.train.images, dataset.val.images])
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    log.info(
        "final stage: training on %d examples for %s%d epochs, seed %d",
        len(labels),
        "as many as the time left pays, at most " if fitted else "",
        epochs,
        training["seed"],
    )
    # Through the hypermodel's fit, so a learning-rate schedule applies as in the search.
    history = hypermodel.fit(
        hp,
        model,
        images,
        labels,
        epochs=epochs,
        batch_size=training["batch_size"],
        verbose=keras_verbosity(training["verbose"]),
        callbacks=[StopWhenAsked(), *([fitted] if fitted else [])],
        fitted=fitted,
    ).history
    return model, history, evaluate(model, dataset.test, dataset.num_classes)


def ensemble_of(members: list[keras.Model], seeds: list[int], name: str) -> keras.Model:
    """One Keras model whose output is the mean of the members' softmax outputs.

    Each member is wrapped under its seed's name (nested models must be named uniquely);
    the wrappers share the members' layers and weights, nothing is copied or retrained.
    """
    inputs = keras.Input(shape=members[0].input_shape[1:])
    outputs = [
        keras.Model(member.input, member.output, name=f"seed_{seed}")(inputs)
        for member, seed in zip(members, seeds, strict=True)
    ]
    return keras.Model(inputs, keras.layers.Average()(outputs), name=f"{name}_ensemble")
