"""The privacy ledger: one row per client with every parameter of its accounting.

Printed at the end of a run and saved as ``privacy.json``.  ε values come from the
client's :class:`~fedsim.privacy.accounting.ClientAccountant`; ``epsilon_total`` is the
accountant's ε for the client's whole mixed history (DP-SGD and the statistics
release composed), not a sum of the parts.  Every row and the document name the
noise source (:func:`~fedsim.privacy.secure_noise.noise_label`) and the neighbouring
relation (:func:`~fedsim.privacy.coverage.neighbouring_relation`: add/remove with the
public bound ``max_records``) and where the statistics' noise is placed (with
``--privacy.noise-placement aggregate`` the note says the statistics' ε holds only against
a party that sees the sum of ≥ m_min clients' releases, :mod:`fedsim.privacy.aggregate`); with ``--privacy.reproducible-noise`` the note says the ε
is not a DP guarantee, and a client that ended above its target is named (``ABOVE TARGET``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: reading a ledger needs no accountant
    from fedsim.privacy.state import PrivacyState

from fedsim.privacy.aggregate import AGGREGATE_NOTE, client_noise_multiplier
from fedsim.privacy.coverage import neighbouring_relation
from fedsim.privacy.secure_noise import REPRODUCIBLE_NOISE_LABEL, REPRODUCIBLE_NOISE_NOTE, noise_label

PAPER_MODE_NOTE = (
    "privacy_mode=paper: the encoder and client code are trained on data without noise "
    "(Eq. 8); the reported epsilon covers only the noised gradients, NOT the local state "
    "that later releases depend on, so it is not a formal guarantee."
)
NO_DP_NOTE = "epsilon=inf: no differential privacy."


@dataclass(frozen=True)
class ClientPrivacyRecord:
    """Everything needed to re-check one client's ε."""

    client_id: int
    privacy_mode: str
    accountant: str
    delta: float
    clip_norm: float
    sample_rate: float
    noise_multiplier: float
    steps: int
    epsilon_dp_sgd: float
    stats_noise_multiplier: float | None
    stats_clip_norm: float | None
    epsilon_statistics: float
    epsilon_total: float
    target_epsilon: float
    history: tuple[tuple[float, float, int], ...]
    noise: str
    """Where the DP noise and sampling came from (``noise_label``)."""
    neighbouring: str = ""
    """The neighbouring relation ε is stated for (:func:`~fedsim.privacy.coverage.neighbouring_relation`)."""
    max_records: int | None = None
    """The public bound on the client's records its plan used (None without DP)."""
    reserved_rounds: int = 0
    """Rounds the calibration reserved for rounds charged again after a failure."""
    stats_noise_placement: str = "client"
    """Where the statistics release's noise is placed (``--privacy.noise-placement``):
    ``client`` (the client's release carries ``stats_noise_multiplier``) or ``aggregate``
    (only the server's sum of ≥ ``min_cohort`` releases does; :mod:`fedsim.privacy.aggregate`).
    DP-SGD is always ``client``."""
    min_cohort: int | None = None
    """``aggregate``: the m_min the client's noise share σ_st/√m_min was calibrated for."""
    stats_client_noise_multiplier: float | None = None
    """The noise multiplier of the noise the client itself added to its statistics
    (``stats_noise_multiplier``/√m_min at ``aggregate`` placement)."""

    @property
    def covers_local_state(self) -> bool:
        return self.privacy_mode == "strict"


def above_target(record: ClientPrivacyRecord) -> bool:
    """The client's composed ε ended above its target (rounds charged again after a
    failure in its last round: the steps were run, so the ledger reports them)."""
    return record.epsilon_total > record.target_epsilon * (1 + 1e-6)


def ledger_note(records: list[ClientPrivacyRecord]) -> str:
    """The caveat that every output of a run must carry ('' when there is none)."""
    if any(math.isinf(r.target_epsilon) for r in records):
        return NO_DP_NOTE
    notes = []
    over = [r.client_id for r in records if above_target(r)]
    if over:
        notes.append(f"ABOVE TARGET: client(s) {', '.join(map(str, over))} ended above the target epsilon "
                     "(rounds charged again after a failure beyond --privacy.reserved-rounds).")
    if any(not r.covers_local_state for r in records):
        notes.append(PAPER_MODE_NOTE)
    if any(r.noise == REPRODUCIBLE_NOISE_LABEL for r in records):
        notes.append(REPRODUCIBLE_NOISE_NOTE)
    cohorts = sorted({r.min_cohort for r in records
                      if r.stats_noise_placement == "aggregate" and r.min_cohort is not None})
    if cohorts:
        notes.append(AGGREGATE_NOTE.format(cohort="/".join(map(str, cohorts))))
    return " ".join(notes)


def ledger_noise(records: list[ClientPrivacyRecord]) -> str:
    """The run's noise source: one label, or the clients' labels joined by ' / '."""
    return " / ".join(sorted({r.noise for r in records}))


def _json_number(value: object) -> object:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def ledger_to_json(records: list[ClientPrivacyRecord]) -> dict[str, Any]:
    """The JSON document written to ``privacy.json``."""
    rows = []
    for record in records:
        row = {key: _json_number(value) for key, value in asdict(record).items()}
        row["history"] = [list(entry) for entry in record.history]
        row["covers_local_state"] = record.covers_local_state
        rows.append(row)
    return {
        "unit": "one embedding record of one client (sample-level DP per client)",
        "epsilon_max": _json_number(max((r.epsilon_total for r in records), default=0.0)),
        "note": ledger_note(records),
        "noise": ledger_noise(records),
        "neighbouring": " / ".join(sorted({r.neighbouring for r in records})),
        "clients": rows,
    }


def format_ledger(records: list[ClientPrivacyRecord]) -> str:
    """A fixed-width text table of the ledger."""
    header = (f"{'client':>6} {'mode':>6} {'acct':>4} {'q':>7} {'sigma':>7} {'steps':>6} "
              f"{'C':>5} {'eps_sgd':>8} {'sigma_st':>8} {'eps_st':>7} {'eps':>7} {'delta':>8}")
    lines = [header, "-" * len(header)]

    def num(value: float | None, width: int, digits: int = 3) -> str:
        if value is None:
            return f"{'-':>{width}}"
        if isinstance(value, float) and math.isinf(value):
            return f"{'inf':>{width}}"
        return f"{value:>{width}.{digits}f}"

    for r in records:
        lines.append(
            f"{r.client_id:>6} {r.privacy_mode:>6} {r.accountant:>4} {num(r.sample_rate, 7)} "
            f"{num(r.noise_multiplier, 7)} {r.steps:>6} {num(r.clip_norm, 5, 2)} "
            f"{num(r.epsilon_dp_sgd, 8)} {num(r.stats_noise_multiplier, 8)} "
            f"{num(r.epsilon_statistics, 7)} {num(r.epsilon_total, 7)} {r.delta:>8.1e}"
        )
    lines.append("noise: " + ledger_noise(records))
    lines.append("neighbouring: " + " / ".join(sorted({r.neighbouring for r in records})))
    note = ledger_note(records)
    if note:
        lines.append("NOTE: " + note)
    return "\n".join(lines)


def privacy_record(client_id: int, privacy_state: PrivacyState, stats_noise_multiplier: float | None,
                   stats_clip_norm: float | None, min_cohort: int = 1) -> ClientPrivacyRecord:
    """The ledger row of one client (shared by every private algorithm); ``min_cohort``:
    the m_min of its statistics' noise share (1 with ``client`` placement)."""
    privacy, plan, accountant = privacy_state.privacy, privacy_state.plan, privacy_state.accountant
    private = privacy.private
    aggregate = private and privacy.noise_placement == "aggregate" and stats_noise_multiplier is not None
    return ClientPrivacyRecord(
        client_id=client_id,
        privacy_mode=privacy.privacy_mode if private else "none",
        accountant=privacy.accountant,
        delta=privacy.delta,
        clip_norm=privacy.clip_norm,
        sample_rate=plan.sample_rate if plan is not None else 0.0,
        noise_multiplier=plan.noise_multiplier if plan is not None else 0.0,
        steps=accountant.dp_sgd_steps() if private else 0,
        epsilon_dp_sgd=accountant.epsilon_of_dp_sgd() if private else float("inf"),
        stats_noise_multiplier=stats_noise_multiplier,
        stats_clip_norm=stats_clip_norm if stats_noise_multiplier is not None else None,
        epsilon_statistics=accountant.epsilon_of_release() if private else float("inf"),
        epsilon_total=accountant.epsilon() if private else float("inf"),
        target_epsilon=privacy.epsilon,
        history=tuple(accountant.history),
        noise=noise_label(privacy),
        neighbouring=neighbouring_relation(privacy),
        max_records=plan.num_records if private and plan is not None else None,
        reserved_rounds=privacy.reserved_rounds if private else 0,
        stats_noise_placement="aggregate" if aggregate else "client",
        min_cohort=min_cohort if aggregate else None,
        stats_client_noise_multiplier=(None if stats_noise_multiplier is None
                                       else client_noise_multiplier(stats_noise_multiplier, min_cohort)),
    )
