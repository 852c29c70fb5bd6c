"""Batch normalisation that trains fast on TensorFlow's CPU kernels, saved as Keras' own.

Keras 3 normalises a batch with separate ops (`tf.nn.moments`, then
`tf.nn.batch_normalization`), where Keras 2 used TensorFlow's fused kernel. On 2 CPU cores
that made batch normalisation the costliest part of the default space's models
(`bench/epoch_cost.py`; docs/archive/benchmarks-2026-12-06.md, "Fused batch
normalisation"). This layer trains and predicts with the fused kernel
(``FusedBatchNormV3``, oneDNN's on x86) and keeps the same four weights in the same order
as `keras.layers.BatchNormalization`, so that `with_keras_layers` can hand MLflow, the
registry and serving a model of Keras' own layers only, with identical outputs. Other
backends use Keras' layer directly.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

# Keras' BatchNormalization default, kept so that the exported layer computes the same.
EPSILON = 1e-3


def batch_normalization(momentum: float) -> layers.Layer:
    """The fastest batch normalisation for the running backend, with Keras' semantics."""
    if keras.backend.backend() == "tensorflow":
        return FusedBatchNormalization(momentum=momentum)
    return layers.BatchNormalization(momentum=momentum, epsilon=EPSILON)


@keras.saving.register_keras_serializable(package="mnist_cnn")
class FusedBatchNormalization(layers.Layer):
    """`keras.layers.BatchNormalization` over the last axis, on TensorFlow's fused kernel.

    Args:
        momentum: Weight of the old moving statistics in each update (Keras' meaning).
        epsilon: Added to the variance before its square root.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape: Any) -> None:
        channels = (input_shape[-1],)
        # The order of Keras' layer: get_weights() of one is set_weights() of the other.
        # Kept float32 under a mixed policy, as Keras' layer keeps them (`autocast=False`).
        weight = {"shape": channels, "autocast": False}
        self.gamma = self.add_weight(initializer="ones", name="gamma", **weight)
        self.beta = self.add_weight(initializer="zeros", name="beta", **weight)
        self.moving_mean = self.add_weight(
            initializer="zeros", name="moving_mean", trainable=False, **weight
        )
        self.moving_variance = self.add_weight(
            initializer="ones", name="moving_variance", trainable=False, **weight
        )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        import tensorflow as tf

        # Statistics in float32 under a mixed policy, as Keras' layer computes them.
        x = tf.cast(inputs, "float32")
        if training:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )[:3]
            # The kernel returns the sample variance; Keras' layer averages the population's.
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
            variance = variance * (count - 1) / count
            self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * mean)
            self.moving_variance.assign(
                self.momentum * self.moving_variance + (1 - self.momentum) * variance
            )
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                x,
                self.gamma,
                self.beta,
                mean=self.moving_mean,
                variance=self.moving_variance,
                epsilon=self.epsilon,
                is_training=False,
            )[0]
        return tf.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def with_keras_layers(model: keras.Model) -> keras.Model:
    """``model`` with every `FusedBatchNormalization` replaced by Keras' own layer holding
    the same weights: what is logged, registered and served, loadable without this module.
    A model without one is returned as it is."""
    if not any(isinstance(layer, FusedBatchNormalization) for layer in _all_layers(model)):
        return model

    def clone(layer: layers.Layer) -> layers.Layer:
        if isinstance(layer, FusedBatchNormalization):
            return layers.BatchNormalization(
                momentum=layer.momentum, epsilon=layer.epsilon, name=layer.name
            )
        return layer.__class__.from_config(layer.get_config())

    exported = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for source, target in zip(_all_layers(model), _all_layers(exported), strict=True):
        target.set_weights(source.get_weights())
    return exported


def _all_layers(model: keras.Model) -> list[layers.Layer]:
    """Every layer that holds weights of its own, nested models' included, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
        else:
            found.append(layer)
    return found
