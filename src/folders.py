"""Whether a folder can be written, asked before anything is started or written there."""

from __future__ import annotations

import tempfile
from pathlib import Path


def unwritable_reason(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (or, where it does not exist yet, in the
    nearest folder above it that does, where it would be created); None where one can.

    A file is really created and removed: permission bits say nothing of a read-only
    mount, a full disk or a file where a folder should be.
    """
    existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return "not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None
