"""The fused batch normalisation: Keras' semantics on TensorFlow's kernel, exported as Keras'."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest

from src.model.layers import FusedBatchNormalization, with_keras_layers

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's"
)


def _pair(momentum: float = 0.9) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    fused = FusedBatchNormalization(momentum=momentum)
    reference = keras.layers.BatchNormalization(momentum=momentum)
    for layer in (fused, reference):
        layer.build((None, 6, 6, 4))
    rng = np.random.default_rng(0)
    weights = [rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(1, 3, 4)]
    for layer in (fused, reference):
        layer.set_weights([w.astype("float32") for w in weights])
    return fused, reference


def test_fused_layer_computes_what_keras_layer_computes_in_training_and_inference():
    fused, reference = _pair()
    batch = np.random.default_rng(1).normal(2.0, 3.0, size=(16, 6, 6, 4)).astype("float32")
    for training in (True, False):
        np.testing.assert_allclose(
            np.asarray(fused(batch, training=training)),
            np.asarray(reference(batch, training=training)),
            rtol=1e-4,
            atol=1e-4,
        )
    # The training call moved both layers' statistics the same way.
    for mine, theirs in zip(fused.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5)


def _model(name: str) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)(inputs)
    x = FusedBatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(keras.layers.Flatten()(x))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name=name)


def test_export_holds_only_keras_layers_and_predicts_the_same(tmp_path):
    keras.utils.set_random_seed(3)
    members = [_model("a"), _model("b")]
    images = np.random.default_rng(2).uniform(size=(32, 8, 8, 1)).astype("float32")
    for member in members:
        member.compile("adam", "sparse_categorical_crossentropy")
        member.fit(images, np.arange(32) % 10, epochs=2, verbose=0)
    inputs = keras.Input((8, 8, 1))
    outputs = [
        keras.Model(m.input, m.output, name=f"seed_{i}")(inputs) for i, m in enumerate(members)
    ]
    ensemble = keras.Model(inputs, keras.layers.Average()(outputs))

    for model in (members[0], ensemble):
        exported = with_keras_layers(model)
        path = tmp_path / f"{model.name}.keras"
        exported.save(path)
        # Only Keras' own layers were saved: any Keras loads it, without this project.
        with zipfile.ZipFile(path) as saved:
            config = saved.read("config.json").decode()
        assert "BatchNormalization" in config
        assert "Fused" not in config and "mnist_cnn" not in config
        loaded = keras.saving.load_model(path)
        np.testing.assert_allclose(
            loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
        )
