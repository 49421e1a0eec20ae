"""User-facing errors: printed as one line by the CLI, with the command that fixes them.

Every error a user can cause or fix (bad input, a missing or stale artifact, a bad env or
layout) subclasses :class:`SafeknobError`; the CLI catches that base alone. Anything else is
a bug and keeps its traceback.
"""


class SafeknobError(Exception):
    """Base of every user-facing error: one line, naming what is wrong and how to fix it."""


class UserError(SafeknobError, ValueError):
    """Bad input from the user (an argument, a file, a missing prerequisite)."""


class ConfigError(UserError):
    """An experiment file or a ``--set`` override is malformed or has unknown keys."""


class ArtifactError(SafeknobError, RuntimeError):
    """A required artifact is missing, corrupt, or from the wrong stage/schema."""
