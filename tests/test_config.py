"""Composition of every config group, and fast, clear rejection of bad values."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from helpers import GROUP_OPTIONS, REPO_ROOT, compose_config, run_cli

from src.config.rules import validate_config
from src.errors import ConfigError

# Groups outside the defaults list are added with `+` (the study stages).
ALL_OPTIONS = [
    f"{'+' if group == 'study' else ''}{group}={name}"
    for group, names in GROUP_OPTIONS.items()
    for name in names
]


def test_every_config_group_is_found():
    assert {"data", "search_space", "tuner", "training", "mlflow", "experiment"} <= set(
        GROUP_OPTIONS
    )
    assert {"random", "bayesian", "hyperband", "grid"} <= set(GROUP_OPTIONS["tuner"])


@pytest.mark.parametrize("override", ALL_OPTIONS)
def test_every_group_option_composes_and_validates(override, request, tmp_path, monkeypatch):
    if override == "data=idx":  # the default IDX folder is Debian's Fashion-MNIST
        request.getfixturevalue("fashion_mnist")
    # The full-MNIST study's last stage retrains what the fast study recorded here.
    recorded = tmp_path / "outputs/reproduce/2_cnn_plus/final/final.json"
    recorded.parent.mkdir(parents=True)
    recorded.write_text("{}")
    monkeypatch.chdir(tmp_path)
    cfg = compose_config([override])
    validate_config(cfg)


def test_default_config_is_the_documented_one(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = compose_config()
    assert cfg.mlflow.tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert cfg.resume is False
    assert cfg.data.name == "mnist"
    assert cfg.data.fallback.name == "mnist_10k"
    # The budgeted default: TPE over the seed study's knobs, trained well, from the shipped
    # study, on at most 10,000 digits a trial, time deciding the number of trials.
    assert cfg.tuner._target_ == "src.search.optuna.tuner.OptunaSearch"
    assert cfg.budget == "4m" and cfg.tuner.max_trials is None
    assert cfg.tuner.warm_start == "shipped" and cfg.tuner.search_examples == 3072
    assert cfg.tuner.pruner == "halving"  # multi-fidelity over epochs
    assert cfg.search_space.name == "default" and cfg.search_space.batch_norm is True
    assert cfg.search_space.learning_rate.min == 0.001
    assert cfg.search_space.learning_rate.max == 0.01
    assert list(cfg.search_space.conv_layers) == [2, 4, 6]
    assert cfg.tuner.seed == cfg.training.seed
    assert cfg.distributed.role is None and cfg.training.threads is None


def test_tracking_uri_follows_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert compose_config().mlflow.tracking_uri == "http://127.0.0.1:5999"
    assert compose_config(["mlflow=server"]).mlflow.tracking_uri == "http://127.0.0.1:5999"


@pytest.mark.parametrize("experiment", ["quick", "reproduce"])
def test_presets_are_count_based(experiment):
    """make reproduce stays count-based and deterministic on one machine: no budget."""
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.budget is None and cfg.tuner.warm_start is None


def test_the_study_stages_keep_their_trial_counts_over_the_budgeted_default():
    cfg = compose_config(["experiment=reproduce", "+study=cnn"])
    assert cfg.tuner.max_trials == 5 and cfg.search_space.name == "cnn"
    assert cfg.budget is None and cfg.tuner.search_examples is None


def test_quick_experiment_shrinks_the_run():
    cfg = compose_config(["experiment=quick"])
    assert cfg.data.name == "mnist_10k"
    assert cfg.tuner.max_trials == 2
    assert cfg.training.epochs == 1


def test_hyperband_uses_training_epochs_as_its_epoch_budget():
    cfg = compose_config(["tuner=hyperband", "training.epochs=9"])
    assert cfg.tuner.max_epochs == 9
    assert cfg.tuner.max_trials is None


BAD_VALUES = [
    ("search_space.learning_rate.min=0.1", "search_space.learning_rate.min=0.1"),
    ("search_space.learning_rate.min=0", "search_space.learning_rate.min=0"),
    ("search_space.dropout.max=1.0", "search_space.dropout.max=1.0"),
    ("search_space.dropout.min=-0.1", "search_space.dropout.min=-0.1"),
    ("search_space.conv_layers=[2,4,10]", "search_space.conv_layers=10"),
    ("search_space.conv_layers=[]", "search_space.conv_layers=[]"),
    # Wider than the 28x28 input, and than the 7x7 map a fifth layer meets.
    ("search_space.kernel_size=29", "search_space.kernel_size=29: wider than the 28x28 input"),
    ("search_space.kernel_size=9", "search_space.kernel_size=9: wider than the 7x7 map layer 5"),
    ("search_space.filters=[16,0]", "search_space.filters=0"),
    ("+search_space.droput=0.2", "search_space.droput"),
    ("training.epochs=0", "training.epochs=0"),
    ("training.epochs=abc", "training.epochs='abc'"),
    ("training.batch_size=-8", "training.batch_size=-8"),
    ("training.val_fraction=1.5", "training.val_fraction=1.5"),
    ("training.precision=float8", "training.precision='float8'"),
    ("tuner.max_trials=0", "tuner.max_trials=0"),
    ("tuner._target_=Nonsense", "tuner._target_='Nonsense'"),
    ("tuner.objective=val_f1", "tuner.objective='val_f1'"),
    ("data.path=/no/such/folder", "data.path='/no/such/folder'"),
    ("data.max_train_examples=0", "data.max_train_examples=0"),
    ("resume=maybe", "resume='maybe'"),
    ("overwrite=1", "overwrite=1"),
    ("tuner.directory=/tmp", "tuner.directory='/tmp'"),
    ("tuner.project_name=../elsewhere", "tuner.project_name='../elsewhere'"),
    ("mlflow.enabled=1", "mlflow.enabled=1"),
    ("mlflow.experiment_name=''", "mlflow.experiment_name=''"),
    ("training.threads=0", "training.threads=0"),
    ("final.max_latency_ms=0", "final.max_latency_ms=0: expected a number > 0"),
    ("final.max_params=0", "final.max_params=0: expected an integer >= 1"),
    ("distributed.role=boss", "distributed.role='boss'"),
    ("distributed.chief_timeout_s=0", "distributed.chief_timeout_s=0"),
    ("final.seeds=[1,1]", "final.seeds=[1, 1]"),
    ("final.seeds=[]", "final.seeds=[]"),
    ("final.ensemble=true", "final.ensemble=true"),
    ("final.promotion=always", "final.promotion='always'"),
    ("final.choose=fastest", "final.choose='fastest'"),
    ("final.alpha=0", "final.alpha=0"),
    ("data.idx_folder=/no/such/folder", "data.idx_folder='/no/such/folder'"),
    # Checked by the structured-config schemas (src.config.schema): key names and types.
    ("+training.epoch=3", "training.epoch: no such key"),
    ("final.seeds=[a]", "final.seeds=['a']"),
    ("training.verbose=true", "training.verbose=True"),
    ("data.max_test_examples=0", "data.max_test_examples=0"),
]


@pytest.mark.parametrize(("override", "named"), BAD_VALUES)
def test_bad_value_is_rejected_with_its_key(override, named):
    data = ["data=idx"] if override.startswith("data.path") else []
    cfg = compose_config([*data, override])
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    message = str(error.value)
    assert named in message
    assert "\n" not in message


def test_mnist_10k_path_that_does_not_exist_is_rejected():
    cfg = compose_config(["data=mnist_10k", "data.path=/no/such.npz"])
    with pytest.raises(ConfigError, match=r"data.path='/no/such.npz': no such file"):
        validate_config(cfg)


def test_hyperband_rejects_a_factor_below_two():
    cfg = compose_config(["tuner=hyperband", "tuner.factor=1"])
    with pytest.raises(ConfigError, match=r"tuner\.factor=1"):
        validate_config(cfg)


def test_cli_rejects_bad_value_fast_with_one_line(tmp_path):
    start = time.perf_counter()
    result = run_cli("search_space.learning_rate.min=0.5", cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 1  # SystemExit("error: ...")
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: search_space.learning_rate.min=0.5 is greater than "
        "search_space.learning_rate.max=0.01"
    ]
    assert elapsed < 5, f"rejecting a bad value took {elapsed:.1f}s"
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.json"))


def test_cli_rejects_unknown_tuner(tmp_path):
    result = run_cli("tuner=nonsense", cwd=tmp_path)
    assert result.returncode == 1  # Hydra's own error for an unknown option
    assert "Could not find 'tuner/nonsense'" in result.stderr


def test_validation_and_the_supervisor_do_not_import_tensorflow():
    code = (
        "import sys; from helpers import compose_config; "
        "from src.config.rules import validate_config; "
        "validate_config(compose_config()); "
        "import src.run, src.scaleout.cluster, src.tracking.store, src.predict; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'heavy import'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT / "tests",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("stage", ["baseline", "cnn", "cnn_plus"])
def test_every_stage_of_the_reproduce_study_composes(stage):
    cfg = compose_config(["experiment=reproduce", f"+study={stage}"])
    validate_config(cfg)
    assert cfg.search_space.name == stage
    assert cfg.data.name == "mnist_10k"
    assert cfg.training.deterministic is True


def test_improved_space_rejects_an_unknown_schedule():
    cfg = compose_config(["search_space=cnn_plus", "search_space.lr_schedule=[cosine,step]"])
    with pytest.raises(ConfigError, match=r"search_space\.lr_schedule='step'"):
        validate_config(cfg)


def test_resume_and_overwrite_together_are_rejected():
    cfg = compose_config(["resume=true", "overwrite=true"])
    with pytest.raises(ConfigError, match="resume=true with overwrite=true"):
        validate_config(cfg)


def test_distributed_hyperband_is_refused_before_anything_starts():
    cfg = compose_config(["tuner=hyperband", "distributed.role=chief", "distributed.search_id=x"])
    with pytest.raises(ConfigError, match="Hyperband cannot run distributed"):
        validate_config(cfg)


def test_a_spaces_distinct_configurations_are_counted_with_filters_per_layer():
    from src.model.search_space import distinct_configurations

    space = {
        "name": "small",
        "learning_rate": 0.001,
        "conv_layers": [2, 4],
        "pool_every": 2,
        "kernel_size": 3,
        "filters": [16, 32],
        "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
        "dense_units": [64, 128],
    }
    # dropout 6 values x dense 2 x filters (2^2 + 2^4 layers' choices).
    assert distinct_configurations(space) == 6 * 2 * (4 + 16)
    continuous = {**space, "learning_rate": {"min": 0.001, "max": 0.01, "sampling": "log"}}
    assert distinct_configurations(continuous) is None
