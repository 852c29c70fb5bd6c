"""Provenance: what a run records about where it came from.

The installed versions of the packages that shape a result, the git commit of the code,
and the resolved config flattened to MLflow params, with any password in a URI (a tracking
server's, a database's) replaced by ``***`` wherever a run writes it down.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
# scheme://user:password@host -> scheme://user:***@host
_URI_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URI hidden."""
    return _URI_PASSWORD.sub(r"\g<head>***@", text)


class RedactingFilter(logging.Filter):
    """A logging filter that hides passwords in URIs before a record is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = redact(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


def redact_files(folder: Path) -> None:
    """Hide URI passwords in the YAML files of ``folder`` (Hydra's record of a run, written
    before any code of ours runs), each rewritten whole or not at all."""
    for file in sorted(folder.glob("*.yaml")):
        text = file.read_text()
        hidden = redact(text)
        if hidden != text:
            temporary = file.with_suffix(".tmp")
            temporary.write_text(hidden)
            temporary.replace(file)


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
