"""The privacy journal of a run directory: which clients started which round, written
*before* the round runs, so that an interrupted run's ledger can be completed on
``--resume``.

A checkpoint holds every client's accountant as of its round; rounds started after it
may have released updates before the run stopped (a kill in the middle of a round).
``privacy_journal.json`` records, before each round, ``[round_index, [client ids]]``;
:func:`unconfirmed_rounds` counts, per client, the journal's rounds that a checkpoint
of ``rounds_done`` rounds does not contain.  :func:`fedsim.simulation.resume_run` charges
them (a full round each, :func:`fedsim.privacy.recovery.recover_client`) and re-seeds
those clients' noise: the replayed rounds run on fresh noise and are charged again,
and no round released before the crash goes uncharged.  Every start is kept (a round
replayed after a resume and interrupted again is charged once per start).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from fedsim.callbacks import RunCallback
from fedsim.io_utils import write_json_atomic

JOURNAL_NAME = "privacy_journal.json"


def journal_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / JOURNAL_NAME


def read_journal(run_dir: str | Path) -> dict[str, Any]:
    """The journal of ``run_dir`` (empty when the run wrote none)."""
    path = journal_path(run_dir)
    if not path.exists():
        return {"started": [], "resumes": 0}
    journal: dict[str, Any] = json.loads(path.read_text())
    return journal


def unconfirmed_rounds(journal: dict[str, Any], rounds_done: int) -> dict[int, int]:
    """Per client, the rounds it started that a checkpoint after ``rounds_done`` rounds
    does not contain (journal entries with ``round_index ≥ rounds_done``)."""
    counts: Counter[int] = Counter()
    for round_index, ids in journal["started"]:
        if round_index >= rounds_done:
            counts.update(int(i) for i in ids)
    return dict(counts)


class PrivacyJournal(RunCallback):
    """Appends ``[round_index, ids]`` to the run directory's journal before every round
    (module docstring); ``resumed`` counts this start as one more resume."""

    def __init__(self, run_dir: str | Path, resumed: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.journal = read_journal(run_dir)
        if resumed:
            self.journal["resumes"] += 1

    def on_round_start(self, round_index: int, ids: Sequence[int]) -> None:
        self.journal["started"].append([round_index, [int(i) for i in ids]])
        write_json_atomic(self.journal, journal_path(self.run_dir))
