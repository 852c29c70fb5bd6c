"""Provenance: what a run records about where it came from.

The installed versions of the packages that shape a result, the git commit of the code,
and the resolved config flattened to MLflow params (passwords hidden, ``src.config.secrets``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config.secrets import redact

# Tagged on every search (``version.<package>``).
TRACKED_PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "jax",
    "keras",
    "keras-tuner",
    "optuna",
    "mlflow",
    "hydra-core",
)
_PACKAGE_DIR = Path(__file__).resolve().parent


def installed_versions(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each package that is installed."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def flatten_config(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as ``{"training.epochs": "4", ...}``, for MLflow params."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix.rstrip(".")] = redact(str(node))

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def git_commit() -> str:
    """The checkout's commit, or ``unknown`` (an installed wheel, no git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"
