"""Errors the harness raises; ``python experiments/run.py`` prints them as one line.

Example:
    >>> import lemonkit
    >>> issubclass(DataMissingError, HarnessError), issubclass(HarnessError, lemonkit.LemonkitError)
    (True, True)
"""

from lemonkit import LemonkitError


class HarnessError(LemonkitError):
    """An experiment cannot run as configured: a bad config, a missing run it depends on."""


class DataMissingError(HarnessError):
    """A config's data folder is not there (its Debian package is not installed, or the
    environment variable that points at a copy is not set)."""


class StaleCheckpointError(HarnessError, ValueError):
    """A run's leftover checkpoint was written under other settings (delete it, or
    ``--force``)."""
