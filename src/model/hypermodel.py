"""The CNN hypermodel: builds and compiles a Keras model from a search-space config.

Every range and choice comes from ``conf/search_space/*.yaml``; this module only knows how
to turn a knob into a Keras Tuner hyperparameter and the hyperparameters into layers.
Model code uses Keras layers and ``keras.ops`` only, so it runs on any Keras backend.

The knobs, the values they may take and what an absent optional knob means are defined
once, in `src.model.search_space.KNOBS`; ``lr_schedule`` is applied per epoch in
`CNNHyperModel.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras
import keras_tuner
from keras import layers
from omegaconf import OmegaConf

from src.model.backend import build_training_state
from src.model.layers import batch_normalization
from src.model.search_space import KNOBS

if TYPE_CHECKING:
    from src.data.dataset import Dataset


def hp_value(hp: keras_tuner.HyperParameters, name: str, spec: Any) -> Any:
    """Register one knob of the search space as a hyperparameter and return its value.

    Args:
        hp: The trial's hyperparameters.
        name: The hyperparameter's name.
        spec: A fixed value, a list of choices, or a mapping with ``min``/``max`` and
            optional ``step`` and ``sampling`` (a range: Int if both ends are integers).

    Returns:
        The value for this trial, or None when the knob is inside an inactive
        conditional scope.
    """
    if isinstance(spec, Mapping):
        low, high = spec["min"], spec["max"]
        if low == high:
            return hp.Fixed(name, low)
        step, sampling = spec.get("step"), spec.get("sampling", "linear")
        if isinstance(low, int) and isinstance(high, int) and isinstance(step, int | None):
            return hp.Int(name, low, high, step=step or 1, sampling=sampling)
        return hp.Float(name, float(low), float(high), step=step, sampling=sampling)
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return hp.Choice(name, list(spec)) if len(spec) > 1 else hp.Fixed(name, spec[0])
    return hp.Fixed(name, spec)


def forward_flops(model: keras.Model) -> int:
    """Forward-pass FLOPs per image: 2 per multiply-add of every Conv2D and Dense layer.

    Batch norm, pooling and activations are left out (a few percent here); a training
    step costs about three times this (the backward pass computes gradients for inputs
    and weights).
    """
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            channels_in = layer.input.shape[-1]
            macs += height * width * kernel_h * kernel_w * channels_in * channels_out
        elif isinstance(layer, layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return 2 * macs


def _choices(spec: Any) -> list[Any]:
    """The values a choice knob can take (a fixed value is a single choice)."""
    return list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]


class CNNHyperModel(keras_tuner.HyperModel):
    """Conv layers (``kernel_size`` square kernels, optionally batch-normalised) with a
    max-pooling every ``pool_every`` layers, then dropout, a dense layer and softmax; optional
    augmentation layers in front.

    Args:
        search_space: The ``search_space`` config as a plain mapping.
        input_shape: Shape of one image, e.g. ``(28, 28, 1)``.
        num_classes: Number of output classes.
        precision: A Keras dtype policy (``training.precision``) set before every build;
            None leaves the global policy as it is.
    """

    def __init__(
        self,
        search_space: Mapping[str, Any],
        input_shape: Sequence[int],
        num_classes: int,
        precision: str | None = None,
    ) -> None:
        super().__init__(name=str(search_space.get("name", "cnn")))
        self.space = dict(search_space)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.precision = precision

    @classmethod
    def from_config(
        cls, search_space: Mapping[str, Any], training: Mapping[str, Any], dataset: Dataset
    ) -> CNNHyperModel:
        """The hypermodel for a ``search_space`` and ``training`` config node and a dataset:
        the one way the search, the final stage and ``bench/`` build it."""
        space = (
            OmegaConf.to_container(search_space, resolve=True)
            if OmegaConf.is_config(search_space)
            else dict(search_space)
        )
        return cls(space, dataset.input_shape, dataset.num_classes, training["precision"])

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Build and compile the model for one trial's hyperparameters."""
        if self.precision:
            # Keras Tuner clears the Keras session before each build, and in Keras 3 that
            # resets the global dtype policy to float32: set by `configure_backend` alone,
            # `training.precision` would reach the final stage but not a single trial.
            keras.config.set_dtype_policy(self.precision)
        space = self.space
        learning_rate = hp_value(hp, "learning_rate", space["learning_rate"])
        conv_layers = hp_value(hp, "conv_layers", space["conv_layers"])
        kernel_size = hp_value(hp, "kernel_size", space["kernel_size"])
        pool_every = space["pool_every"]

        batch_norm = self._optional(hp, "batch_norm")
        # Registered here so that `fit` can read it from the same hyperparameters.
        self._optional(hp, "lr_schedule")

        inputs = keras.Input(shape=self.input_shape)
        x = self._augmentation(hp, inputs)
        layer_choices = _choices(space["conv_layers"])
        for index in range(max(layer_choices)):
            # filters_i exists only in trials that build layer i: a conditional scope keeps
            # inactive layers' filters out of the sampled (and logged) hyperparameters.
            active_when = [n for n in layer_choices if n > index]
            with hp.conditional_scope("conv_layers", active_when):
                filters = hp_value(hp, f"filters_{index}", space["filters"])
            if index >= conv_layers:
                continue
            if batch_norm:  # the normalisation replaces the bias
                x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False)(x)
                # Momentum 0.9, not Keras' 0.99: a 10k-digit epoch is only ~64 steps, and
                # slower moving statistics left validation at chance for several epochs.
                # Fused on TensorFlow (src.model.layers); exported as Keras' own layer.
                normalised = batch_normalization(momentum=0.9)(x)
                x = layers.Activation("relu")(normalised)
            else:
                x = layers.Conv2D(filters, kernel_size, padding="same", activation="relu")(x)
            if (index + 1) % pool_every == 0:
                x = layers.MaxPooling2D()(x)

        dropout = hp_value(hp, "dropout", space["dropout"])
        dense_units = hp_value(hp, "dense_units", space["dense_units"])
        x = layers.Flatten()(x)
        x = layers.Dropout(dropout)(x)
        x = layers.Dense(dense_units, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
        # float32 softmax: under a mixed dtype policy, probabilities stay well-conditioned.
        outputs = layers.Dense(self.num_classes, activation="softmax", dtype="float32")(x)

        model = keras.Model(inputs, outputs, name=self.name)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        build_training_state(model)
        return model

    def _optional(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        """An optional knob's value; a knob the space leaves out is not a hyperparameter."""
        return hp_value(hp, name, self.space[name]) if name in self.space else KNOBS[name].off

    def _augmentation(self, hp: keras_tuner.HyperParameters, x: Any) -> Any:
        """Random rotation, shift, zoom and pixel noise: active while training, identity at
        inference."""
        rotation = self._optional(hp, "augment_rotation")
        translation = self._optional(hp, "augment_translation")
        zoom = self._optional(hp, "augment_zoom")
        noise = self._optional(hp, "augment_noise")
        if rotation:
            x = layers.RandomRotation(rotation, fill_mode="constant")(x)
        if translation:
            x = layers.RandomTranslation(translation, translation, fill_mode="constant")(x)
        if zoom:
            x = layers.RandomZoom(zoom, fill_mode="constant")(x)
        if noise:
            x = layers.GaussianNoise(noise)(x)
        return x

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any):
        """Train, with the cosine learning-rate schedule when the trial chose it.

        The schedule decays per epoch from the trial's learning rate to zero over the
        epochs this fit runs. ``fitted`` (a keyword, never passed on to Keras): a
        `src.model.backend.ScheduleFittedToTime` among the callbacks, which fits the steps
        to the time left and then decays the rate per step instead (the final stage).
        """
        fitted = kwargs.pop("fitted", None)
        if hp.values.get("lr_schedule") == "cosine" and fitted is not None:
            fitted.anneal_from(hp.get("learning_rate"))
        elif hp.values.get("lr_schedule") == "cosine":
            initial, planned = hp.get("learning_rate"), kwargs.get("epochs", 1)
            first = kwargs.get("initial_epoch", 0)

            def cosine(epoch: int) -> float:
                progress = (epoch - first) / max(planned - first, 1)
                return initial * 0.5 * (1 + math.cos(math.pi * progress))

            callbacks = list(kwargs.pop("callbacks", None) or [])
            kwargs["callbacks"] = [*callbacks, keras.callbacks.LearningRateScheduler(cosine)]
        self.last_model = model  # the search measures what it costs (MeasuresCost)
        return model.fit(*args, **kwargs)


def fixed_hyperparameters(values: dict[str, Any]) -> keras_tuner.HyperParameters:
    """Hyperparameters with every value fixed, to rebuild one trial's model."""
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp
