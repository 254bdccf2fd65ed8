"""Errors that medssl reports to users as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations


class MedsslError(Exception):
    """Base class of every error medssl raises on purpose for bad input or bad configuration."""


class ConfigError(MedsslError, ValueError):
    """A configuration key, value or component name is invalid; the message names the key."""


class DataError(MedsslError, ValueError):
    """Input data is missing, corrupt or inconsistent; the message names the file or row and the fix."""


class LeakageError(MedsslError):
    """The same participant or study appears in cohorts or splits that must be disjoint."""


class OutputExistsError(MedsslError, FileExistsError):
    """An output already exists and the command was not told to overwrite or resume it."""


class MedsslWarning(UserWarning):
    """Something a user should know but that does not stop the run; the CLI prints it as one line."""
