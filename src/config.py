"""Validate a composed configuration before anything heavy is imported.

Hydra composes the config; this module checks that every value can work, so that a bad
value fails in well under a second, with the key and the value in a one-line message,
instead of minutes later inside TensorFlow. It imports nothing but OmegaConf.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

# The Keras Tuner classes a `tuner._target_` may name.
TUNER_CLASSES = (
    "keras_tuner.RandomSearch",
    "keras_tuner.BayesianOptimization",
    "keras_tuner.Hyperband",
    "keras_tuner.GridSearch",
)
HYPERBAND = "keras_tuner.Hyperband"
OBJECTIVES = ("val_accuracy", "val_loss", "accuracy", "loss")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DATA_SOURCES = ("mnist", "mnist_10k", "idx")
# MNIST-format images are 28x28; the conv stack must not pool them below 1x1.
IMAGE_SIDE = 28


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the value."""


def validate_config(cfg: DictConfig) -> None:
    """Check every group of a composed config; raise `ConfigError` on the first bad value.

    Args:
        cfg: The composed root config (with `data`, `search_space`, `tuner`, `training`).

    Raises:
        ConfigError: naming the first key whose value cannot work.
    """
    reader = _Reader(cfg)
    _check_training(reader)
    _check_tuner(reader)
    _check_search_space(reader)
    _check_data(reader, "data")
    _check_mlflow(reader)
    _check_final(reader)
    _check_distributed(reader)


class _Reader:
    """Reads values by dotted key and turns type and range problems into `ConfigError`."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def get(self, key: str, default: Any = ...) -> Any:
        try:
            node = OmegaConf.select(self.cfg, key, throw_on_missing=True, default=default)
        except MissingMandatoryValue:
            raise ConfigError(f"{key} is required: set {key}=...") from None
        except OmegaConfBaseException as error:
            raise ConfigError(f"{key}: {str(error).splitlines()[0]}") from None
        if node is ...:
            raise ConfigError(f"{key} is missing from the config")
        if isinstance(node, DictConfig | ListConfig):
            return OmegaConf.to_container(node, resolve=True)
        return node

    def integer(self, key: str, minimum: int, optional: bool = False) -> int | None:
        value = self.get(key, None if optional else ...)
        if value is None and optional:
            return None
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected true or false")
        return value

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key}={value!r}: expected a non-empty string")
        return value

    def one_of(self, key: str, options: tuple[str, ...]) -> str:
        value = self.get(key)
        if value not in options:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(options)}")
        return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_training(reader: _Reader) -> None:
    reader.integer("training.epochs", 1)
    reader.integer("training.batch_size", 1)
    reader.integer("training.early_stopping_patience", 0)
    reader.integer("training.seed", 0)
    reader.integer("training.threads", 1, optional=True)
    reader.one_of("training.precision", PRECISIONS)
    val_fraction = reader.get("training.val_fraction")
    if not _is_number(val_fraction) or not 0 < val_fraction < 1:
        raise ConfigError(f"training.val_fraction={val_fraction!r}: expected a number in (0, 1)")
    reader.boolean("training.deterministic")
    verbose = reader.get("training.verbose")
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ConfigError(f"training.verbose={verbose!r}: expected 0, 1 or 2")


def _check_tuner(reader: _Reader) -> None:
    target = reader.one_of("tuner._target_", TUNER_CLASSES)
    reader.one_of("tuner.objective", OBJECTIVES)
    reader.integer("tuner.seed", 0)
    reader.integer("tuner.executions_per_trial", 1)
    reader.integer("tuner.max_retries_per_trial", 0)
    reader.integer("tuner.max_consecutive_failed_trials", 1)
    if target == HYPERBAND:
        reader.integer("tuner.max_epochs", 1)
        reader.integer("tuner.factor", 2)
        reader.integer("tuner.max_trials", 1, optional=True)
    else:
        reader.integer("tuner.max_trials", 1)


# Each knob of a search space is a fixed value, a list of choices, or a {min, max} range.
# The checks below say which values each knob may take; the hypermodel reads the same keys.
def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _learning_rate(value: Any) -> bool:
    return _is_number(value) and 0 < value < 1


def _dropout(value: Any) -> bool:
    return _is_number(value) and 0 <= value < 1


def _fraction(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 0.5


_KNOB_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "learning_rate": (_learning_rate, "a number in (0, 1)"),
    "conv_layers": (_positive_int, "an integer >= 1"),
    "pool_every": (_positive_int, "an integer >= 1"),
    "kernel_size": (_positive_int, "an integer >= 1"),
    "filters": (_positive_int, "an integer >= 1"),
    "dropout": (_dropout, "a number in [0, 1)"),
    "dense_units": (_positive_int, "an integer >= 1"),
}
# Optional knobs: absent means off (no batch norm, no augmentation, constant learning rate).
_OPTIONAL_KNOB_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
    "augment_rotation": (_fraction, "a fraction of a turn in [0, 0.5]"),
    "augment_translation": (_fraction, "a fraction of the side in [0, 0.5]"),
    "augment_zoom": (_fraction, "a fraction in [0, 0.5]"),
    "lr_schedule": (lambda v: v in ("constant", "cosine"), "constant or cosine"),
}
SEARCH_SPACE_KNOBS = (*_KNOB_RULES, *_OPTIONAL_KNOB_RULES)


def _check_search_space(reader: _Reader) -> None:
    space = reader.get("search_space")
    if not isinstance(space, Mapping):
        raise ConfigError(f"search_space={space!r}: expected a mapping of knobs")
    unknown = sorted(set(space) - set(SEARCH_SPACE_KNOBS) - {"name"})
    if unknown:
        raise ConfigError(
            f"search_space.{unknown[0]}: unknown knob (known: {', '.join(SEARCH_SPACE_KNOBS)})"
        )
    for knob, (is_valid, expected) in {**_KNOB_RULES, **_OPTIONAL_KNOB_RULES}.items():
        key = f"search_space.{knob}"
        if knob in _OPTIONAL_KNOB_RULES and knob not in space:
            continue
        for value_key, value in _knob_values(key, reader.get(key)):
            if not is_valid(value):
                raise ConfigError(f"{value_key}={value!r}: expected {expected}")
    # Every conv-layer choice must build on 28x28 input: each pool halves the side (floor).
    if isinstance(space["conv_layers"], Mapping):
        raise ConfigError("search_space.conv_layers: expected a list of layer counts, not a range")
    pool_every = space["pool_every"]
    if not _positive_int(pool_every):
        raise ConfigError(f"search_space.pool_every={pool_every!r}: expected one integer >= 1")
    max_pools = IMAGE_SIDE.bit_length() - 1  # 28 -> 14 -> 7 -> 3 -> 1
    for _, layers in _knob_values("search_space.conv_layers", space["conv_layers"]):
        if layers // pool_every > max_pools:
            raise ConfigError(
                f"search_space.conv_layers={layers}: {layers // pool_every} poolings shrink "
                f"{IMAGE_SIDE}x{IMAGE_SIDE} input below 1x1 (at most "
                f"{pool_every * (max_pools + 1) - 1} layers with pool_every={pool_every})"
            )


def _knob_values(key: str, spec: Any) -> list[tuple[str, Any]]:
    """Each value that bounds a knob, with its key: the value, each choice, or a range's ends."""
    if isinstance(spec, Mapping):
        low, high = spec.get("min"), spec.get("max")
        if not (_is_number(low) and _is_number(high)):
            raise ConfigError(f"{key}={spec!r}: a range needs numeric min and max")
        if low > high:
            raise ConfigError(f"{key}.min={low!r} is greater than {key}.max={high!r}")
        step = spec.get("step")
        if step is not None and (not _is_number(step) or step <= 0):
            raise ConfigError(f"{key}.step={step!r}: expected a number > 0")
        sampling = spec.get("sampling", "linear")
        if sampling not in ("linear", "log"):
            raise ConfigError(f"{key}.sampling={sampling!r}: expected linear or log")
        if sampling == "log" and step is not None:
            raise ConfigError(f"{key}.step: log sampling takes no step")
        extra = sorted(set(spec) - {"min", "max", "step", "sampling"})
        if extra:
            raise ConfigError(f"{key}.{extra[0]}: unknown range field")
        return [(f"{key}.min", low), (f"{key}.max", high)]
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{key}=[]: an empty list of choices")
        if len(set(spec)) != len(spec):
            raise ConfigError(f"{key}={spec!r}: choices repeat")
        return [(key, value) for value in spec]
    return [(key, spec)]


def _check_data(reader: _Reader, prefix: str) -> None:
    source = reader.one_of(f"{prefix}.name", DATA_SOURCES)
    reader.integer(f"{prefix}.split_seed", 0)
    reader.integer(f"{prefix}.max_train_examples", 10, optional=True)
    path = reader.get(f"{prefix}.path")
    if source == "mnist":
        timeout = reader.get(f"{prefix}.download_timeout_s")
        if not _is_number(timeout) or timeout <= 0:
            raise ConfigError(f"{prefix}.download_timeout_s={timeout!r}: expected a number > 0")
        if reader.get(f"{prefix}.fallback", None) is not None:
            if reader.get(f"{prefix}.fallback.name") != "mnist_10k":
                raise ConfigError(f"{prefix}.fallback.name: the fallback must be mnist_10k")
            _check_data(reader, f"{prefix}.fallback")
    elif source == "mnist_10k":
        reader.integer(f"{prefix}.test_size", 10)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{prefix}.path={path!r}: no such file")
    elif not Path(str(path)).is_dir():
        raise ConfigError(f"{prefix}.path={path!r}: no such folder (it must hold the IDX files)")


def _check_mlflow(reader: _Reader) -> None:
    reader.boolean("resume")
    reader.boolean("mlflow.enabled")
    reader.text("mlflow.tracking_uri")
    reader.text("mlflow.experiment_name")


def _check_final(reader: _Reader) -> None:
    reader.boolean("final.enabled")
    reader.boolean("final.register")
    reader.text("final.model_name")
    reader.integer("final.epochs", 1, optional=True)


def _check_distributed(reader: _Reader) -> None:
    role = reader.get("distributed.role")
    if role is not None and role not in ("chief", "worker"):
        raise ConfigError(f"distributed.role={role!r}: expected null, chief or worker")
    if role is not None:
        reader.text("distributed.search_id")
    timeout = reader.get("distributed.chief_timeout_s")
    if not _is_number(timeout) or timeout <= 0:
        raise ConfigError(f"distributed.chief_timeout_s={timeout!r}: expected a number > 0")
