"""The run folder's guard: a search's saved state is never wiped, or mixed, silently.

Keras Tuner keeps a search's state (``oracle.json``, one folder per trial) in the run
folder and, with ``overwrite=True``, deletes it at the start of the next search there. A
new run into a folder holding a search is therefore refused unless ``resume=true``
(continue it) or ``overwrite=true`` (start afresh); ``resume=true`` needs saved state; and
a resume must run the configuration the search started with, or the trials before and
after the interruption would answer different questions. A resume may also run chosen
trials again (``rerun_trials``), through Keras Tuner's own retry queue: the queue that
reruns a failed trial with the same hyperparameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.config.secrets import redact
from src.errors import ConfigError

# The configuration a search started with, beside its state.
CONFIG_SNAPSHOT = "search_config.yaml"
# Keys a resume may change: they say how to run, not what the search is.
RESUMABLE_KEYS = ("resume", "overwrite", "rerun_trials")


def state_folder(cfg: DictConfig) -> Path:
    """The folder that holds the tuner's state (``tuner.directory/tuner.project_name``)."""
    return Path(str(cfg.tuner.directory)) / str(cfg.tuner.project_name)


def check_run_folder(cfg: DictConfig) -> None:
    """Refuse a run that would wipe or mix a saved search; record the configuration.

    Args:
        cfg: The validated root config of a search's chief or single process.

    Raises:
        ConfigError: the folder holds a search and neither ``resume`` nor ``overwrite`` is
            set; ``resume`` with no saved search; or a resume whose configuration differs
            from the saved one (naming the first differing key).
    """
    state = state_folder(cfg)
    has_state = (state / "oracle.json").is_file()
    snapshot = Path(str(cfg.paths.output_dir)) / CONFIG_SNAPSHOT
    # Passwords in URIs are not written down here either (src.config.secrets.redact).
    snapshot_text = redact(OmegaConf.to_yaml(OmegaConf.create(_comparable(cfg))))
    current = OmegaConf.to_container(OmegaConf.create(snapshot_text))
    if cfg.resume:
        if not has_state:
            raise ConfigError(f"resume=true: no saved search in {state} (nothing to continue)")
        check_saved_state(state)
        if snapshot.is_file():
            key = first_difference(OmegaConf.to_container(OmegaConf.load(snapshot)), current)
            if key is not None:
                raise ConfigError(
                    f"resume=true: {key} differs from the saved search's configuration "
                    f"({snapshot}); resume with the same settings, or start a new run"
                )
        rerun = [str(trial_id) for trial_id in cfg.get("rerun_trials") or []]
        if rerun:
            queue_for_rerun(state, rerun)
        if snapshot.is_file():
            return
    elif has_state and not cfg.overwrite:
        raise ConfigError(
            f"{state} already holds a search: add resume=true to continue it, "
            "overwrite=true to start it afresh, or choose another hydra.run.dir"
        )
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    temporary = snapshot.with_suffix(".tmp")
    temporary.write_text(snapshot_text)
    temporary.replace(snapshot)  # never a half-written snapshot


def check_saved_state(state: Path) -> None:
    """Refuse to resume from saved state Keras Tuner or Optuna would fail on mid-search.

    Keras Tuner reads ``oracle.json``, ``tuner0.json`` and every ``trial_*/trial.json`` as
    it resumes, and fails with a bare ``JSONDecodeError`` (naming no file) on a damaged
    one, or with a ``KeyError`` once the search ends when a trial that ``oracle.json``
    names has no folder, after training the interrupted trial again. Checked here before
    anything trains, naming the file.

    Raises:
        ConfigError: a file that does not parse, or a trial's folder that is missing.
    """
    ways_out = "restore it from a copy, or run with overwrite=true to start the search afresh"
    oracle = _json_file(state / "oracle.json", ways_out)
    for path in sorted(state.glob("tuner*.json")):
        # Keras Tuner's Tuner.get_state() is empty for every tuner here: nothing is lost.
        _json_file(path, f"write {{}} into it (these tuners keep no state there), {ways_out}")
    recorded = {
        path.parent.name.removeprefix("trial_") for path in state.glob("trial_*/trial.json")
    }
    for path in sorted(state.glob("trial_*/trial.json")):
        _json_file(path, ways_out)
    named = {*oracle.get("start_order", []), *oracle.get("end_order", [])}
    named |= set((oracle.get("ongoing_trials") or {}).values())
    missing = sorted(str(trial_id) for trial_id in named - recorded)
    if missing:
        raise ConfigError(
            f"resume=true: {state / 'oracle.json'} names trial {missing[0]}, but "
            f"{state / f'trial_{missing[0]}' / 'trial.json'} is missing (and with it the "
            f"trial's hyperparameters, so it cannot be rerun); {ways_out}"
        )
    journal = state / "optuna.journal"
    if journal.is_file():
        _journal(journal, ways_out)


def queue_for_rerun(state: Path, trial_ids: list[str]) -> None:
    """Put saved trials back on Keras Tuner's retry queue, so that the resumed search runs
    each again, with its recorded hyperparameters, before any new trial.

    The queue is Keras Tuner's own (``Oracle.create_trial`` takes it first, the way it
    reruns a failed trial); a queued trial leaves the oracle's ``end_order`` and loses its
    score and metrics, so that the rerun's are the only ones. Its earlier MLflow run goes
    to the trash when it starts again (``src.tracking.tracker``). Written atomically.

    Args:
        state: The tuner's state folder (checked by `check_saved_state`).
        trial_ids: Trial ids as Keras Tuner writes them ("03") or as numbers ("3").

    Raises:
        ConfigError: an id the saved search does not hold.
    """
    oracle_path = state / "oracle.json"
    oracle = json.loads(oracle_path.read_text())
    known = {path.parent.name.removeprefix("trial_") for path in state.glob("trial_*/trial.json")}
    queue = list(oracle.get("retry_queue") or [])
    for wanted in trial_ids:
        trial_id = next((k for k in sorted(known) if _same_id(k, wanted)), None)
        if trial_id is None:
            raise ConfigError(
                f"rerun_trials: the saved search in {state} has no trial {wanted!r} "
                f"(it has {', '.join(sorted(known)) or 'none'})"
            )
        if trial_id in queue or trial_id in (oracle.get("ongoing_trials") or {}).values():
            continue  # already to be run again
        trial_path = state / f"trial_{trial_id}" / "trial.json"
        trial = json.loads(trial_path.read_text())
        trial.update(status="RUNNING", score=None, best_step=0, message=None)
        trial["metrics"] = {"metrics": {}}
        _write_json(trial_path, trial)
        oracle["end_order"] = [t for t in oracle.get("end_order", []) if t != trial_id]
        # Keras Tuner pops the queue from its end: what it already holds runs first, then
        # these trials in the order named.
        queue.insert(0, trial_id)
    oracle["retry_queue"] = queue
    _write_json(oracle_path, oracle)


def _same_id(saved: str, wanted: str) -> bool:
    if saved == wanted:
        return True
    return saved.isdigit() and wanted.isdigit() and int(saved) == int(wanted)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)


def _json_file(path: Path, ways_out: str) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not valid JSON"
        raise ConfigError(f"resume=true: {path} is damaged ({reason}); {ways_out}") from None
    if not isinstance(record, dict):
        raise ConfigError(f"resume=true: {path} is damaged (not a JSON object); {ways_out}")
    return record


def _journal(path: Path, ways_out: str) -> None:
    """Optuna's journal is one JSON operation per line, replayed on load: a line cut short
    (a full disk, a copy interrupted) would fail the study's reload."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"resume=true: {path} cannot be read ({error}); {ways_out}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            raise ConfigError(
                f"resume=true: {path} is damaged at line {number} of {len(lines)} (not valid "
                f"JSON: cut short?); {ways_out}"
            ) from None


def _comparable(cfg: DictConfig) -> dict[str, Any]:
    values = OmegaConf.to_container(cfg, resolve=True)
    for key in RESUMABLE_KEYS:
        values.pop(key, None)
    return values


def first_difference(saved: Any, current: Any, prefix: str = "") -> str | None:
    """The dotted key of the first value that differs between two nested configs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in current:
                return name
            found = first_difference(saved[key], current[key], name)
            if found is not None:
                return found
        return None
    return None if saved == current else (prefix or "(the whole config)")
