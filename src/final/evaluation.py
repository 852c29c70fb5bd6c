"""Score a model on a split: accuracy with its interval, loss, confusion, per-digit hits.

A pure function of a model and a split, used by the final stage for a new model and by the
registry's comparison for the current champion, on the same digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from src.data.dataset import Split
from src.stats import Accuracy, accuracy_with_interval


@dataclass
class Evaluation:
    """A model's predictions on a split, and what they add up to."""

    accuracy: float
    loss: float
    confusion: np.ndarray
    probabilities: np.ndarray = field(repr=False)
    right: np.ndarray = field(repr=False)  # per digit: predicted its label

    @property
    def interval(self) -> Accuracy:
        """The accuracy with its errors and 95 % Wilson interval."""
        return accuracy_with_interval(int(self.right.sum()), len(self.right))

    @property
    def per_class_accuracy(self) -> list[float]:
        return (np.diag(self.confusion) / np.maximum(self.confusion.sum(axis=1), 1)).tolist()


def evaluate(model: keras.Model, split: Split, num_classes: int) -> Evaluation:
    """Accuracy, loss and confusion matrix of ``model`` on ``split``, from one pass.

    The accuracy is counted exactly (Keras' float32 running mean can differ in the last
    digits, which would let a tie count as a win against the champion).
    """
    # Large batches: inference on 10,000 digits in a few steps instead of ~300.
    probabilities = model.predict(split.images, batch_size=1024, verbose=0)
    loss = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(split.labels, probabilities)
    )
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (split.labels, predicted), 1)
    right = predicted == split.labels
    return Evaluation(
        accuracy=float(np.mean(right)),
        loss=float(np.mean(loss)),
        confusion=confusion,
        probabilities=probabilities,
        right=right,
    )
