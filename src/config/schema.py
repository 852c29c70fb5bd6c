"""The typed shape of the config nodes that have a fixed one, as structured-config dataclasses.

`check_node` merges a composed node into its dataclass with OmegaConf (Hydra's structured
configs), so OmegaConf checks every type, every choice (an `Enum`) and every key name (a
misspelt key is refused); each field's metadata adds its range. Keys that vary with the
option chosen (``tuner``, ``data``, ``search_space``) are checked in ``src.config.rules``.

Why the dataclasses are merged here rather than listed in the YAML defaults for Hydra to
apply while composing: Hydra reports a composition error as several lines plus a hint about
``HYDRA_FULL_ERROR``, and a bad value must stop the run with one line naming the key. Merged
here, the same OmegaConf check runs a moment later, still before TensorFlow loads, and its
error becomes that line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from src.errors import ConfigError


class Precision(Enum):
    """Keras dtype policies (the softmax stays float32 in the mixed ones)."""

    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    mixed_float16 = "mixed_float16"


class Choose(Enum):
    """Which trial the final stage retrains (``final.choose``)."""

    best = "best"
    warm_start_tied = "warm_start_tied"
    cheapest_tied = "cheapest_tied"


class Promotion(Enum):
    """When a new version becomes champion (``final.promotion``)."""

    better = "better"
    significant = "significant"


_ENUMS = {choice.__name__: choice for choice in (Precision, Choose, Promotion)}


def _at_least(minimum: int | float, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"min": minimum})


def _between(low: float, high: float) -> Any:
    """A number strictly between ``low`` and ``high``."""
    return field(default=MISSING, metadata={"between": (low, high)})


@dataclass
class TrainingSchema:
    """``conf/training/*.yaml``."""

    epochs: int = _at_least(1)
    batch_size: int = _at_least(1)
    val_fraction: float = _between(0, 1)
    early_stopping_patience: int = _at_least(0)
    seed: int = _at_least(0)
    deterministic: bool = True
    precision: Precision = Precision.float32
    threads: int | None = _at_least(1, default=None)
    verbose: int = field(default=1, metadata={"choices": (0, 1, 2)})


@dataclass
class MlflowSchema:
    """``conf/mlflow/*.yaml``."""

    enabled: bool = True
    tracking_uri: str = field(default=MISSING, metadata={"non_empty": True})
    artifact_location: str | None = None
    experiment_name: str = field(default=MISSING, metadata={"non_empty": True})


@dataclass
class FinalSchema:
    """The ``final`` node of ``conf/config.yaml``."""

    enabled: bool = True
    register: bool = True
    model_name: str = field(default="mnist-cnn", metadata={"non_empty": True})
    choose: Choose = Choose.warm_start_tied
    epochs: int | None = _at_least(1, default=None)
    seeds: list[int] | None = None
    ensemble: bool = False
    promotion: Promotion = Promotion.significant
    alpha: float = _between(0, 1)
    from_results: str | None = None
    max_epochs: int = _at_least(1, default=30)
    ensemble_epochs: int | None = _at_least(1, default=30)
    max_members: int = _at_least(1, default=3)
    max_latency_ms: float | None = field(default=None, metadata={"min_exclusive": 0})
    max_params: int | None = _at_least(1, default=None)


@dataclass
class BudgetPolicySchema:
    """The ``budget_policy`` node of ``conf/config.yaml`` (``src.budget``'s rules)."""

    final_share: float = _between(0, 1)
    final_overhead_s: float = _at_least(0)
    min_trials: int = _at_least(1)


@dataclass
class DistributedSchema:
    """The ``distributed`` node of ``conf/config.yaml``."""

    role: str | None = field(default=None, metadata={"choices": (None, "chief", "worker")})
    search_id: str | None = None
    chief_timeout_s: float = field(default=300, metadata={"min_exclusive": 0})


def check_node(node: Any, schema: type, prefix: str) -> None:
    """Check a composed node against its schema; raise `ConfigError` on the first bad key.

    Args:
        node: The composed node (``cfg.training``, ...).
        schema: Its dataclass.
        prefix: The node's dotted key, for the message.

    Raises:
        ConfigError: one line naming the key, its value and what was expected.
    """
    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as error:
        raise ConfigError(f"{prefix}.{error.key}: no such key in {prefix}") from None
    except ValidationError as error:
        name = re.split(r"[.\[]", str(error.full_key or error.key))[0]  # seeds[0] -> seeds
        raise ConfigError(_message(prefix, name, _value(node, name), schema)) from None
    for spec in dataclasses.fields(schema):
        value = _value(node, spec.name)
        if not _fits(spec, value):
            raise ConfigError(_message(prefix, spec.name, value, schema))


def _value(node: Any, name: str) -> Any:
    value = node.get(name) if isinstance(node, DictConfig) else node[name]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _fits(spec: dataclasses.Field, value: Any) -> bool:
    """The checks a type alone does not make: strict booleans, ranges, non-empty text."""
    if value is None:
        return "None" in str(spec.type) or None in spec.metadata.get("choices", ())
    if spec.type == "bool":
        # OmegaConf takes 1, 0 and "yes" as booleans; `overwrite=1` is more likely a slip.
        return isinstance(value, bool)
    meta = spec.metadata
    if isinstance(value, bool) and ("min" in meta or "choices" in meta):
        return False
    if "min" in meta and value < meta["min"]:
        return False
    if "min_exclusive" in meta and not value > meta["min_exclusive"]:
        return False
    if "between" in meta and not meta["between"][0] < value < meta["between"][1]:
        return False
    if "choices" in meta and value not in meta["choices"]:
        return False
    return not (meta.get("non_empty") and not str(value).strip())


def _message(prefix: str, name: str, value: Any, schema: type) -> str:
    spec = next(f for f in dataclasses.fields(schema) if f.name == name)
    meta, kind = spec.metadata, str(spec.type)
    if "choices" in meta:
        expected = "one of " + ", ".join("null" if c is None else str(c) for c in meta["choices"])
    elif kind in _ENUMS:
        expected = "one of " + ", ".join(_ENUMS[kind].__members__)
    elif kind == "bool":
        expected = "true or false"
    elif "between" in meta:
        expected = "a number in ({}, {})".format(*meta["between"])
    elif "min_exclusive" in meta:
        expected = f"a number > {meta['min_exclusive']}"
    elif "min" in meta:
        expected = f"an integer >= {meta['min']}"
    elif meta.get("non_empty"):
        expected = "a non-empty string"
    else:
        expected = kind.replace(" | None", " or null")
    return f"{prefix}.{name}={value!r}: expected {expected}"
