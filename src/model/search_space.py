"""The search-space schema: which knobs a ``conf/search_space/*.yaml`` may set, and how.

Each knob is a fixed value, a list of choices, or a ``{min, max, step?, sampling?}`` range.
This module is the one home of the knob names, the values each may take and what an absent
optional knob means; config validation and the hypermodel both read it. It imports nothing
heavy, so a bad search space fails before TensorFlow loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SearchSpaceError(ValueError):
    """A search-space value that cannot work; the message names the key and the value."""


def is_int(value: Any) -> bool:
    """An integer, not a bool (YAML's true is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return is_int(value) and value >= 1


def _fraction(value: Any) -> bool:
    return is_number(value) and 0 <= value <= 0.5


@dataclass(frozen=True)
class Knob:
    """One knob: a test of each value it may take, said in words, and its value when absent.

    ``off`` is ``None`` for a required knob; an optional knob left out of a space is not a
    hyperparameter and takes its ``off`` value (no batch norm, no augmentation, ...).
    """

    is_valid: Callable[[Any], bool]
    expected: str
    off: Any = None

    @property
    def optional(self) -> bool:
        return self.off is not None


KNOBS: dict[str, Knob] = {
    "learning_rate": Knob(lambda v: is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "conv_layers": Knob(_positive_int, "an integer >= 1"),
    "pool_every": Knob(_positive_int, "an integer >= 1"),
    "kernel_size": Knob(_positive_int, "an integer >= 1"),
    "filters": Knob(_positive_int, "an integer >= 1"),
    "dropout": Knob(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "dense_units": Knob(_positive_int, "an integer >= 1"),
    "batch_norm": Knob(lambda v: isinstance(v, bool), "true or false", off=False),
    # Rotation as a fraction of a full turn; shift and zoom as fractions of the image side.
    "augment_rotation": Knob(_fraction, "a fraction of a turn in [0, 0.5]", off=0.0),
    "augment_translation": Knob(_fraction, "a fraction of the side in [0, 0.5]", off=0.0),
    "augment_zoom": Knob(_fraction, "a fraction in [0, 0.5]", off=0.0),
    # Gaussian noise added to each training image's pixels (standard deviation; 0 is off).
    "augment_noise": Knob(_fraction, "a standard deviation in [0, 0.5]", off=0.0),
    "lr_schedule": Knob(lambda v: v in ("constant", "cosine"), "constant or cosine", "constant"),
}
_RANGE_FIELDS = ("min", "max", "step", "sampling")


def validate_search_space(space: Any, image_side: int, prefix: str = "search_space") -> None:
    """Check every knob of a search space; raise `SearchSpaceError` on the first bad value.

    Args:
        space: The ``search_space`` config as a plain mapping.
        image_side: The input images' side: the conv stack must not pool them below 1x1.
        prefix: The key the messages name.
    """
    if not isinstance(space, Mapping):
        raise SearchSpaceError(f"{prefix}={space!r}: expected a mapping of knobs")
    unknown = sorted(set(space) - set(KNOBS) - {"name"})
    if unknown:
        raise SearchSpaceError(f"{prefix}.{unknown[0]}: unknown knob (known: {', '.join(KNOBS)})")
    for name, knob in KNOBS.items():
        key = f"{prefix}.{name}"
        if name not in space:
            if knob.optional:
                continue
            raise SearchSpaceError(f"{key} is missing from the search space")
        for value_key, value in knob_values(key, space[name]):
            if not knob.is_valid(value):
                raise SearchSpaceError(f"{value_key}={value!r}: expected {knob.expected}")
    # Every conv-layer choice must build on the input: each pool halves the side (floor).
    if isinstance(space["conv_layers"], Mapping):
        raise SearchSpaceError(
            f"{prefix}.conv_layers: expected a list of layer counts, not a range"
        )
    pool_every = space["pool_every"]
    if not _positive_int(pool_every):
        raise SearchSpaceError(f"{prefix}.pool_every={pool_every!r}: expected one integer >= 1")
    max_pools = image_side.bit_length() - 1  # 28 -> 14 -> 7 -> 3 -> 1
    for _, layers in knob_values(f"{prefix}.conv_layers", space["conv_layers"]):
        if layers // pool_every > max_pools:
            raise SearchSpaceError(
                f"{prefix}.conv_layers={layers}: {layers // pool_every} poolings shrink "
                f"{image_side}x{image_side} input below 1x1 (at most "
                f"{pool_every * (max_pools + 1) - 1} layers with pool_every={pool_every})"
            )
    # A kernel wider than the map it meets sees mostly padding: such a search trained for
    # minutes at chance accuracy. Named at the first layer where it happens.
    kernel = max(value for _, value in knob_values(f"{prefix}.kernel_size", space["kernel_size"]))
    deepest = max(
        layers for _, layers in knob_values(f"{prefix}.conv_layers", space["conv_layers"])
    )
    for index in range(deepest):
        side = image_side >> (index // pool_every)
        if kernel > side:
            where = "input" if index == 0 else f"map layer {index + 1} meets"
            raise SearchSpaceError(
                f"{prefix}.kernel_size={kernel}: wider than the {side}x{side} {where} "
                f"(conv_layers up to {deepest}, pool_every={pool_every}); use kernels of at "
                f"most {side}, or fewer layers"
            )


def distinct_configurations(space: Mapping[str, Any]) -> int | None:
    """How many distinct configurations a (validated) search space holds; None where a knob
    is continuous (a float range without a step). Filters count once per built layer."""

    def count(spec: Any) -> int | None:
        if isinstance(spec, Mapping):
            low, high, step = spec["min"], spec["max"], spec.get("step")
            if low == high:
                return 1
            if isinstance(low, int) and isinstance(high, int) and isinstance(step, int | None):
                return (high - low) // (step or 1) + 1
            return None if step is None else math.floor((high - low) / step + 1e-9) + 1
        return len(spec) if isinstance(spec, list) else 1

    total = 1
    for name, spec in space.items():
        if name in ("name", "conv_layers", "filters"):
            continue
        options = count(spec)
        if options is None:
            return None
        total *= options
    filters = count(space["filters"])
    layer_choices = (
        space["conv_layers"] if isinstance(space["conv_layers"], list) else [space["conv_layers"]]
    )
    return total * sum(filters**layers for layers in layer_choices)


def knob_values(key: str, spec: Any) -> list[tuple[str, Any]]:
    """Each value that bounds a knob, with its key: the value, each choice, or a range's ends."""
    if isinstance(spec, Mapping):
        low, high = spec.get("min"), spec.get("max")
        if not (is_number(low) and is_number(high)):
            raise SearchSpaceError(f"{key}={spec!r}: a range needs numeric min and max")
        if low > high:
            raise SearchSpaceError(f"{key}.min={low!r} is greater than {key}.max={high!r}")
        step = spec.get("step")
        if step is not None and (not is_number(step) or step <= 0):
            raise SearchSpaceError(f"{key}.step={step!r}: expected a number > 0")
        sampling = spec.get("sampling", "linear")
        if sampling not in ("linear", "log"):
            raise SearchSpaceError(f"{key}.sampling={sampling!r}: expected linear or log")
        if sampling == "log" and step is not None:
            raise SearchSpaceError(f"{key}.step: log sampling takes no step")
        extra = sorted(set(spec) - set(_RANGE_FIELDS))
        if extra:
            raise SearchSpaceError(f"{key}.{extra[0]}: unknown range field")
        return [(f"{key}.min", low), (f"{key}.max", high)]
    if isinstance(spec, list):
        if not spec:
            raise SearchSpaceError(f"{key}=[]: an empty list of choices")
        if len(set(spec)) != len(spec):
            raise SearchSpaceError(f"{key}={spec!r}: choices repeat")
        return [(key, value) for value in spec]
    return [(key, spec)]


def is_log_scaled(space: Mapping[str, Any], hyperparameter: str) -> bool:
    """Whether a trial's hyperparameter was sampled on a log scale (by its knob's ``sampling``).

    ``filters_<i>`` (one per conv layer) is read from the ``filters`` knob.
    """
    knob = hyperparameter
    if knob not in space and knob.rpartition("_")[2].isdigit():
        knob = knob.rpartition("_")[0]
    spec = space.get(knob)
    return isinstance(spec, Mapping) and spec.get("sampling") == "log"
