"""Passwords in URIs (a tracking server's, a database's) are never written down.

Every place a run writes text (the log, Hydra's record of the run, MLflow params and
artifacts, error messages) passes it through `redact` first.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

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
