"""The project's errors: each one a user can act on, with a one-line message.

Every stage raises a subclass of `ProjectError`; ``src.run`` turns any of them into
``error: <message>`` and exit status 1, so a new stage's errors need no new handler there.
"""

from __future__ import annotations


class ProjectError(Exception):
    """A failure the user can fix; the message is one line naming what was wrong."""


class ConfigError(ProjectError, ValueError):
    """A configuration value that cannot work; the message names the key and the value."""


class DataError(ProjectError, RuntimeError):
    """Data that cannot be loaded as configured; the message says which file and why."""


class DistributedError(ProjectError):
    """A distributed search that cannot start or continue as configured."""


class SearchFailed(ProjectError, RuntimeError):
    """The search produced no usable result (every trial failed, or Keras Tuner gave up)."""


class PromotionLockTimeout(ProjectError, TimeoutError):
    """Another final stage held the promotion lock for longer than the wait allowed."""


class StoreError(ProjectError):
    """An MLflow store (or its artifact location) that cannot be used; found before the
    search starts, and named with what to do."""
