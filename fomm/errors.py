"""User-facing errors.

Everything that is the user's fault (a bad file, a wrong checkpoint, an unwritable path) is raised as a
:class:`FommError` with a message that says what is wrong and what to do. The CLI prints such errors as
one line and exits non-zero; any other exception is a bug in fomm.
"""

from __future__ import annotations


class FommError(Exception):
    """An error caused by input the user can fix; ``str(err)`` is a complete one-line message."""


class InputError(FommError):
    """An input file (image, video, dataset) is missing, unreadable or unsuitable."""


class CheckpointError(FommError):
    """A checkpoint is missing, not a checkpoint, or does not fit the chosen config/model."""


class ConfigError(FommError):
    """A config name/path is unknown or the YAML does not describe a valid model."""


class OutputError(FommError):
    """An output path cannot be written."""
