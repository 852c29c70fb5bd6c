"""Training setup shared by the search and the final stage: seeds, precision, threads.

Every training run in the project (each trial, each final retraining) starts here, so the
same config trains the same way wherever it runs.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras

from src.interrupts import raise_if_stop_requested


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


class StopWhenAsked(keras.callbacks.Callback):
    """Honours a stop request (SIGTERM, Ctrl-C) after the batch it arrived in, even when the
    signal handler's KeyboardInterrupt was swallowed (see `src.interrupts`)."""

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        raise_if_stop_requested()


class StopAtDeadline(keras.callbacks.Callback):
    """Stops training once a deadline passes (``budget``): a trial after the batch it passed
    in (but never inside its first epoch, so that every trial is scored), a final model
    after its epoch.

    Args:
        seconds_left: Returns the seconds left before the deadline.
        per_batch: Check after every batch from the second epoch on, not only per epoch.
    """

    def __init__(self, seconds_left: Callable[[], float], per_batch: bool = True) -> None:
        super().__init__()
        self.seconds_left = seconds_left
        self.per_batch = per_batch
        self.epochs_done = 0
        self.stopped = False

    def _check(self) -> None:
        if self.seconds_left() <= 0:
            self.model.stop_training = True
            self.stopped = True

    def on_train_begin(self, logs: Any = None) -> None:
        self.epochs_done = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if self.per_batch and self.epochs_done >= 1:
            self._check()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epochs_done += 1
        self._check()


def most_without_rising(done: int, epochs: int) -> int | float:
    """The longest cosine schedule the next epoch may follow without a higher rate than
    the last one had: that epoch ran at progress ``(done - 1) / epochs``, the next runs at
    ``done / longer``, and the rate falls with progress, so ``longer <= epochs * done /
    (done - 1)``. Unbounded after the first epoch. (An earlier rule let the count grow only
    in the schedule's first third: a 10-minute run on full MNIST stopped after 11 epochs
    with 58 s left, where one more took 38 s.)"""
    if done <= 1:
        return math.inf
    return epochs * done // (done - 1)


class EpochsFittedToTime(keras.callbacks.Callback):
    """Fits a final model's epoch count to the time it has, once its epochs are timed.

    A plan made before training rests on an estimate (the calibration's few batches, or a
    trial's epochs on other digits) that was off by a third or more on a shared 2-core
    machine (docs/benchmarks.md): runs ended minutes early, or overran. After every epoch
    the count becomes what the time left pays at the epochs' measured cost (the first,
    which carries tracing, set aside once others are timed), shared evenly with the
    ``models_after`` still to train, between the epochs done and ``most``.
    `epochs` is what a learning-rate schedule reads (``CNNHyperModel.fit(schedule_epochs=
    ...)``), so it decays over the epochs that really run. The count may grow only as far
    as keeps the cosine rate from rising (`most_without_rising`), so a late change
    stretches the schedule's tail and never jumps the rate back up; it shrinks whenever
    the time asks, and the model stops after an epoch when the next would end past the
    deadline.

    Args:
        seconds_left: Seconds left for training, this model's and the later ones'.
        planned: The epoch count planned before training.
        most: The most epochs this model may train (``fit``'s ``epochs``).
        models_after: Models of the same cost still to train after this one.
        clock: Seconds, for timing epochs (``time.perf_counter``).
    """

    def __init__(
        self,
        seconds_left: Callable[[], float],
        planned: int,
        most: int,
        models_after: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.seconds_left = seconds_left
        self.clock = clock
        self.epochs = max(1, min(planned, most))
        self.most = most
        self.models_after = models_after
        self.epoch_seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = self.clock()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epoch_seconds.append(self.clock() - self._started)
        done = epoch + 1
        # The lower median of the last three epochs after the first: one slow epoch on a
        # shared machine is passed over, two in a row are believed.
        took = statistics.median_low(self.epoch_seconds[1:][-3:] or self.epoch_seconds)
        # Time left pays this model's remaining epochs and every later model's whole count:
        # left = (n - done) * took + models_after * n * took, solved for n.
        affordable = int((self.seconds_left() / took + done) // (1 + self.models_after))
        if affordable > self.epochs:
            self.epochs = min(affordable, self.most, most_without_rising(done, self.epochs))
        elif affordable < self.epochs:
            self.epochs = max(done, affordable)
        if done >= self.epochs:
            self.model.stop_training = True
