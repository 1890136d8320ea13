"""``python -m fedsim.run``: the command-line entry point (tyro).

Subcommands (each a frozen dataclass in :mod:`fedsim.commands`):

* ``train``  run one federation (default when no subcommand is given),
* ``data``   show and write a dataset's client partition,
* ``table``  the paper's Table-1 protocol over methods, partitions and seeds,
* ``embed``  turn images into embeddings with a frozen foundation encoder.

User errors (:class:`fedsim.errors.UserError`) print one sentence and exit with
code 2, without a traceback.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import tyro

from fedsim.commands.data import DataCommand
from fedsim.commands.embed import EmbedCommand
from fedsim.commands.table import TableCommand
from fedsim.commands.train import TrainCommand
from fedsim.errors import execute

SUBCOMMANDS: dict[str, Callable[..., Any]] = {
    "train": TrainCommand,
    "data": DataCommand,
    "table": TableCommand,
    "embed": EmbedCommand,
}


TABLE_SHORTCUTS = {"--dataset": "--run.data.dataset"}
"""``table`` options spelled as in ``train``: ``table --dataset digits`` is ``table --run.data.dataset digits``."""


def table_shortcut(arg: str) -> str:
    """``arg`` with a :data:`TABLE_SHORTCUTS` option name replaced (``--dataset x`` and ``--dataset=x``)."""
    name, separator, value = arg.partition("=")
    return TABLE_SHORTCUTS.get(name, name) + separator + value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        args = ["train", *args]  # no subcommand: the main job, FedHypeVAE training
    if args[0] == "table":
        args = [table_shortcut(arg) for arg in args]
    command = tyro.extras.subcommand_cli_from_dict(
        SUBCOMMANDS,
        args=args,
        prog="python -m fedsim.run",
        description=__doc__.split("\n\n")[0],
    )
    return execute(command)


if __name__ == "__main__":
    sys.exit(main())
