"""Store trouble never fails a trial: tracker hooks that cannot reach MLflow warn and go on."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from keras_tuner.engine.trial import Trial
from mlflow.exceptions import MlflowException

from src.search.results import error_line

log = logging.getLogger("src.tracking.tracker")


def tolerant(hook: Callable[..., None]) -> Callable[..., None]:
    """Run a tracker hook so that a store that cannot be reached never fails the trial.

    The failed hook is named in ``self.unlogged`` (the tracker tags the parent run with it
    at the end); the first failure is a warning, later ones are debug lines.
    """

    @functools.wraps(hook)
    def guarded(self: Any, *args: Any) -> None:
        try:
            hook(self, *args)
        except (MlflowException, OSError) as error:
            trial = next((a for a in args if isinstance(a, Trial)), None)
            self.unlogged.append(f"{hook.__name__}({trial.trial_id if trial else ''})")
            report = log.warning if len(self.unlogged) == 1 else log.debug
            report(
                "MLflow: could not log (%s: %s); the search goes on, results.json keeps "
                "every trial",
                hook.__name__,
                error_line(str(error)),
            )

    return guarded
