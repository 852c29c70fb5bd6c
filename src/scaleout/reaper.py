"""Run one command so that it cannot outlive the process that started it.

    python -m src.scaleout.reaper [--signal INT] [--grace 15] -- COMMAND [ARG ...]

`Service` starts every server and search process through this shim, in a process group of
its own. Linux's parent-death signal (``PR_SET_PDEATHSIG``) reaches only a direct child,
and the programs started here have children of their own (``mlflow server`` runs uvicorn;
PostgreSQL its backends), so the shim takes the signal for them: when its parent dies
(even by SIGKILL), when the terminal hangs up, or when it is asked to stop, it sends the
command's stop signal to the whole group, waits ``--grace`` seconds, then SIGKILLs the
group (itself included). SIGUSR1 and SIGUSR2 are passed on to the command (the chief's
release signal reaches the chief). The command's own exit code is passed on otherwise.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class _Stop(Exception):
    """The shim was told to stop (or its parent died)."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when the thread that started it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.scaleout.reaper")
    parser.add_argument("--signal", default="TERM", help="the command's stop signal")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds before SIGKILL")
    parser.add_argument("--parent", type=int, help="the pid that must be alive (default: ours)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")
    stop_signal = signal.Signals[f"SIG{args.signal.upper().removeprefix('SIG')}"]
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _stop)
    running: list[subprocess.Popen[bytes]] = []
    for sig in _FORWARDED_SIGNALS:  # messages for the command (the chief's release signal)
        signal.signal(sig, lambda signum, frame: [c.send_signal(signum) for c in running])
    die_with_parent(signal.SIGTERM)
    if args.parent is not None and os.getppid() != args.parent:
        return 1  # the parent died before the parent-death signal was armed
    child: subprocess.Popen[bytes] | None = None
    try:
        # In our process group; it dies too if this shim is SIGKILLed.
        child = subprocess.Popen(command, preexec_fn=lambda: die_with_parent(stop_signal))
        running.append(child)
        code = child.wait()
    except _Stop:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # from here on, nothing cuts the cleanup short
        group = os.getpgrp()
        os.killpg(group, stop_signal)
        deadline = time.monotonic() + args.grace
        while time.monotonic() < deadline and child is not None and child.poll() is None:
            time.sleep(0.1)
        os.killpg(group, signal.SIGKILL)  # whatever is left of the group, this shim too
        return 1  # not reached
    if code < 0:  # the command died of a signal: so does the shim, for whoever watches it
        if -code != signal.SIGKILL:  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main())
