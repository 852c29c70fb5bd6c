"""Measure what the training defaults rest on: dtype policy and input pipeline.

Trains the seed study's best model (lr 0.001, 4 conv layers 32/64/64/128, dropout 0.25)
on the bundled 10k sample, from one seed, under each variant, and prints seconds per
epoch and validation / test accuracy, with ratios against float32 + NumPy arrays.

    .venv/bin/python bench/training_speed.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from common import add_json_option, composed_dataset, fixed_model, write_json
from configurations import SEED_STUDY_BEST


def train(cfg, dataset, precision: str, pipeline: str, epochs: int, batch: int) -> dict:
    keras.utils.set_random_seed(0)
    cfg.training.precision = precision  # the hypermodel sets the dtype policy as it builds
    _, _, model = fixed_model(cfg, SEED_STUDY_BEST, dataset)
    train_split, val = dataset.train, dataset.val
    if pipeline == "tf.data":
        data = (
            tf.data.Dataset.from_tensor_slices((train_split.images, train_split.labels))
            .shuffle(len(train_split), seed=0)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        val_data = tf.data.Dataset.from_tensor_slices((val.images, val.labels)).batch(batch)
        fit_args = dict(x=data, validation_data=val_data)
    else:
        fit_args = dict(
            x=train_split.images,
            y=train_split.labels,
            batch_size=batch,
            validation_data=(val.images, val.labels),
        )
    model.fit(epochs=1, verbose=0, **fit_args)  # warm-up: tracing and compilation
    start = time.perf_counter()
    history = model.fit(epochs=epochs, verbose=0, **fit_args)
    per_epoch = (time.perf_counter() - start) / epochs
    _, test_accuracy = model.evaluate(dataset.test.images, dataset.test.labels, verbose=0)
    return {
        "s_per_epoch": per_epoch,
        "val_accuracy": max(history.history["val_accuracy"]),
        "test_accuracy": test_accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    add_json_option(parser)
    args = parser.parse_args()
    cfg, dataset = composed_dataset(["data=mnist_10k", "search_space=cnn"])
    variants = [
        ("float32", "arrays"),
        ("float32", "tf.data"),
        ("mixed_bfloat16", "arrays"),
        ("mixed_bfloat16", "tf.data"),
    ]
    results = {v: train(cfg, dataset, *v, args.epochs, args.batch_size) for v in variants}
    base = results[variants[0]]["s_per_epoch"]
    print(
        f"{len(dataset.train)} training digits, {args.epochs} epochs after a warm-up epoch, "
        f"batch {args.batch_size}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}"
    )
    print(f"{'precision':<16}{'input':<9}{'s/epoch':>9}{'vs base':>9}{'val_acc':>9}{'test_acc':>9}")
    for (precision, pipeline), r in results.items():
        print(
            f"{precision:<16}{pipeline:<9}{r['s_per_epoch']:>9.2f}{r['s_per_epoch'] / base:>9.2f}"
            f"{r['val_accuracy']:>9.4f}{r['test_accuracy']:>9.4f}"
        )
    rows = [{"precision": p, "input": i, **r} for (p, i), r in results.items()]
    write_json(args.json, {"epochs": args.epochs, "batch_size": args.batch_size, "rows": rows})


if __name__ == "__main__":
    main()
