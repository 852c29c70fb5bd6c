"""Stop requests (SIGTERM, Ctrl-C) that are never lost.

A Python signal handler runs between two bytecodes of whatever is executing; when that is
a finalizer or a weakref callback (TensorFlow runs many), the KeyboardInterrupt it raises is
printed as "Exception ignored" and dropped, and the search goes on as if nothing happened.
So the handler also records the request, and training checks it after every batch
(`src.model.backend.StopWhenAsked`): a stop is honoured within one batch either way.
"""

from __future__ import annotations

import threading
from types import FrameType

_STOP = threading.Event()


def interrupt(signum: int, frame: FrameType | None) -> None:
    """Signal handler: record the stop request, then raise KeyboardInterrupt."""
    _STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


def raise_if_stop_requested() -> None:
    """Raise KeyboardInterrupt if a stop was requested (and perhaps swallowed) earlier."""
    if _STOP.is_set():
        raise KeyboardInterrupt("stop requested")
