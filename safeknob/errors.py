"""User-facing errors: printed as one line by the CLI, with the command that fixes them."""


class UserError(ValueError):
    """Bad input from the user (an argument, a file, a missing prerequisite)."""
