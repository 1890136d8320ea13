"""``python -m fedsim.audit``: a one-run privacy audit (:mod:`fedsim.audit`).
User errors print one sentence and exit with code 2."""

from __future__ import annotations

import sys
from typing import Sequence

import tyro

from fedsim.audit.command import AuditCommand
from fedsim.errors import execute


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the audit, return the exit code."""
    command = tyro.cli(AuditCommand, args=None if argv is None else list(argv), prog="python -m fedsim.audit")
    return execute(command)


if __name__ == "__main__":
    sys.exit(main())
