"""What one training epoch costs, where the time goes, and how close it is to the cores' peak.

Trains the improved space's previous champion (64/32/32/64 filters, `bench/configurations.py`)
on the bundled sample's 9,000 training digits, batch 128, after a warm-up epoch, under
each variant, each backend in a process of its own (Keras fixes its backend at import):

- TensorFlow: the full training step (augmentation on), the same with Keras' own unfused
  batch normalisation instead of the project's fused layer (`src.model.layers`), without
  augmentation, with XLA (``jit_compile=True``), and the forward pass alone (``predict`` on
  the same images);
- JAX (``KERAS_BACKEND=jax``, where JAX is installed): the same, except XLA, which JAX
  always uses.

The variants of one backend are timed in turn, one epoch each per round, and the table
gives each one's median epoch and its range: epoch times on this shared machine swing by
half from one minute to the next, so only variants timed side by side compare.

It counts the model's FLOPs per image from its layers' shapes (2 per multiply-add; a
training step ~3x the forward pass: the backward pass computes gradients for inputs and
weights) and prints seconds per epoch, images per second, achieved GFLOP/s and their share
of the cores' float32 peak (cores x clock x 32 FLOP per cycle: two 256-bit FMA pipes, as on
AMD Zen 4 and most recent x86 server cores; the clock is read from /proc/cpuinfo).

    .venv/bin/python bench/epoch_cost.py [--repeats 3]
    .venv/bin/python bench/epoch_cost.py --costs   # multiply-adds per image only, no training
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from configurations import IMPROVED_SPACE_CHAMPION

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {
    "tensorflow": [
        "train",
        "train, Keras' batch norm",
        "train, no augmentation",
        "train, XLA",
        "forward only",
    ],
    "jax": ["train", "train, no augmentation", "forward only"],
}


def measure(variants: list[str], repeats: int, batch: int) -> dict:
    """Seconds per epoch of each variant, in this process's backend, interleaved.

    Every variant's model is built and warmed up first; then each round times one epoch
    of every variant in turn, so that a slow spell of this shared machine hits all
    variants alike instead of one whole variant (one-variant-at-a-time runs here once
    showed augmentation as 40 % of an epoch, another as saving a third of one).
    """
    import keras
    from omegaconf import OmegaConf

    from src.config.compose import compose_config
    from src.data.dataset import load_dataset
    from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters, forward_flops

    cfg = compose_config(["search_space=cnn_plus", "data=mnist_10k"])
    space = OmegaConf.to_container(cfg.search_space, resolve=True)
    dataset = load_dataset(OmegaConf.to_container(cfg.data, resolve=True), val_fraction=0.1)
    images, labels = dataset.train.images, dataset.train.labels
    epochs = {}
    for variant in variants:
        values = dict(IMPROVED_SPACE_CHAMPION)
        if "no augmentation" in variant:
            values.update(augment_rotation=0.0, augment_translation=0.0, augment_zoom=0.0)
        keras.utils.set_random_seed(0)
        hp = fixed_hyperparameters(values)
        with keras_batch_norm(variant == "train, Keras' batch norm"):
            model = CNNHyperModel(space, dataset.input_shape, dataset.num_classes).build(hp)
        if "XLA" in variant:
            model.compile(
                optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=True
            )

        def one_epoch(model=model, forward=variant == "forward only") -> None:
            if forward:
                model.predict(images, batch_size=batch, verbose=0)
            else:
                model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)

        one_epoch()  # warm-up: tracing and compilation
        epochs[variant] = one_epoch
    seconds: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant, one_epoch in epochs.items():
            start = time.perf_counter()
            one_epoch()
            seconds[variant].append(time.perf_counter() - start)
    return {"seconds": seconds, "images": len(images), "flops": forward_flops(model)}


@contextlib.contextmanager
def keras_batch_norm(active: bool) -> Iterator[None]:
    """Build with Keras' own (unfused) batch normalisation instead of the project's fused one
    (`src.model.layers`), to measure what the fused kernel saves."""
    import keras

    from src.model import hypermodel

    fused = hypermodel.batch_normalization
    if active:
        hypermodel.batch_normalization = lambda momentum: keras.layers.BatchNormalization(
            momentum=momentum
        )
    try:
        yield
    finally:
        hypermodel.batch_normalization = fused


def model_costs() -> None:
    """Print the forward multiply-adds per image of the improved space's extremes (no training)."""
    from omegaconf import OmegaConf

    from src.config.compose import compose_config
    from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters, forward_flops

    space = OmegaConf.to_container(compose_config(["search_space=cnn_plus"]).search_space)
    variants = {"previous champion (64/32/32/64, dense 128)": {}}
    for filters in (32, 64):
        for dense in (128, 256):
            label = f"all {filters} filters, dense {dense}"
            variants[label] = {**{f"filters_{i}": filters for i in range(4)}, "dense_units": dense}
    for label, changes in variants.items():
        hp = fixed_hyperparameters({**IMPROVED_SPACE_CHAMPION, **changes})
        model = CNNHyperModel(space, (28, 28, 1), 10).build(hp)
        print(f"{label:<45}{forward_flops(model) / 2e6:>6.1f} M multiply-adds per image")


def peak_gflops() -> float:
    """The cores' float32 peak: cores x clock (GHz) x 32 FLOP per cycle."""
    clocks = [
        float(line.split(":")[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("cpu MHz")
    ]
    return (os.cpu_count() or 1) * (max(clocks) / 1000 if clocks else 2.0) * 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--costs", action="store_true", help="only the models' multiply-adds")
    # One backend's measurements, in a child process (Keras fixes its backend at import).
    parser.add_argument("--backend-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend_child:
        variants = VARIANTS[os.environ["KERAS_BACKEND"]]
        print(json.dumps(measure(variants, args.repeats, args.batch_size)))
        return
    if args.costs:
        model_costs()
        return
    peak = peak_gflops()
    print(
        f"previous champion, {args.repeats} timed epochs per variant (interleaved) after "
        f"a warm-up, batch {args.batch_size}, {os.cpu_count()} CPUs, float32 peak "
        f"~{peak:.0f} GFLOP/s"
    )
    print(
        f"{'backend':<11}{'variant':<27}{'s/epoch':>8}{'min-max':>13}{'images/s':>9}"
        f"{'GFLOP/s':>9}{'of peak':>9}"
    )
    for backend, variants in VARIANTS.items():
        if backend == "jax" and importlib.util.find_spec("jax") is None:
            print("jax        not installed (make install EXTRAS=cpu,dev,jax): skipped")
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        child = subprocess.run(
            [sys.executable, __file__, "--backend-child", "--repeats", str(args.repeats)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        for variant in variants:
            times = result["seconds"][variant]
            median = statistics.median(times)
            per_second = result["images"] / median
            passes = 1 if variant == "forward only" else 3
            gflops = passes * result["flops"] * per_second / 1e9
            print(
                f"{backend:<11}{variant:<27}{median:>8.2f}{min(times):>7.2f}-{max(times):<6.2f}"
                f"{per_second:>9.0f}{gflops:>9.1f}{gflops / peak:>9.1%}"
            )
        sys.stdout.flush()
    print(f"forward pass: {result['flops'] / 1e6:.1f} MFLOP per image; training ~3x that")


if __name__ == "__main__":
    main()
