"""Validate a composed configuration before anything heavy is imported.

Hydra composes the config; this module checks that every value can work, so that a bad
value fails in well under a second, with the key and the value in a one-line message,
instead of minutes later inside TensorFlow. It imports nothing but OmegaConf (and Optuna,
only when a config names a sampler or a pruner).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from src.budget import parse_duration
from src.config.schema import (
    BudgetPolicySchema,
    DistributedSchema,
    FinalSchema,
    MlflowSchema,
    TrainingSchema,
    check_node,
)
from src.data.mnist_format import IMAGE_SIDE
from src.errors import ConfigError
from src.model.search_space import SearchSpaceError, is_int, is_number, validate_search_space
from src.search.capabilities import refusal
from src.search.warm_start import recorded_file, warm_start_for

# What a trial can be ranked by: the hypermodel compiles loss and accuracy, and Keras logs
# both for training and validation.
OBJECTIVES = ("val_accuracy", "val_loss", "accuracy", "loss")
DATA_SOURCES = ("mnist", "mnist_10k", "idx")


def validate_config(cfg: DictConfig) -> None:
    """Check every group of a composed config; raise `ConfigError` on the first bad value.

    Args:
        cfg: The composed root config (with `data`, `search_space`, `tuner`, `training`).

    Raises:
        ConfigError: naming the first key whose value cannot work.
    """
    reader = _Reader(cfg)
    _check_budget(reader)
    _check_training(reader)
    _check_tuner(reader)
    _check_search_space(reader)
    _check_data(reader, "data")
    _check_evaluation(reader)
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
        if not is_int(value) or value < minimum:
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


def _check_budget(reader: _Reader) -> None:
    budget = reader.get("budget", None)
    if budget is None:
        return
    try:
        seconds = parse_duration(budget)
    except ValueError as error:
        raise ConfigError(f"budget={budget!r}: {error}") from None
    check_node(reader.cfg.budget_policy, BudgetPolicySchema, "budget_policy")
    share, overhead = (
        reader.get("budget_policy.final_share"),
        reader.get("budget_policy.final_overhead_s"),
    )
    least = overhead / share  # the final stage's share must hold its overhead, before any epoch
    if seconds < least and reader.get("final.enabled"):
        raise ConfigError(
            f"budget={budget!r}: the final stage's share ({share}) must hold at least "
            f"budget_policy.final_overhead_s={overhead:g}; give budget={least:.0f}s or more"
        )
    if reader.get("tuner.cv_folds", 1) not in (None, 1):
        # A k-fold trial trains k models; the budget's estimate counts one per trial.
        raise ConfigError("budget with tuner.cv_folds: time one trial's folds, not k of them")


def _check_training(reader: _Reader) -> None:
    check_node(reader.cfg.training, TrainingSchema, "training")


def _check_tuner(reader: _Reader) -> None:
    # Which class, and whether it takes every key, is checked where Keras Tuner is imported
    # (`src.search.tuner_factory.tuner_class`): a new tuner is a YAML file naming any Keras
    # Tuner class.
    target = reader.text("tuner._target_")
    if "." not in target:
        raise ConfigError(f"tuner._target_={target!r}: expected a class path (module.Class)")
    reader.one_of("tuner.objective", OBJECTIVES)
    reader.integer("tuner.seed", 0)
    reader.integer("tuner.executions_per_trial", 1)
    reader.integer("tuner.max_retries_per_trial", 0)
    reader.integer("tuner.max_consecutive_failed_trials", 1)
    reader.integer("tuner.max_trials", 1, optional=True)
    # Hyperband's budget, where a tuner has one.
    if reader.get("tuner.max_epochs", None) is not None:
        reader.integer("tuner.max_epochs", 1)
    if reader.get("tuner.factor", None) is not None:
        reader.integer("tuner.factor", 2)
    reader.integer("tuner.search_examples", 10, optional=True)
    _check_optuna_specs(reader)
    _check_cross_validation(reader)
    # The tuner's state lives in the run folder, where a resume and the overwrite guard
    # (`src.search.run_state`) look for it, and where nothing else's files can be wiped.
    directory = reader.text("tuner.directory")
    run_dir = Path(str(reader.get("paths.output_dir"))).resolve()
    resolved = Path(directory).resolve()
    if resolved != run_dir and run_dir not in resolved.parents:
        raise ConfigError(
            f"tuner.directory={directory!r}: must be inside the run folder {run_dir} "
            "(move both with hydra.run.dir=...)"
        )
    project = reader.text("tuner.project_name")
    if project in (".", "..") or Path(project).name != project:
        raise ConfigError(f"tuner.project_name={project!r}: expected a folder name, not a path")


def _check_optuna_specs(reader: _Reader) -> None:
    pruner = _plain(reader.get("tuner.pruner", None))
    if pruner is None and reader.get("tuner.sampler", None) is None:
        return
    from src.search.optuna.specs import OptunaSpecError, make_sampler  # only when named

    try:
        if reader.get("tuner.sampler", None) is not None:
            make_sampler(_plain(reader.get("tuner.sampler")), seed=0)
    except OptunaSpecError as error:
        raise ConfigError(str(error)) from None
    if not _prunes(reader):
        return
    _refuse_if(reader, "pruner")
    if reader.get("tuner.executions_per_trial") != 1:
        # The pruner judges one training curve; a second execution would start over.
        raise ConfigError("tuner.pruner: needs tuner.executions_per_trial=1")


def _check_cross_validation(reader: _Reader) -> None:
    folds = reader.get("tuner.cv_folds", None)
    if folds is None:
        return
    reader.integer("tuner.cv_folds", 1)
    if folds == 1:
        return
    _refuse_if(reader, "cv_folds")
    if _prunes(reader):
        raise ConfigError("tuner.cv_folds: a pruner judges one training curve, not k folds")


def _prunes(reader: _Reader) -> bool:
    """Whether ``tuner.pruner`` names a pruner (a bad spec is a `ConfigError`)."""
    pruner = _plain(reader.get("tuner.pruner", None))
    if pruner is None:
        return False
    from src.search.optuna.specs import OptunaSpecError, make_pruner  # only when named

    try:
        return make_pruner(pruner) is not None
    except OptunaSpecError as error:
        raise ConfigError(str(error)) from None


def _refuse_if(reader: _Reader, option: str, key: str | None = None) -> None:
    """Refuse ``option`` for a tuner that cannot take it (``src.search.capabilities``)."""
    target = str(reader.get("tuner._target_"))
    reason = refusal(target, option)
    if reason:
        raise ConfigError(f"{key or f'tuner.{option}'}: {reason}")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _check_search_space(reader: _Reader) -> None:
    space = reader.get("search_space")
    try:
        validate_search_space(space, IMAGE_SIDE)
    except SearchSpaceError as error:
        raise ConfigError(str(error)) from None
    # Checked here, against the space just validated: a results.json of another space fails
    # in a second, not after TensorFlow has loaded.
    warm_start_for(reader.get("tuner.warm_start", None), space, str(reader.get("tuner._target_")))


def _check_data(reader: _Reader, prefix: str) -> None:
    source = reader.one_of(f"{prefix}.name", DATA_SOURCES)
    reader.integer(f"{prefix}.split_seed", 0)
    reader.integer(f"{prefix}.max_train_examples", 10, optional=True)
    reader.integer(f"{prefix}.max_test_examples", 10, optional=True)
    path = reader.get(f"{prefix}.path")
    if source == "mnist":
        folder = reader.get(f"{prefix}.idx_folder", None)
        if folder is not None and not Path(str(folder)).is_dir():
            raise ConfigError(f"{prefix}.idx_folder={folder!r}: no such folder")
        timeout = reader.get(f"{prefix}.download_timeout_s")
        if not is_number(timeout) or timeout <= 0:
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


EVALUATION_SPLITS = ("test", "development")


def _check_evaluation(reader: _Reader) -> None:
    """``evaluate_on`` and the ``development_digits`` it may read."""
    start = reader.integer("development_digits.start", 0)
    stop = reader.integer("development_digits.stop", start + 1)
    where = reader.one_of("evaluate_on", EVALUATION_SPLITS)
    folder = reader.get("development_digits.folder", None)
    if folder is not None and not Path(str(folder)).is_dir():
        raise ConfigError(f"development_digits.folder={folder!r}: no such folder")
    if where == "development" and reader.get("data.name") == "mnist_10k" and folder is None:
        raise ConfigError(
            f"evaluate_on=development with data=mnist_10k: the bundle lacks digits {start}-"
            f"{stop - 1}; set MNIST_IDX_FOLDER (or development_digits.folder) to the official "
            "IDX files"
        )


def _check_mlflow(reader: _Reader) -> None:
    resume, overwrite = reader.boolean("resume"), reader.boolean("overwrite")
    if resume and overwrite:
        raise ConfigError("resume=true with overwrite=true: continue a search or restart it")
    rerun = reader.get("rerun_trials", None)
    if rerun is not None and rerun != []:
        rerun = list(rerun) if isinstance(rerun, ListConfig) else rerun
        if not isinstance(rerun, list) or not all(
            is_int(t) or (isinstance(t, str) and t.isdigit()) for t in rerun
        ):
            raise ConfigError(f"rerun_trials={rerun!r}: expected a list of trial ids, e.g. [3]")
        if not resume:
            raise ConfigError("rerun_trials: needs resume=true (it reruns a saved search's trials)")
        _refuse_if(reader, "rerun_trials", "rerun_trials")
    check_node(reader.cfg.mlflow, MlflowSchema, "mlflow")


def _check_final(reader: _Reader) -> None:
    check_node(reader.cfg.final, FinalSchema, "final")
    seeds = reader.get("final.seeds", None)
    if seeds is not None and (
        not seeds
        or not all(is_int(seed) and seed >= 0 for seed in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(f"final.seeds={seeds!r}: expected null or a list of distinct seeds >= 0")
    if reader.get("final.ensemble") and len(seeds or [None]) < 2:
        raise ConfigError("final.ensemble=true: needs at least 2 final.seeds to average")
    recorded = reader.get("final.from_results", None)
    if (
        recorded is not None
        and not recorded_file(recorded, reader.get("search_space.name")).is_file()
    ):
        raise ConfigError(f"final.from_results={recorded!r}: no such file")


def _check_distributed(reader: _Reader) -> None:
    check_node(reader.cfg.distributed, DistributedSchema, "distributed")
    role = reader.get("distributed.role")
    if role is not None:
        reader.text("distributed.search_id")
        _refuse_if(reader, "distributed", f"tuner._target_ with distributed.role={role!r}")
