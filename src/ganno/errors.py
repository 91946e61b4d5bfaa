"""ganno's own errors: problems a user can fix, each raised with a message that names the fix.

The ``ganno`` command line prints a :class:`GannoError` as one line (``ganno: error: ...``) and lets
every other exception show its traceback, since anything else is a bug (``ganno --debug`` shows the
traceback of a ``GannoError`` too). Each class also derives from the builtin error it refines, so
``except ValueError`` / ``except FileNotFoundError`` written against earlier versions still works.

This module imports nothing, so the Snakemake workflow and config validation can use it cheaply.
"""

from __future__ import annotations


class GannoError(Exception):
    """A problem with the user's input, files or environment, described with the way to fix it."""


class UsageError(GannoError, ValueError):
    """Command-line arguments that contradict each other or are out of range."""


class ConfigError(GannoError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


class DataError(GannoError, ValueError):
    """A dataset that cannot be used: unknown, badly parameterised, corrupt or inconsistent."""


class DataIntegrityError(DataError):
    """A dataset file or its manifest does not match what it should be (checksum, format)."""


class DatasetMissingError(GannoError, FileNotFoundError):
    """A dataset's files are not on disk."""


class ResultsError(GannoError, ValueError):
    """A results table lacks the columns or rows a report needs."""


class ResultsMissingError(GannoError, FileNotFoundError):
    """A results file a report needs is absent (run the stage that writes it)."""


class OutputError(GannoError, OSError):
    """An output cannot be written (unwritable folder, full disk); nothing partial is left."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)  # one argument: str() is the message, without "[Errno n]"
        self.errno = code


class RunLockedError(GannoError, RuntimeError):
    """Another live process is writing the same run folder."""


class CheckpointError(GannoError, ValueError):
    """A checkpoint exists but does not belong to this run or cannot be read."""


class CheckpointNotFoundError(GannoError, FileNotFoundError):
    """A run folder has no checkpoint."""


class NonFiniteLossError(GannoError, FloatingPointError):
    """The learner produced a NaN or infinite loss; the last good checkpoint is kept."""


class PolicyNotFoundError(GannoError, FileNotFoundError):
    """There is no saved policy at the given path."""


class PolicyLoadError(GannoError, ValueError):
    """A saved policy exists but cannot be read (corrupt, truncated or of another network)."""


class PolicyMismatchError(GannoError, ValueError):
    """A policy and the task it is asked to control disagree (features or actions)."""


class NotebookFailed(GannoError, RuntimeError):
    """A cell of a notebook raised; the partly executed notebook is written beside the output."""


class GannoWarning(UserWarning):
    """Something ganno changed or took over on the user's behalf (a clipped rate, a stale lock);
    the command line prints it as ``ganno: warning: ...``."""


class StepFailedError(GannoError, RuntimeError):
    """A command that a driver runs (a design-study step) failed; its log says why."""
