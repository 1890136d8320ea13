"""What a run's ε covers: the neighbouring relation, the run-level privacy notes and a
structured list of every output with its status.

The ledger (:mod:`fedsim.privacy.ledger`) speaks for the clients' mechanisms; this
module speaks for the *run*: options that read data without noise outside any client's
mechanism, and every file or message the simulator writes.  Each output has one status:

* ``dp`` — the output of an accounted mechanism or a post-processing of such outputs;
* ``dp-aggregate`` — a client's share of an accounted mechanism whose noise is complete
  only in the sum over ≥ m_min clients (``--privacy.noise-placement aggregate``,
  :mod:`fedsim.privacy.aggregate`): covered against a party that sees only that sum
  (secure aggregation), not against one who sees the client's own share;
* ``public-by-assumption`` — computed from public quantities only (configuration,
  the public bound ``--privacy.max-records``, the schedule), public by the protocol;
* ``simulator-side`` — read from private data without noise for the person running the
  simulation (evaluation, diagnostics, timing); a deployment would not release it;
* ``not-covered`` — released in the simulation but not covered by the reported ε
  (the reason says why).

``summary.json``, ``privacy.json`` and the synthetic file's metadata carry
:func:`coverage` (``"coverage"``), :func:`neighbouring_relation` (``"neighbouring"``)
and :func:`run_notes` joined into their ``"note"`` / ``"privacy_note"``.
"""

from __future__ import annotations

from typing import Any

from fedsim.privacy.config import PrivacyConfig

POOLED_TRAIN_NOTE = (
    "data.standardize=pooled-train: every client's features are standardised with the mean and "
    "standard deviation of ALL clients' train records, computed without noise; every output "
    "depends on them, so the reported epsilon does NOT cover this step."
)
GLOBAL_LAMBDA_NOTE = (
    "evaluation.selection=global: one blending weight lambda is chosen on all clients' validation "
    "records without noise; the downstream metrics are simulator-side and not covered by epsilon "
    "(--evaluation.selection per-client keeps each client's choice on its own data)."
)
TRUNCATION_NOTE = (
    "privacy.max_records={bound}: a client with more train records keeps {bound} of them "
    "(a seeded rank per record); for such a client one added or removed record can swap one "
    "kept record, so its guarantee holds for replacing one record (group privacy of 2: "
    "(2 epsilon, (1 + e^epsilon) delta) for add/remove)."
)

DP, PUBLIC, SIMULATOR, NOT_COVERED = "dp", "public-by-assumption", "simulator-side", "not-covered"
DP_AGGREGATE = "dp-aggregate"
STATUSES = (DP, DP_AGGREGATE, PUBLIC, SIMULATOR, NOT_COVERED)


def neighbouring_relation(privacy: PrivacyConfig) -> str:
    """The neighbouring relation ε is stated for (recorded in the ledger)."""
    if not privacy.private:
        return "none (epsilon=inf)"
    return (f"add/remove one record of one client; public bound max_records={privacy.max_records} "
            "per client (DP-SGD plans, Eq. 10 weights and released sizes never read the exact n_i)")


def run_notes(command: Any, truncated_clients: int = 0) -> list[str]:
    """Notes for run options that read data without noise, and for clients that had more
    than ``max_records`` train records (``truncated_clients``); empty when ε = ∞ (the
    ledger then says there is no DP at all)."""
    if not command.privacy.private:
        return []
    notes = []
    if truncated_clients:
        notes.append(TRUNCATION_NOTE.format(bound=command.privacy.max_records))
    if command.data.standardize == "pooled-train":
        notes.append(POOLED_TRAIN_NOTE)
    if command.evaluation.selection == "global":
        notes.append(GLOBAL_LAMBDA_NOTE)
    return notes


def _entry(output: str, status: str, why: str) -> dict[str, str]:
    return {"output": output, "status": status, "why": why}


def coverage(command: Any, releases_synthetic: bool) -> list[dict[str, str]]:
    """Every output of a ``train`` run with its status and why (module docstring)."""
    privacy = command.privacy
    if not privacy.private:
        why = "epsilon=inf: no differential privacy"
        return [_entry(name, NOT_COVERED, why) for name in
                ("client updates", "released statistics and label counts", "synthetic.parquet",
                 "summary.json and clients.parquet", "metrics.parquet")]
    broken = []
    if privacy.reproducible_noise:
        broken.append("the DP noise is rebuilt from the seed in config.json (--privacy.reproducible-noise)")
    if command.data.standardize == "pooled-train":
        broken.append("the features are standardised with pooled train statistics without noise")
    mechanism = NOT_COVERED if broken else DP
    reason = "; ".join(broken)
    entries = [
        _entry("client updates (change of the shared parameters)", mechanism,
               reason or "DP-SGD: Poisson subsampling at q = B/max_records, joint clipping, Gaussian noise, "
               "accounted per client" + (" (the full sigma per client: DP-SGD keeps client placement)"
                                         if privacy.noise_placement == "aggregate" else "")),
        _entry("client updates (sample count, Eq. 10 weights)", mechanism,
               reason or "the sum of the client's DP class counts (DP-CVAE, DP-CGAN) or the public bound "
               "max_records (FedHypeVAE, private FedAvg/FedProx/FedLambda, dp-stats); never the exact n_i"),
        _entry("released class statistics and label counts", mechanism,
               reason or "Gaussian mechanism (q = 1) in the same accountant as DP-SGD"),
    ]
    if privacy.noise_placement == "aggregate" and not broken:
        cohort = "every client" if privacy.min_cohort is None else f"min_cohort={privacy.min_cohort} clients"
        entries[2] = _entry(
            "released class statistics (each client's share; the server pools only their sum)", DP_AGGREGATE,
            f"noise_placement=aggregate: each client adds sigma_st/sqrt(m_min) (m_min = {cohort}), so only the "
            "sum over >= m_min clients carries the accounted sigma_st (Gaussian mechanism, q = 1, same "
            "accountant); covered against a party that sees only that sum (secure aggregation, honest clients "
            "keeping their noise secret), not against one who sees a client's own share; sums of fewer "
            "releases are refused")
    if privacy.privacy_mode == "paper":
        entries[0] = _entry(entries[0]["output"], NOT_COVERED,
                            "privacy_mode=paper: the encoder and client code are trained without noise")
    if releases_synthetic:
        size = ("--training.synthetic-size (public)" if command.training.synthetic_size
                else "the sum of the released DP class counts")
        pooled = (" (of the pooled sum of the statistics, at aggregate placement)"
                  if privacy.noise_placement == "aggregate" else "")
        entries.append(_entry("synthetic.parquet", entries[0]["status"],
                              (entries[0]["why"] if entries[0]["status"] != DP
                               else f"post-processing of the DP releases{pooled}; its size is {size}")))
    entries += [
        _entry("privacy.json", PUBLIC, "plans from public quantities (epsilon, delta, max_records, schedule) "
               "and the accountant's history; rounds charged again after a failure reveal the failure, "
               "not data"),
        _entry("privacy_journal.json (runs with checkpoints)", PUBLIC, "which clients started each round, written before the round "
               "(client participation is scheduled from the seed, not from data); --resume charges from it"),
        _entry("config.json", PUBLIC, "the command line" + (" (its seed rebuilds the DP noise)"
                                                           if privacy.reproducible_noise else "")),
        _entry("summary.json and clients.parquet (downstream metrics)", SIMULATOR,
               "each client's validation and test records read without noise"
               + ("; the global lambda reads all clients' validation records"
                  if command.evaluation.selection == "global" else "")),
        _entry("metrics.parquet (per-round losses, seconds)", SIMULATOR,
               "losses on a fixed subset of each client's train records, wall-clock time; never sent to a server"),
        _entry("checkpoints/", SIMULATOR, "every client's private state (model, optimizer, accountant, its own "
               "statistics release" + (": at aggregate placement a noise share not covered alone, never to be handed "
                                       "to the server" if privacy.noise_placement == "aggregate" else "") + ")"),
        _entry("Ray events and per-client timing (--backend ray)", SIMULATOR,
               "fault and timing reports of the runtime"),
    ]
    return entries
