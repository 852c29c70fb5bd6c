"""What a model costs to serve, measured the same way for every trial and the final model:
parameters, forward FLOPs per image, latency (a batch of one) and throughput (a large batch).

Both timings call the model eagerly (``model(x, training=False)``): no tracing to pay per
trial, and the same path for every model, so their figures rank models fairly on one
machine. They are this machine's, in this process's threads: compare them within a search,
not across machines.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np

from src.model.hypermodel import forward_flops

# Latency: the median of this many calls on one image, after one to warm up. Few: every
# trial pays for them (0.15-0.25 s in all for the default model on 2 busy cores).
LATENCY_CALLS = 7
# Throughput: images per second over this batch, the faster of two calls after a warm-up.
THROUGHPUT_BATCH = 128
THROUGHPUT_CALLS = 2


@dataclass(frozen=True)
class ModelCost:
    """A model's serving cost on this machine."""

    params: int
    flops_per_image: int
    latency_ms: float
    throughput_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.params:,} parameters, {self.flops_per_image / 1e6:.1f} MFLOP per image, "
            f"{self.latency_ms:.2f} ms for one image, {self.throughput_per_s:,.0f} images/s"
        )


def measure_cost(model: keras.Model) -> ModelCost:
    """Count ``model``'s parameters and FLOPs, and time it on blank images."""
    shape = model.input_shape[1:]
    one = np.zeros((1, *shape), dtype="float32")
    many = np.zeros((THROUGHPUT_BATCH, *shape), dtype="float32")
    model(one, training=False)  # warm-up: first calls allocate
    model(many, training=False)
    latency = statistics.median(_seconds(model, one) for _ in range(LATENCY_CALLS))
    batch = min(_seconds(model, many) for _ in range(THROUGHPUT_CALLS))
    return ModelCost(
        params=int(model.count_params()),
        flops_per_image=forward_flops(model),
        latency_ms=round(1000 * latency, 3),
        throughput_per_s=round(THROUGHPUT_BATCH / batch, 1),
    )


def _seconds(model: keras.Model, images: np.ndarray) -> float:
    start = time.perf_counter()
    model(images, training=False)
    return time.perf_counter() - start
