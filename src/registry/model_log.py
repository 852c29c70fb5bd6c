"""Log a trained Keras model with MLflow's Keras flavour, served through `src.registry.serving`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from src.model.layers import with_keras_layers
from src.tracking.provenance import installed_versions

# The packages a served model needs, pinned to the versions that trained it.
_MODEL_PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "numpy", "mlflow")


def log_model(client: MlflowClient, run_id: str, model: object, example: np.ndarray) -> str:
    """Log a Keras model under ``model/`` of a run with MLflow's Keras flavour, in Keras'
    own layers (`src.model.layers.with_keras_layers`), so that any Keras loads it.

    Returns:
        The model's artifact URI.
    """
    import mlflow.keras
    from mlflow.models import infer_signature

    model = with_keras_layers(model)
    with tempfile.TemporaryDirectory() as folder:
        # mlflow.keras.log_model(..., input_example=...) writes the example before it
        # creates its folder and fails (mlflow issue #16183): save into a folder made
        # here, then log that.
        saved = Path(folder) / "model"
        saved.mkdir()
        mlflow.keras.save_model(
            model,
            str(saved),
            signature=infer_signature(example, model.predict(example, verbose=0)),
            input_example=example[:2],
            # Pinned explicitly: inferring requirements costs ~10 s per model here.
            pip_requirements=[
                f"{name}=={version}"
                for name, version in installed_versions(_MODEL_PACKAGES).items()
            ],
        )
        _serve_through_unit_range_input(saved)
        client.log_artifacts(run_id, str(saved), "model")
    return f"{client.get_run(run_id).info.artifact_uri}/model"


# The name `src.registry.serving` takes inside a logged model's code/ folder.
_SERVING_MODULE = "mnist_serving"


def _serve_through_unit_range_input(saved: Path) -> None:
    """Make `src.registry.serving` the saved model's pyfunc loader (raw 0-255 pixels accepted,
    out-of-range ones refused); the Keras flavour, and the flavour's own pyfunc loader
    behind ours, stay as MLflow wrote them."""
    from mlflow.models import Model

    from src.registry import serving

    mlmodel = Model.load(str(saved / "MLmodel"))
    pyfunc = mlmodel.flavors["python_function"]
    pyfunc[serving.INNER_LOADER] = pyfunc["loader_module"]
    pyfunc["loader_module"] = _SERVING_MODULE
    pyfunc["code"] = "code"
    (saved / "code").mkdir()
    shutil.copyfile(serving.__file__, saved / "code" / f"{_SERVING_MODULE}.py")
    mlmodel.save(str(saved / "MLmodel"))
