"""The hypermodel builds a valid CNN for every corner of the search space."""

from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import pytest
from helpers import compose_config
from omegaconf import OmegaConf

from src.model.hypermodel import CNNHyperModel, hp_value


@pytest.fixture
def seed_space():
    return OmegaConf.to_container(compose_config(["search_space=cnn"]).search_space, resolve=True)


def _build(space, **fixed):
    hp = keras_tuner.HyperParameters()
    for name, value in fixed.items():
        hp.Fixed(name, value)
    model = CNNHyperModel(space, (28, 28, 1), 10).build(hp)
    return model, hp


@pytest.mark.parametrize(
    ("layers", "filters", "final_side"), [(2, 16, 14), (2, 128, 14), (6, 16, 3), (6, 128, 3)]
)
def test_extremes_of_the_space_build(seed_space, layers, filters, final_side):
    fixed = {f"filters_{i}": filters for i in range(layers)}
    model, _ = _build(seed_space, conv_layers=layers, **fixed)
    assert model.output_shape == (None, 10)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [conv.filters for conv in convs] == [filters] * layers
    flatten = next(layer for layer in model.layers if layer.__class__.__name__ == "Flatten")
    assert flatten.input.shape[1:3] == (final_side, final_side)


def test_deepest_layer_count_the_validation_allows_still_builds(seed_space):
    # 9 layers with pool_every=2 pool four times: 28 -> 14 -> 7 -> 3 -> 1.
    model, _ = _build({**seed_space, "conv_layers": [2, 9]}, conv_layers=9)
    flatten = next(layer for layer in model.layers if layer.__class__.__name__ == "Flatten")
    assert flatten.input.shape[1:3] == (1, 1)


def test_filters_of_layers_not_built_are_inactive(seed_space):
    _, hp = _build(seed_space, conv_layers=2)
    assert {"filters_0", "filters_1"} <= set(hp.values)
    assert not {"filters_2", "filters_3", "filters_4", "filters_5"} & set(hp.values)


def test_seed_study_best_model_builds_with_its_filters(seed_space):
    best = {
        "learning_rate": 0.001,
        "conv_layers": 4,
        "filters_0": 32,
        "filters_1": 64,
        "filters_2": 64,
        "filters_3": 128,
        "dropout": 0.25,
    }
    model, _ = _build(seed_space, **best)
    convs = [layer.filters for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert convs == [32, 64, 64, 128]
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_knob_specs_map_to_keras_tuner_types():
    hp = keras_tuner.HyperParameters()
    hp_value(hp, "fixed", 3)
    hp_value(hp, "choice", [1, 2])
    hp_value(hp, "int_range", {"min": 1, "max": 5})
    hp_value(hp, "float_range", {"min": 0.001, "max": 0.01, "sampling": "log"})
    hp_value(hp, "one_choice", [7])
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {
        "fixed": "Fixed",
        "choice": "Choice",
        "int_range": "Int",
        "float_range": "Float",
        "one_choice": "Fixed",
    }
    assert hp.get("float_range") == 0.001 and hp.get("one_choice") == 7


@pytest.fixture
def plus_space():
    return OmegaConf.to_container(compose_config(["search_space=cnn_plus"]).search_space)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_improved_space_builds_with_and_without_its_extras(plus_space, batch_norm):
    augment = 0.1 if batch_norm else 0.0
    model, hp = _build(
        plus_space,
        conv_layers=4,
        batch_norm=batch_norm,
        augment_rotation=augment,
        augment_translation=augment,
        augment_zoom=augment,
    )
    names = [layer.__class__.__name__ for layer in model.layers]
    assert any("BatchNormalization" in name for name in names) is batch_norm
    assert ("RandomRotation" in names) is batch_norm
    assert model.output_shape == (None, 10)
    assert hp.get("lr_schedule") in ("cosine", "constant")


def test_seed_space_registers_none_of_the_optional_knobs(seed_space):
    _, hp = _build(seed_space)
    assert not {"batch_norm", "lr_schedule", "augment_rotation"} & set(hp.values)


def test_cosine_schedule_decays_the_learning_rate_per_epoch(plus_space):
    import numpy as np

    hypermodel = CNNHyperModel(plus_space, (28, 28, 1), 10)
    hp = keras_tuner.HyperParameters()
    for name, value in {
        "conv_layers": 4,
        "learning_rate": 0.004,
        "lr_schedule": "cosine",
        "batch_norm": False,
        "augment_rotation": 0.0,
        "augment_translation": 0.0,
        "augment_zoom": 0.0,
    }.items():
        hp.Fixed(name, value)
    model = hypermodel.build(hp)
    images = np.zeros((8, 28, 28, 1), np.float32)
    history = hypermodel.fit(hp, model, images, np.zeros(8, np.int32), epochs=4, verbose=0)
    rates = history.history["learning_rate"]
    assert rates[0] == pytest.approx(0.004)
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.001


def test_the_precision_survives_keras_tuners_session_clearing(seed_space):
    """Keras Tuner clears the Keras session before each build (which resets Keras 3's
    global dtype policy), so `training.precision` set once before the search reached no
    trial; the hypermodel sets it at every build."""
    keras.config.set_dtype_policy("mixed_bfloat16")  # what configure_backend does
    try:
        keras.backend.clear_session()  # what Keras Tuner does before each build
        hp = keras_tuner.HyperParameters()
        model = CNNHyperModel(seed_space, (28, 28, 1), 10, "mixed_bfloat16").build(hp)
        conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
        assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
        assert model.layers[-1].compute_dtype == "float32"  # the softmax stays float32
    finally:
        keras.config.set_dtype_policy("float32")


def test_a_new_models_training_step_is_traced_once(plus_space, tiny_dataset):
    """Its loss, metric and optimizer variables exist before `fit` (`build_training_state`):
    a step that created them in its first trace was traced twice, 0.2-0.9 s a trial."""
    model, _ = _build(plus_space, batch_norm=True)
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)
    train = tiny_dataset.train
    model.fit(train.images[:64], train.labels[:64], batch_size=32, epochs=2, verbose=0)
    assert len(traces) == 1


def test_a_mixed_bfloat16_model_with_batch_normalisation_trains(plus_space, tiny_dataset):
    """The fused normalisation keeps its weights float32 under a mixed policy, as Keras'
    layer does; read as bfloat16 they failed the float32 kernel."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        hypermodel = CNNHyperModel(plus_space, (28, 28, 1), 10, "mixed_bfloat16")
        hp = keras_tuner.HyperParameters()
        hp.Fixed("batch_norm", True)
        model = hypermodel.build(hp)
        train = tiny_dataset.train
        history = model.fit(train.images[:64], train.labels[:64], epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    finally:
        keras.config.set_dtype_policy("float32")


def test_the_noise_knob_adds_training_noise_and_leaves_inference_alone(plus_space):
    model, hp = _build({**plus_space, "augment_noise": 0.2}, augment_noise=0.2)
    assert hp.values["augment_noise"] == 0.2
    assert any(isinstance(layer, keras.layers.GaussianNoise) for layer in model.layers)
    images = np.full((2, 28, 28, 1), 0.5, np.float32)
    assert np.array_equal(model(images, training=False), model(images, training=False))
    without, _ = _build(plus_space)
    assert not any(isinstance(layer, keras.layers.GaussianNoise) for layer in without.layers)
