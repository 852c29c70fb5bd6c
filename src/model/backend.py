"""Training setup shared by the search and the final stage: seeds, precision, threads.

Every training run in the project (each trial, each final retraining) starts here, so the
same config trains the same way wherever it runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from src.budget import refit_epochs
from src.interrupts import raise_if_stop_requested

log = logging.getLogger(__name__)


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


def build_training_state(model: keras.Model) -> None:
    """Create a compiled model's loss, metric and optimizer variables now, eagerly, on one
    blank example.

    Without a distribution strategy, Keras on TensorFlow defers them to the first trace of
    the training step; a `tf.function` that creates variables is traced a second time. Built
    here, each new model's step is traced once: 0.2-0.9 s less per trial (docs/benchmarks.md).
    """
    images = np.zeros((1, *model.input_shape[1:]), dtype="float32")
    labels = np.zeros((1,), dtype="int32")
    predicted = model(images, training=False)
    model.compute_loss(images, labels, predicted)
    model.compute_metrics(images, labels, predicted, sample_weight=None)
    model.optimizer.build(model.trainable_variables)
    model.reset_metrics()


# The names `tf.custom_gradient` gives the gradient functions it registers in graph mode.
_CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def custom_gradient_names() -> frozenset[str]:
    """The gradient functions `tf.custom_gradient` has registered so far (none but on
    TensorFlow)."""
    if keras.backend.backend() != "tensorflow":
        return frozenset()
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    return frozenset(name for name in registry if name.startswith(_CUSTOM_GRADIENT_PREFIX))


def forget_custom_gradients(keep: frozenset[str]) -> int:
    """Drop the gradient functions `tf.custom_gradient` registered beyond ``keep``; returns
    how many.

    Every traced training step registers one in TensorFlow's global gradient registry, which
    is never emptied, and its closure holds the whole traced graph: about 12 MB a model on 2
    cores, 2.2 GB over 90 one-epoch trials (keras-tuner #873; docs/benchmarks.md, "Many
    cheap trials"). Once a trial's model is done, nothing differentiates its graph again.
    TensorFlow offers no public way to unregister, hence its private registry
    (tests/test_private_apis.py checks it).
    """
    stale = custom_gradient_names() - keep
    if stale:
        from tensorflow.python.framework import ops

        for name in stale:
            ops._gradient_registry._registry.pop(name, None)
    return len(stale)


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


class ScheduleFittedToTime(keras.callbacks.Callback):
    """Fits a final model's training to the time it has, to the step (the budget's rule 5).

    After every epoch, `src.budget.refit_epochs` sets how many epochs, fractional, the time
    left pays at the epochs' measured cost; the model stops at the batch that completes
    them, so a last partial epoch uses the time a whole one would overrun. With a cosine
    learning rate (`anneal_from`), the rate falls every step and reaches zero at that last
    step; when a refit moves the end, the rest of the schedule is a cosine from the current
    rate to zero over the steps that remain, so the rate never rises.

    Args:
        seconds_left: Seconds left for training, this model's and the later ones'.
        planned: The epochs planned before training (`src.budget.plan_final`).
        most: The most epochs this model may train (``fit``'s ``epochs``).
        models_after: Models of the same cost still to train after this one.
        clock: Seconds, for timing epochs (``time.perf_counter``).
    """

    def __init__(
        self,
        seconds_left: Callable[[], float],
        planned: float,
        most: int,
        models_after: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.seconds_left = seconds_left
        self.clock = clock
        self.epochs = float(max(1, min(planned, most)))
        self.most = most
        self.models_after = models_after
        self.initial_rate: float | None = None
        self.epoch_seconds: list[float] = []
        self.steps_per_epoch = 1
        self.step = 0
        self._anchor: tuple[int, float] = (0, 0.0)
        self._started = 0.0

    def anneal_from(self, rate: float) -> None:
        """Decay the optimizer's learning rate from ``rate`` to zero at the last step."""
        self.initial_rate = rate

    @property
    def last_step(self) -> int:
        """The step training ends after, from the current epoch count."""
        return max(1, round(self.epochs * self.steps_per_epoch))

    @property
    def trained_epochs(self) -> float:
        """Epochs trained so far, a partial last one as its fraction."""
        return self.step / self.steps_per_epoch

    def rate_at(self, step: int) -> float:
        """The cosine rate at ``step``: from the anchor's rate to zero at `last_step`."""
        start, rate = self._anchor
        progress = min((step - start) / max(self.last_step - start, 1), 1.0)
        return rate * 0.5 * (1 + math.cos(math.pi * progress))

    def on_train_begin(self, logs: Any = None) -> None:
        self.steps_per_epoch = max(1, int(self.params.get("steps") or 1))
        self.step = 0
        self._anchor = (0, self.initial_rate or 0.0)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = self.clock()

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.initial_rate is not None:
            self.model.optimizer.learning_rate = self.rate_at(self.step)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += 1
        if self.step >= self.last_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.epoch_seconds.append(self.clock() - self._started)
        if logs is not None and self.initial_rate is not None:
            logs["learning_rate"] = self.rate_at(max(self.step - 1, 0))  # the epoch's last
        if self.model.stop_training:
            return
        refitted = refit_epochs(
            epoch + 1, self.epoch_seconds, self.seconds_left(), self.most, self.models_after
        )
        if round(refitted * self.steps_per_epoch) != self.last_step:
            log.info(
                "budget: refit after epoch %d: %.2f epochs, not %.2f",
                epoch + 1,
                refitted,
                self.epochs,
            )
            if self.initial_rate is not None:
                self._anchor = (self.step, self.rate_at(self.step))
            self.epochs = refitted
        if self.step >= self.last_step:
            self.model.stop_training = True
