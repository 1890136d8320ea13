"""User-facing errors.

A :class:`UserError` is bad input (a file, column, client or option that is not
valid).  Its message is one sentence that names what is wrong and what would be
valid; the CLI prints it without a traceback and exits with code 2.
"""


class UserError(Exception):
    """Bad input from the user: printed as one sentence, CLI exit code 2."""
