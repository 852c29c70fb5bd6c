"""The served model's input step: raw 0-255 pixels are accepted, anything else refused.

The networks are trained on pixels in [0, 1]; given raw 0-255 pixels (what an image file
holds) they would answer confidently and wrongly, and MLflow's signature checks types and
shapes, not ranges. `src.registry.log_model` copies this file into every logged model (as
its ``code/``) and makes it the model's pyfunc loader: `mlflow.pyfunc.load_model`,
``mlflow models serve`` and `src.predict` then rescale each image whose pixels go above 1
from 0-255 to [0, 1], and refuse an image with pixels outside both ranges (a 400 from the
server, naming the image). ``mlflow.keras.load_model`` still returns the bare Keras model.

It imports only NumPy and MLflow: it runs where the model is served, without the project.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# The pyfunc configuration key that keeps the flavour's own loader (e.g. ``mlflow.keras``).
INNER_LOADER = "inner_loader_module"
RAW_MAX = 255.0


class InputRefused(MlflowException):
    """A 400 whose reply says what was wrong and nothing else.

    MLflow's scoring server prefixes the message of any `MlflowException` raised while
    predicting with the whole request (``Failed to predict data '<every pixel>'``: 3-14 KB
    replies); this one keeps its own message.
    """

    def __init__(self, message: str) -> None:
        self._own_message = message
        super().__init__(message, INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._own_message

    @message.setter
    def message(self, _value: str) -> None:
        pass  # the server's prefix is dropped; the reply keeps the message above


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Each image in [0, 1] as it is; each with a pixel above 1 divided by 255.

    Raises:
        InputRefused: (a 400 when served) an image with pixels below 0 or above 255, or a
            blank one (every pixel the same value: nothing drawn, any label a guess).
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 0 or len(pixels) == 0:
        return pixels
    flat = pixels.reshape(len(pixels), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    bad = np.flatnonzero((low < 0) | (high > RAW_MAX) | ~np.isfinite(flat).all(axis=1))
    if bad.size:
        index = int(bad[0])
        raise InputRefused(
            f"image {index}: pixels from {low[index]:g} to {high[index]:g}; expected floats "
            "in [0, 1] or raw pixels in [0, 255]"
        )
    blank = np.flatnonzero(low == high)
    if blank.size:
        raise InputRefused(
            f"image {int(blank[0])} is blank (every pixel {low[blank[0]]:g}): nothing to classify"
        )
    raw = (high > 1.0).reshape(-1, *([1] * (pixels.ndim - 1)))
    return np.where(raw, pixels / RAW_MAX, pixels).astype(np.float32)


class _UnitRangeInput:
    """The flavour's pyfunc model, behind `to_unit_range`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return self.inner.predict(to_unit_range(data), params=params)

    def get_raw_model(self) -> Any:
        return self.inner.get_raw_model() if hasattr(self.inner, "get_raw_model") else None


def _load_pyfunc(path: str) -> _UnitRangeInput:
    """MLflow's pyfunc loader protocol: load the flavour's own model, wrap it."""
    conf = Model.load(os.path.join(path, "MLmodel")).flavors["python_function"]
    inner = importlib.import_module(conf[INNER_LOADER])._load_pyfunc(path)
    return _UnitRangeInput(inner)
