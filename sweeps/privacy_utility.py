"""Privacy–utility sweep of fedsim methods with Ray Tune: balanced accuracy vs ε, α and λ.

Subcommands: ``run`` (the default) runs the grid and writes results.parquet, summary.md and
plots/ under --out (rerun the same command to resume an interrupted sweep); ``plot``
redraws plots and summary.md from results.parquet.

Locally::

    python -m sweeps.privacy_utility --epsilons 1 8 inf --alphas 0.3 iid --seeds 0 1

On a Ray cluster (RAY_ADDRESS, or the cluster of ``ray submit``)::

    ray submit sweeps/cluster.yaml sweeps/privacy_utility.py -- --out /home/ubuntu/sweeps-out/pu
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

if __name__ == "__main__":
    # Run as a file (``python sweeps/privacy_utility.py``, ``ray submit``): Python put this
    # file's folder first on sys.path, where module names like ``grid`` or ``plots`` could
    # shadow others; drop it, and make the checkout importable when the package is not installed.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    if (_here.parent / "sweeps" / "__init__.py").is_file() and (_here.parent / "fedsim").is_dir():
        sys.path.insert(0, str(_here.parent))

from fedsim.errors import execute  # noqa: E402
from sweeps.options import PlotOptions, RunOptions  # noqa: E402

SUBCOMMANDS: dict[str, Callable[..., Any]] = {"run": RunOptions, "plot": PlotOptions}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    import tyro

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        args = ["run", *args]
    command = tyro.extras.subcommand_cli_from_dict(SUBCOMMANDS, args=args, prog="python -m sweeps.privacy_utility",
                                                   description=__doc__.split("\n\n")[0])
    return execute(command, "interrupted: rerun the same command to continue the sweep.")


if __name__ == "__main__":
    sys.exit(main())
