"""One distributed search on this machine: tracking server, chief, workers, supervised.

    make distributed WORKERS=2            # python -m src.scaleout.cluster --workers 2
    python -m src.scaleout.cluster --workers 2 -- tuner=bayesian tuner.max_trials=12
    python -m src.scaleout.cluster --workers 3 --tracking-uri http://127.0.0.1:5002 -- \
        experiment=quick

It starts, in this order: PostgreSQL and an MLflow tracking server on it
(``src.scaleout.mlflow_server``; skipped with ``--tracking-uri``), then ``python -m
src.run`` as Keras Tuner's chief and as N workers on loopback, each with its own run folder
under ``outputs/distributed/<search id>/``. The chief serves the oracle and opens the MLflow
parent run; the workers run the trials and log them under it; the chief then runs the final
stage once. Every process it started is stopped when it ends, however it ends.

Supervision is the part Keras Tuner leaves to its users: a worker that dies is restarted
under the same ``KERASTUNER_TUNER_ID``, so the oracle hands it back its unfinished trial;
after ``--max-restarts`` deaths it is given up, and once no worker is left the chief is
sent SIGUSR1, which fails the orphaned trials instead of waiting for them forever
(``src.search.distributed``). On one machine a worker should use one thread
(``training.threads=1``, the default here) so that workers do not fight over cores; the
chief, which trains only in the final stage, keeps them all.

Each member process, its log and its restart policy: `src.scaleout.members`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from omegaconf import DictConfig

from src.config.compose import compose_config
from src.scaleout.members import Member, member_command
from src.scaleout.mlflow_server import DEFAULT_ARTIFACTS, tracking_server
from src.scaleout.postgres import DEFAULT_PG_DIR, load_credentials
from src.scaleout.process import (
    ServiceError,
    free_port,
    stop_like_ctrl_c,
    uninterruptible,
)
from src.search.distributed import CHIEF_ID, ORACLE_IP, ORACLE_PORT, TUNER_ID

log = logging.getLogger(__name__)

OUTPUT_ROOT = Path("outputs") / "distributed"


def _check_config(overrides: Sequence[str]) -> DictConfig:
    """Validate the search's config here, before any process starts; return its mlflow node."""
    from src.config.rules import validate_config

    cfg = compose_config(overrides)
    validate_config(cfg)
    return cfg.mlflow


def _prepare_store(tracking_uri: str, mlflow_cfg: DictConfig) -> None:
    """Create the store's tables and the experiment once, before several processes race to."""
    from src.tracking.store import open_store

    open_store(tracking_uri, mlflow_cfg.experiment_name, mlflow_cfg.artifact_location)


class Cluster:
    """The supervisor of one distributed search (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # A random suffix: two searches started in the same second get ids of their own.
        self.search_id = args.search_id or (
            f"{time.strftime('search-%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        )
        self.folder = OUTPUT_ROOT / self.search_id
        self.services = ExitStack()  # the tracking server, stopped after the members
        self.members: list[Member] = []

    def run(self) -> int:
        """Start everything, supervise until the chief ends, stop everything; the exit code."""
        tracking_uri = ""
        try:
            mlflow_cfg = _check_config(self.args.overrides)
        except Exception as error:  # a ConfigError, or Hydra's own for an unknown override
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1
        if self.folder.exists() and "resume=true" not in self.args.overrides:
            print(
                f"error: search id {self.search_id!r} was used before ({self.folder}): add "
                "resume=true to continue that search, or choose another --search-id",
                file=sys.stderr,
            )
            return 1
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            tracking_uri = self.args.tracking_uri or self._start_tracking_server()
            _prepare_store(tracking_uri, mlflow_cfg)
            self._start_members(tracking_uri)
            code = self._supervise()
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            code = 1
        except KeyboardInterrupt:
            log.error("interrupted: stopping the search (its runs end KILLED)")
            code = 130
        finally:
            with uninterruptible():
                self._stop_all()
        if code == 0:
            self._report(tracking_uri)
        return code

    def _start_tracking_server(self) -> str:
        server = tracking_server(
            self.args.pg_dir,
            self.args.artifacts,
            load_credentials(create=True),
            free_port(),
            self.folder / "mlflow-server.log",
        )
        url = self.services.enter_context(server)
        log.info("MLflow tracking server on PostgreSQL at %s", url)
        return url

    def _start_members(self, tracking_uri: str) -> None:
        oracle = {ORACLE_IP: "127.0.0.1", ORACLE_PORT: str(free_port())}
        base_env = {**os.environ, **oracle, "MLFLOW_TRACKING_URI": tracking_uri}
        overrides = list(self.args.overrides)
        # Workers train side by side, one thread each by default; the chief trains only in
        # the final stage, after the workers are done, so it keeps every core.
        worker_overrides = overrides
        if not any(o.startswith("training.threads=") for o in overrides):
            worker_overrides = [*overrides, f"training.threads={self.args.threads}"]
        names = [CHIEF_ID] + [f"worker-{i}" for i in range(self.args.workers)]
        for name in names:
            role = "chief" if name == CHIEF_ID else "worker"
            member_overrides = overrides if role == "chief" else worker_overrides
            member = Member(
                name=name,
                command=member_command(member_overrides, role, self.search_id, self.folder / name),
                env={**base_env, TUNER_ID: name},
                log_path=self.folder / f"{name}.log",
            )
            member.start()
            log.info("started %s (pid %d)", name, member.pid)
            self.members.append(member)

    def _supervise(self) -> int:
        chief, workers = self.members[0], self.members[1:]
        released = False
        while True:
            code = chief.poll()
            if code is not None:
                if code != 0:
                    log.error("the chief exited with %d; see %s", code, chief.log_path)
                return 0 if code == 0 else 1
            for worker in workers:
                worker.check(self.args.max_restarts)
            if not released and all(w.finished or w.given_up for w in workers):
                if any(w.given_up for w in workers):
                    # No worker will come back for the orphaned trials: let the chief finish.
                    log.warning("no worker left; asking the chief to finish without them")
                    os.kill(chief.pid, signal.SIGUSR1)
                released = True
            time.sleep(0.5)

    def _stop_all(self) -> None:
        for member in reversed(self.members):
            if member.service is not None:
                member.service.stop()
        self.services.close()

    def _report(self, tracking_uri: str) -> None:
        results = self.folder / CHIEF_ID / "results.json"
        final = self.folder / CHIEF_ID / "final" / "final.json"
        if results.is_file():
            summary = json.loads(results.read_text())
            best = summary.get("best") or {}
            log.info(
                "search %s: %d trials, best %s=%s (trial %s)",
                self.search_id,
                len(summary["trials"]),
                summary["objective"],
                best.get("score"),
                best.get("trial_id"),
            )
        if final.is_file():
            log.info(
                "final stage: test_accuracy=%s", json.loads(final.read_text()).get("test_accuracy")
            )
        where = tracking_uri
        if not self.args.tracking_uri:  # the server started here is stopped now
            where = "the PostgreSQL store: `make tracking-server`, then http://127.0.0.1:5002"
        log.info(
            "runs in MLflow (tag search_id=%s) in %s; outputs in %s",
            self.search_id,
            where,
            self.folder,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.scaleout.cluster --workers N [options] [-- hydra overrides]``."""
    parser = argparse.ArgumentParser(
        prog="python -m src.scaleout.cluster",
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- are Hydra overrides for the search (as for src.run).",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=2,
        help="restarts of a dying worker before it is given up (default 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="training.threads of each worker unless overridden (default 1)",
    )
    parser.add_argument("--search-id", help="the search's id (default: search-<time>)")
    parser.add_argument(
        "--tracking-uri", help="an MLflow store to use instead of starting PostgreSQL + a server"
    )
    parser.add_argument("--pg-dir", type=Path, default=DEFAULT_PG_DIR)
    parser.add_argument("--artifacts", type=Path, default=DEFAULT_ARTIFACTS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.max_restarts < 0 or args.threads < 1:
        parser.error("--workers and --threads must be >= 1, --max-restarts >= 0")
    logging.basicConfig(level=logging.INFO, format="[cluster] %(message)s")
    # SIGTERM (a scheduler, a test) and SIGHUP (a closed terminal) stop the search like
    # Ctrl-C: every process is stopped. SIGKILL cannot be caught: then each process's
    # reaper shim (`src.scaleout.reaper`) stops it.
    stop_like_ctrl_c()
    return Cluster(args).run()


if __name__ == "__main__":
    sys.exit(main())
