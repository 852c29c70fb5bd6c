"""What a tuner cannot combine with the project's options: one table, one check.

Keras Tuner's Hyperband decides each trial's epochs itself and resumes a bracket's models
from checkpoints in its own folder, so it takes no Optuna pruner, no k-fold score, no
distributed run and no warm start here; a grid search takes no warm start either. The
table is keyed by class name so that config validation (``src.config.rules``) can apply it
before Keras Tuner, and TensorFlow, are imported; the tuner factory applies the same check
to the class it builds.
"""

from __future__ import annotations

# Class name -> {option: why that tuner cannot take it}.
REFUSED_OPTIONS: dict[str, dict[str, str]] = {
    "Hyperband": {
        "pruner": "Hyperband already stops trials itself (successive halving); use tuner=tpe, "
        "random or bayesian with a pruner",
        "cv_folds": "Hyperband cannot cross-validate its trials (one model per trial)",
        "distributed": "Hyperband cannot run distributed here (its checkpoints stay in one "
        "member's folder); use tuner=random or tuner=bayesian",
        "warm_start": "Hyperband schedules its own brackets of trials; use tuner=tpe, random "
        "or bayesian to begin from earlier configurations",
        "rerun_trials": "Hyperband's trials continue each other's checkpoints within a "
        "bracket, so one cannot run again alone",
    },
    "GridSearch": {
        "warm_start": "a grid search walks its grid in order; use tuner=tpe, random or "
        "bayesian to begin from earlier configurations",
    },
}


def refusal(target: str | type, option: str) -> str | None:
    """Why the tuner ``target`` (a class or its ``module.Class`` path) refuses ``option``.

    A subclass is refused what its Keras Tuner base is refused.
    """
    names = (
        [c.__name__ for c in target.__mro__]
        if isinstance(target, type)
        else [str(target).rsplit(".", 1)[-1]]
    )
    for name in names:
        if option in REFUSED_OPTIONS.get(name, {}):
            return REFUSED_OPTIONS[name][option]
    return None
