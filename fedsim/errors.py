"""User-facing errors.

A :class:`UserError` is bad input (a file, column, client or option that is not
valid).  Its message is one sentence that names what is wrong and what would be
valid; the CLI prints it without a traceback and exits with code 2.
"""


class UserError(Exception):
    """Bad input from the user: printed as one sentence, CLI exit code 2."""


def execute(command, interrupted: str = "interrupted") -> int:
    """Run a parsed CLI command (``command.execute()``) and return the process exit code:
    its own (0 by default); 2 with one printed sentence for a :class:`UserError`; 130
    with ``interrupted`` printed on Ctrl-C; 0 when stdout is a closed pipe (``| head``)."""
    import sys

    try:
        return int(command.execute() or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
