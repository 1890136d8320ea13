"""``python -m fedsim.run table``: the paper's Table-1 protocol (issue 4, in progress)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableCommand:
    """Run methods × partitions × seeds and write the paper's Table 1 (not available yet)."""

    def execute(self) -> int:
        from fedsim.errors import UserError

        raise UserError("the table command is not available in this version; run `python -m fedsim.run train` per configuration.")
