"""Fixed model configurations the benchmarks train, each with where it comes from."""

from __future__ import annotations

# The seed study's best model on its own space (lr 0.001, 4 conv layers 32/64/64/128,
# dropout 0.25).
SEED_STUDY_BEST = {
    "learning_rate": 0.001,
    "conv_layers": 4,
    "kernel_size": 3,
    "filters_0": 32,
    "filters_1": 64,
    "filters_2": 64,
    "filters_3": 128,
    "dropout": 0.25,
    "dense_units": 128,
}

# The improved-space stage's best trial in the `make reproduce` study of 2026-11-30, before
# that stage moved to 32-filter models (its results.json then: trial 3, 10-epoch trials;
# the learning rate rounded, so it does not retrace that trial to the digit).
IMPROVED_SPACE_CHAMPION = {
    "learning_rate": 0.00565,
    "conv_layers": 4,
    "kernel_size": 3,
    "batch_norm": True,
    "lr_schedule": "cosine",
    "augment_rotation": 0.025,
    "augment_translation": 0.05,
    "augment_zoom": 0.1,
    "filters_0": 64,
    "filters_1": 32,
    "filters_2": 32,
    "filters_3": 64,
    "dropout": 0.1,
    "dense_units": 128,
}

# The improved-space stage's choice in `make reproduce` since that space's 2026-12 narrowing
# (32 filters per conv layer, 5-epoch trials; its results.json: trial 0, tuner seed 42).
IMPROVED_STAGE_CHOICE = {
    "learning_rate": 0.00257129530518137,
    "conv_layers": 4,
    "kernel_size": 3,
    "batch_norm": True,
    "lr_schedule": "cosine",
    "augment_rotation": 0.0,
    "augment_translation": 0.05,
    "augment_zoom": 0.1,
    "filters_0": 32,
    "filters_1": 32,
    "filters_2": 32,
    "filters_3": 32,
    "dropout": 0.1,
    "dense_units": 128,
}
