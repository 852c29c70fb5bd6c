"""The Optuna samplers and pruners a config names (``tuner.sampler``, ``tuner.pruner``).

Kept apart from the rest of ``src.search.optuna`` so that config validation can check a spec without
importing Keras Tuner (and TensorFlow).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import optuna

# Short names accepted for `tuner.pruner` / `tuner.sampler`; any class name of
# optuna.pruners / optuna.samplers works too.
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "asha": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
}
# Named pruners with their arguments: a tuner file defaults to a name rather than a mapping,
# because Hydra merges an override's mapping into a mapping (`tuner.pruner={name: median}`
# would keep `reduction_factor`) where it replaces a name.
PRUNER_PRESETS: dict[str, dict[str, Any]] = {
    # Multi-fidelity over epochs: a trial goes past its 1st and 2nd epochs only while it is
    # in the better half of the trials that reached them (steps are epochs trained).
    "halving": {"name": "SuccessiveHalvingPruner", "min_resource": 1, "reduction_factor": 2},
}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler", "qmc": "QMCSampler"}
NO_PRUNER = (None, "none", "null")


class OptunaSpecError(ValueError):
    """A sampler or pruner spec names no Optuna class or takes an argument it does not know."""


def _split_spec(spec: str | Mapping[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str) and kind == "pruner" and spec.lower() in PRUNER_PRESETS:
        spec = PRUNER_PRESETS[spec.lower()]
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise OptunaSpecError(f"tuner.{kind}: expected a name or a mapping with 'name', got {spec!r}")


def _optuna_class(spec_name: str, aliases: Mapping[str, str], module: Any, kind: str) -> type:
    class_name = aliases.get(spec_name.lower(), spec_name)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        known = ", ".join(sorted(aliases))
        raise OptunaSpecError(
            f"tuner.{kind}={spec_name!r}: not an Optuna {kind} (short names: {known}, or "
            f"a class of optuna.{kind}s)"
        )
    return cls


def _instantiate(cls: type, arguments: Mapping[str, Any], kind: str) -> Any:
    accepted = inspect.signature(cls).parameters
    for key in arguments:
        if key not in accepted:
            raise OptunaSpecError(f"tuner.{kind}.{key}: {cls.__name__} takes no such argument")
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise OptunaSpecError(f"tuner.{kind}: {cls.__name__}: {error}") from None


def make_pruner(spec: str | Mapping[str, Any] | None) -> optuna.pruners.BasePruner | None:
    """The Optuna pruner a ``tuner.pruner`` spec names (None: no pruning).

    Args:
        spec: ``median``, ``successive_halving``, ``hyperband``, ... (Optuna's defaults), or
            a mapping ``{name: median, n_startup_trials: 2, ...}`` of the class's arguments.

    Raises:
        OptunaSpecError: no such pruner, or an argument it does not take.
    """
    if spec in NO_PRUNER:
        return None
    name, arguments = _split_spec(spec, "pruner")
    if name.lower() in NO_PRUNER:
        return None
    cls = _optuna_class(name, PRUNERS, optuna.pruners, "pruner")
    return _instantiate(cls, arguments, "pruner")


def make_sampler(spec: str | Mapping[str, Any], seed: int | None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a ``tuner.sampler`` spec names, seeded with ``seed`` if it takes one.

    Raises:
        OptunaSpecError: no such sampler, or an argument it does not take.
    """
    name, arguments = _split_spec(spec, "sampler")
    cls = _optuna_class(name, SAMPLERS, optuna.samplers, "sampler")
    if "seed" in inspect.signature(cls).parameters:
        arguments = {**arguments, "seed": seed}
    return _instantiate(cls, arguments, "sampler")
