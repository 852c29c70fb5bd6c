"""Warm start (``tuner.warm_start``): a search begins from the best configurations found so far.

Keras Tuner's oracles start from nothing (random or prior-free first trials); users have
asked for years to feed them earlier results (keras-io#1215). Here the best configurations
recorded in earlier ``results.json`` files (their completed trials, best first), a final
stage's ``final.json``, or the project's shipped study for the search space
(``conf/warm_start/<space>.json``, ``tuner.warm_start=shipped``) become the search's first
trials; the tuner's own algorithm proposes the rest, and sees those trials' scores as it
sees any other. What is reused is configurations and scores, never weights: every trial,
and every registered model, is trained within the run.

A configuration that is not a point of the current search space (another space's knob, a
value outside a range, a choice the space does not offer) is refused with one line before
anything is trained. Checked without importing Keras Tuner, so config validation can call it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.config.compose import CONFIG_DIR
from src.errors import ConfigError

SHIPPED = "shipped"
SHIPPED_DIR = CONFIG_DIR / "warm_start"
# How many of the best recorded configurations become first trials: enough to carry over
# the leaders, few enough that the tuner's own proposals still get most of a small search.
WARM_START_TRIALS = 3


def warm_start_files(spec: Any, space_name: str) -> list[Path]:
    """The files ``tuner.warm_start`` names: a path, a list of paths, or ``shipped``."""
    if spec is None:
        return []
    entries = [spec] if isinstance(spec, str | Path) else list(spec)
    files = []
    for entry in entries:
        if str(entry) == SHIPPED:
            files.append(SHIPPED_DIR / f"{space_name}.json")
        else:
            files.append(Path(str(entry)))
    return files


def recorded_file(spec: Any, space_name: str) -> Path:
    """The file ``final.from_results`` names: a path, or ``shipped`` (the shipped study of
    the search space, as ``tuner.warm_start=shipped`` reads it)."""
    return warm_start_files(spec, space_name)[0]


def warm_start_configurations(
    spec: Any, space: Mapping[str, Any], limit: int = WARM_START_TRIALS
) -> list[dict[str, Any]]:
    """The best recorded configurations ``tuner.warm_start`` names, checked against ``space``
    (`ranked_configurations` without their scores)."""
    return [values for _, values in ranked_configurations(spec, space)[:limit]]


def ranked_configurations(
    spec: Any, space: Mapping[str, Any]
) -> list[tuple[float, dict[str, Any]]]:
    """(score, configuration) of every distinct configuration ``tuner.warm_start`` names,
    best first, checked against ``space``.

    ``shipped`` is the default run's: where the project ships no study for the space, or the
    space was changed so that a shipped configuration is not one of its points, that
    configuration is left out (the search starts from fewer, or from nothing). A file named
    explicitly must fit: it is refused otherwise.

    Args:
        spec: ``tuner.warm_start``.
        space: The ``search_space`` config as a plain mapping.

    Raises:
        ConfigError: a named file is missing or unreadable, records no configuration, or
            records one that is not a point of ``space``.
    """
    ranked: list[tuple[float, dict[str, Any]]] = []
    for file in warm_start_files(spec, str(space.get("name"))):
        shipped = file.parent == SHIPPED_DIR
        if shipped and not file.is_file():
            continue
        for score, values in _recorded(file):
            misfit = configuration_misfit(values, space)
            if misfit and shipped:
                continue
            if misfit:
                raise ConfigError(
                    f"tuner.warm_start={str(file)!r}: {misfit}; it was recorded for another "
                    "search space (use a results.json of this space)"
                )
            ranked.append((score, values))
    ranked.sort(key=lambda entry: -entry[0])
    distinct: list[tuple[float, dict[str, Any]]] = []
    for score, values in ranked:
        if all(values != kept for _, kept in distinct):
            distinct.append((score, values))
    return distinct


def warm_start_for(spec: Any, space: Mapping[str, Any], tuner: str | type) -> list[dict[str, Any]]:
    """The configurations a search of ``space`` by ``tuner`` begins from: the one rule that
    config validation (with the class path) and the tuner factory (with the class) apply.

    ``shipped`` is skipped for a tuner that takes no warm start; a named file is refused.

    Raises:
        ConfigError: a named file for such a tuner, or one `ranked_configurations`
            refuses.
    """
    return [values for _, values in ranked_for(spec, space, tuner)[:WARM_START_TRIALS]]


def ranked_for(
    spec: Any, space: Mapping[str, Any], tuner: str | type
) -> list[tuple[float, dict[str, Any]]]:
    """`warm_start_for` with every configuration and its recorded score, best first."""
    from src.search.capabilities import refusal

    if spec is None:
        return []
    reason = refusal(tuner, "warm_start")
    if reason and spec == SHIPPED:
        return []
    if reason:
        raise ConfigError(f"tuner.warm_start: {reason}")
    return ranked_configurations(spec, space)


def preferred_configuration(cfg: Any) -> dict[str, Any] | None:
    """The configuration ``final.choose=warm_start_tied`` prefers: the warm start's first,
    the best that earlier searches found; None under another rule, with the final stage
    off, or without a warm start. ``cfg``: the run's config."""
    if not cfg.final.enabled or cfg.final.choose != "warm_start_tied":
        return None
    space = OmegaConf.to_container(cfg.search_space, resolve=True)
    first = warm_start_configurations(cfg.tuner.get("warm_start"), space, limit=1)
    return first[0] if first else None


def _recorded(file: Path) -> list[tuple[float, dict[str, Any]]]:
    """(score, hyperparameters) of each completed configuration a file records; a higher
    score is better (a loss objective is negated)."""
    if not file.is_file():
        raise ConfigError(f"tuner.warm_start={str(file)!r}: no such file")
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"tuner.warm_start={str(file)!r}: not JSON ({error})") from None
    if not isinstance(record, Mapping):
        raise ConfigError(f"tuner.warm_start={str(file)!r}: not a results.json or final.json")
    sign = score_sign(str(record.get("objective", "")))
    if "trials" in record:  # results.json, or the shipped study (the same shape)
        found = [
            (sign * float(trial["score"]), model_hyperparameters(trial["hyperparameters"]))
            for trial in record["trials"]
            if trial.get("status") in ("COMPLETED", None) and trial.get("score") is not None
        ]
    elif "hyperparameters" in record:  # final.json: the configuration it retrained
        values = model_hyperparameters(record["hyperparameters"])
        found = [(float(record.get("test_accuracy") or 0.0), values)]
    else:
        found = []
    if not found:
        raise ConfigError(f"tuner.warm_start={str(file)!r}: records no completed configuration")
    return found


def model_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters without Keras Tuner's own bookkeeping (Hyperband's
    ``tuner/epochs``, ...), which is not a configuration."""
    return {k: v for k, v in hyperparameters.items() if not k.startswith("tuner/")}


def is_configuration(values: Mapping[str, Any], configuration: Mapping[str, Any] | None) -> bool:
    """Whether a trial's ``values`` are ``configuration`` (each of its knobs; floats to
    rounding, as Optuna stores a value it was handed anew)."""
    if not configuration:
        return False

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b)
        return a == b

    return all(same(values.get(name), value) for name, value in configuration.items())


def score_sign(objective: str) -> float:
    """1 where a higher score of ``objective`` is better, -1 for a loss: multiply a score by
    it to rank higher-is-better."""
    return -1.0 if "loss" in objective else 1.0


def configuration_misfit(values: Mapping[str, Any], space: Mapping[str, Any]) -> str | None:
    """Why ``values`` cannot be a trial of ``space``; None when it can."""
    for name, value in values.items():
        knob = name
        if knob not in space and name.rpartition("_")[2].isdigit():
            knob = name.rpartition("_")[0]  # filters_2 -> filters
        if knob not in space:
            return f"{name} is not a knob of search space {space.get('name')!r}"
        spec = space[knob]
        if isinstance(spec, Mapping):
            if not spec["min"] <= value <= spec["max"]:
                return f"{name}={value!r} is outside [{spec['min']}, {spec['max']}]"
        elif isinstance(spec, Sequence) and not isinstance(spec, str):
            if value not in spec:
                return f"{name}={value!r} is not one of {list(spec)}"
        elif value != spec:
            return f"{name}={value!r} where the space fixes {spec!r}"
    for knob, spec in space.items():
        searched = isinstance(spec, Mapping) or (isinstance(spec, list) and len(spec) > 1)
        if knob not in ("name", "filters") and searched and knob not in values:
            return f"it has no {knob}, which the space searches"
    return None


class WarmStartOracle:
    """Mixed in before a Keras Tuner oracle class: its first trials are ``warm_values``.

    Set by `enable_warm_start`. A configuration already tried (a resumed search) is skipped;
    Optuna's studies (``tuner=tpe``) are handed each one with ``enqueue_trial``, so that the
    sampler learns from it as from its own proposals.
    """

    warm_values: list[dict[str, Any]]

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        from keras_tuner.engine.trial import TrialStatus

        while self.warm_values:
            values = self.warm_values.pop(0)
            if self._duplicate(values):
                continue
            if getattr(self, "samples_from_study", False):
                self.study.enqueue_trial(values, skip_if_exists=True)
                break  # the study's next ask returns it
            return {"status": TrialStatus.RUNNING, "values": dict(values)}
        return super().populate_space(trial_id)


def enable_warm_start(oracle: Any, configurations: list[dict[str, Any]]) -> None:
    """Make ``configurations`` the first trials of a built oracle (its class gains
    `WarmStartOracle`: Keras Tuner's tuners build their oracle themselves)."""
    if not configurations:
        return
    if not isinstance(oracle, WarmStartOracle):
        base = type(oracle)
        oracle.__class__ = type(f"WarmStarted{base.__name__}", (WarmStartOracle, base), {})
    oracle.warm_values = [dict(values) for values in configurations]
