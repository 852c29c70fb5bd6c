"""What the project uses of Keras Tuner's and MLflow's internals, checked one by one.

`pyproject.toml` pins these packages to the ranges where the internals below hold; each
test names what changed, so an upgrade that breaks one fails here with a clear message
instead of deep inside a distributed search or a tracked run.
"""

from __future__ import annotations

import inspect

import pytest


def test_keras_tuner_chief_internals_used_by_serve_oracle():
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    assert hasattr(protos.get_service_grpc(), "add_OracleServicer_to_server"), (
        "keras_tuner.src.protos no longer registers the Oracle gRPC service: "
        "src.search.distributed.serve_oracle must follow Keras Tuner's chief"
    )
    servicer = inspect.signature(oracle_chief.OracleServicer)
    assert list(servicer.parameters) == ["oracle"], "OracleServicer(oracle) changed"
    assert "stop_triggered" in inspect.getsource(oracle_chief.OracleServicer), (
        "OracleServicer.stop_triggered is gone: serve_oracle's exit test must change"
    )
    import keras_tuner

    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1)
    assert oracle_chief.exit_chief(oracle), "exit_chief(oracle) no longer holds when idle"
    oracle.tuner_ids.add("worker-0")
    assert not oracle_chief.exit_chief(oracle), "exit_chief ignores the workers' ids"


def test_keras_tuner_oracle_keeps_ongoing_trials_and_tuner_ids():
    import keras_tuner

    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1)
    assert isinstance(oracle.ongoing_trials, dict), (
        "Oracle.ongoing_trials is gone: fail_orphaned_trials cannot find orphaned trials"
    )
    assert isinstance(oracle.tuner_ids, set), "Oracle.tuner_ids is gone"


def test_keras_tuner_consecutive_failures_raise_runtime_error():
    import keras_tuner
    from keras_tuner.engine.trial import Trial, TrialStatus

    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective="val_accuracy", max_trials=3, max_consecutive_failed_trials=1
    )
    trial = Trial(oracle.get_space(), trial_id="0", status=TrialStatus.FAILED)
    oracle.trials["0"], oracle.end_order = trial, ["0"]
    # ObservedTunerMixin turns exactly this into TooManyFailedTrials.
    with pytest.raises(RuntimeError, match="consecutive failures"):
        oracle._check_consecutive_failures()


@pytest.mark.filterwarnings("ignore:The specified dataset source can be")
def test_mlflow_dataset_converts_to_a_dataset_input_entity():
    import mlflow.data
    import numpy as np
    from mlflow.entities import Dataset

    logged = mlflow.data.from_numpy(np.zeros((2, 2)), source="/tmp/x", name="x")
    assert isinstance(logged._to_mlflow_entity(), Dataset), (
        "mlflow.data datasets lost _to_mlflow_entity(): MLflowTracker._dataset_input must "
        "log the dataset another way"
    )


def test_keras_tuner_oracle_internals_used_by_the_optuna_oracle():
    import keras_tuner

    oracle = keras_tuner.oracles.BayesianOptimizationOracle(objective="val_accuracy")
    for name in ("_project_dir", "_save_trial", "_duplicate", "_compute_values_hash"):
        assert hasattr(type(oracle), name), f"Oracle.{name} is gone: src.search.optuna uses it"
    assert hasattr(oracle, "_id_to_hash"), "Oracle._id_to_hash is gone (duplicate trials)"
    # Pruned trials are shown to the Gaussian process as completed (OptunaStudyMixin).
    assert "_vectorize_trials" in vars(type(oracle)), (
        "BayesianOptimizationOracle._vectorize_trials is gone: OptunaStudyMixin overrides it"
    )
    assert "Intermediate results are not passed to the Oracle" in inspect.getsource(
        keras_tuner.Tuner.on_epoch_end
    ), "Tuner.on_epoch_end now reports epochs itself: ObservedTunerMixin would report twice"


def test_optuna_internals_used_by_the_optuna_oracle():
    import optuna

    study = optuna.create_study()
    frozen = study.ask() and study.get_trials()[0]
    assert isinstance(frozen._trial_id, int), (
        "FrozenTrial._trial_id is gone: src.search.optuna reopens running trials by it"
    )
    assert list(inspect.signature(optuna.trial.Trial).parameters) == ["study", "trial_id"]


def test_tensorflow_custom_gradients_register_in_its_gradient_registry():
    """src.model.backend.forget_custom_gradients drops what tf.custom_gradient registers."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    from src.model.backend import custom_gradient_names, forget_custom_gradients

    registry = ops._gradient_registry._registry
    assert isinstance(registry, dict), "TensorFlow's gradient registry is no longer a dict"

    @tf.custom_gradient
    def identity(x):
        return tf.identity(x), lambda grad: grad

    before = custom_gradient_names()
    tf.function(lambda x: identity(x)).get_concrete_function(tf.TensorSpec([2]))
    added = custom_gradient_names() - before
    assert added, "tf.custom_gradient no longer registers CustomGradient-<uid> in graph mode"
    assert forget_custom_gradients(before) == len(added)
    assert not (set(registry) & added)
