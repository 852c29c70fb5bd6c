"""Keras Tuner's distributed mode: one chief serves the oracle, workers run the trials.

Keras Tuner does the distribution itself (``keras_tuner/src/distribute``): a process whose
``KERASTUNER_TUNER_ID`` contains ``chief`` serves the oracle over gRPC at
``KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT``; every other process with those variables
asks it for trials. This module adds what the library leaves out:

- `configure_role`: the ``distributed.role`` switch, checked against those variables, so
  that a stray variable never turns a plain run into a worker (or the reverse) silently;
- `wait_for_chief`: Keras Tuner's client waits up to an hour for the chief, silently; a
  worker started first waits a bounded time here, and says what it is waiting for;
- `serve_oracle`: Keras Tuner's ``oracle_chief.start_server`` waits forever for a worker
  that died mid-trial (the trial stays in ``oracle.ongoing_trials`` and ``exit_chief``
  never holds). This loop is the same, plus a way out: SIGUSR1 (sent by the supervisor in
  ``src.scaleout.cluster`` once every worker has exited, or by an operator) fails the orphaned
  trials with a clear message and lets the chief finish with the trials that completed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from concurrent import futures
from typing import Any

from src.errors import DistributedError

log = logging.getLogger(__name__)

TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
CHIEF_ID = "chief"
ROLES = ("chief", "worker")
# How often the chief checks whether the search is over (Keras Tuner's own loop: 20 s).
_POLL_S = 0.5


def configure_role(distributed: Mapping[str, Any]) -> str | None:
    """Check ``distributed.role`` against Keras Tuner's variables; return the role.

    A chief without ``KERASTUNER_TUNER_ID`` gets ``chief``. Raises `DistributedError` with
    one line naming what is missing or contradictory.
    """
    role = distributed.get("role")
    variables = [name for name in (ORACLE_IP, ORACLE_PORT, TUNER_ID) if os.environ.get(name)]
    if role is None:
        if ORACLE_IP in variables:
            raise DistributedError(
                f"{ORACLE_IP} is set but distributed.role is not: pass distributed.role=chief "
                f"or distributed.role=worker, or unset {ORACLE_IP}"
            )
        return None
    missing = [name for name in (ORACLE_IP, ORACLE_PORT) if name not in variables]
    if missing:
        raise DistributedError(
            f"distributed.role={role} needs {' and '.join(missing)} (the chief's address)"
        )
    port = os.environ[ORACLE_PORT]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"{ORACLE_PORT}={port!r} is not a port number")
    if role == "chief":
        os.environ.setdefault(TUNER_ID, CHIEF_ID)
        if CHIEF_ID not in os.environ[TUNER_ID]:
            raise DistributedError(
                f"distributed.role=chief but {TUNER_ID}={os.environ[TUNER_ID]!r}: Keras Tuner "
                f"treats a process as the chief only if its id contains {CHIEF_ID!r}"
            )
    elif not os.environ.get(TUNER_ID) or CHIEF_ID in os.environ[TUNER_ID]:
        raise DistributedError(
            f"distributed.role=worker needs {TUNER_ID}: a name of its own without "
            f"{CHIEF_ID!r} (for example worker-0), kept when the worker is restarted"
        )
    return role


def chief_address() -> str:
    """``ip:port`` of the chief's oracle, from Keras Tuner's variables."""
    return f"{os.environ[ORACLE_IP]}:{os.environ[ORACLE_PORT]}"


def tuner_id() -> str:
    """This process's Keras Tuner id (``tuner0`` outside distributed mode, as in Keras Tuner)."""
    return os.environ.get(TUNER_ID, "tuner0")


def wait_for_chief(timeout_s: float) -> None:
    """Block until the chief's oracle accepts connections, at most ``timeout_s`` seconds."""
    import grpc

    address = chief_address()
    log.info("worker %s: waiting for the chief at %s (up to %ds)", tuner_id(), address, timeout_s)
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise DistributedError(
                f"no chief answered at {address} within {timeout_s:g}s "
                "(distributed.chief_timeout_s): start the chief first, or check the address"
            ) from None
    log.info("worker %s: connected to the chief at %s", tuner_id(), address)


_RELEASE = threading.Event()


def arm_release_signal() -> threading.Event:
    """Make SIGUSR1 set the chief's release event (see the module docstring), instead of
    killing the process: armed first thing, so that a release sent while the chief is
    still starting up waits for the serving loop."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: _RELEASE.set())
    return _RELEASE


def serve_oracle(oracle: Any) -> None:
    """Serve ``oracle`` to the workers until the search is over; Keras Tuner's chief loop
    with a way out for trials whose worker never comes back (see the module docstring)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = chief_address()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise DistributedError(f"the chief cannot listen on {address} (is the port in use?)")
    release = arm_release_signal()  # already armed at start-up by src.run; idempotent
    server.start()
    log.info("chief: serving the oracle at %s (pid %d)", address, os.getpid())
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            if release.is_set():
                fail_orphaned_trials(oracle)
                break
            time.sleep(_POLL_S)
    finally:
        server.stop(grace=None)


def fail_orphaned_trials(oracle: Any) -> list[str]:
    """End every trial still held by a worker as FAILED; returns their ids."""
    from keras_tuner.engine.trial import TrialStatus

    orphaned = list(oracle.ongoing_trials.items())
    for worker, trial in orphaned:
        trial.status = TrialStatus.FAILED
        trial.message = f"worker {worker} stopped during this trial and did not come back"
        oracle.end_trial(trial)  # also removes it from ongoing_trials
    # Ids that asked for a trial but never heard "stop" would keep Keras Tuner's chief up.
    oracle.tuner_ids.clear()
    ids = [trial.trial_id for _, trial in orphaned]
    log.warning(
        "chief: released; %s; finishing with the %d trials that exist",
        f"trials {', '.join(ids)} failed (their workers are gone)" if ids else "no trial open",
        len(oracle.trials),
    )
    return ids
