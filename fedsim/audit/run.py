"""One audited run: a federation of the audited client, its DP-SGD with Dirac gradient
canaries (:mod:`fedsim.audit.canaries`), the scores, the guesses and ``ε_lb``
(:mod:`fedsim.audit.bound`); ``--target statistics`` audits the client's statistics release
instead (:mod:`fedsim.audit.statistics`).

The audit trains the server and **one** client (the federation's client 0) for
``--training.rounds`` rounds exactly as a normal run does (same client class, plan,
optimizer, noise source), except that its trainer is wrapped in
:class:`~fedsim.audit.canaries.AuditedDPTrainer`.  One client suffices: the claimed ε is
per client (sample level), and what other clients send is independent of this one's
records.  The statistics release, finalisation and evaluation are not run: the gradient
audit covers the client's DP-SGD, whose ε share is ``1 − stats_epsilon_fraction`` of the
target for FedHypeVAE; ``claimed_epsilon`` is the ε the client's accountant reports for
the steps run, so the comparison is like for like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedsim.algorithms.registry import RunSettings, method
from fedsim.algorithms.spec import FederationSpec
from fedsim.audit.bound import AuditBound, audit_guesses
from fedsim.audit.canaries import AuditedDPTrainer, GradientCanaries, released_shapes
from fedsim.data.federation import Federation, load_federation
from fedsim.errors import UserError
from fedsim.privacy.dp_trainer import DPTrainer
from fedsim.seeding import numpy_rng


@dataclass(frozen=True)
class AuditResult:
    """Scores, inclusion bits and the bound of one audited run."""

    scores: np.ndarray
    included: np.ndarray
    times_sampled: np.ndarray
    bound: AuditBound
    auc: float
    claimed_epsilon: float
    delta: float
    plan: dict
    """The audited mechanism's public parameters (the DP-SGD plan, or the release's σ_s and R)."""
    steps: int
    num_records: int
    seconds: float
    cpu_seconds: float
    """CPU time of this process (all threads) during the audit: the load-independent figure."""
    target: str = "gradient"
    """What was audited: ``gradient`` (DP-SGD) or ``statistics`` (the class-statistics release)."""


@dataclass(frozen=True)
class AuditedClient:
    """Client 0 of the audited federation, built as a normal run builds it, with its server."""

    federation: Federation
    spec: FederationSpec
    server: Any
    client: Any


def audited_client(command) -> AuditedClient:
    """Load the federation, check the public bound covers client 0's records plus the
    canaries (before any work), and build the server and client 0 of ``--algorithm``."""
    record = method(command.algorithm)
    federation = load_federation(command.data, command.seed)
    check_bound_covers_canaries(command, len(federation.clients[0].x_train))
    spec = FederationSpec(len(federation.clients), federation.num_classes, federation.dim,
                          tuple(federation.class_names))
    settings = RunSettings(command.algorithm, getattr(command, record.field), command.privacy,
                           command.training, command.evaluation, command.seed)
    module = record.implementation()
    return AuditedClient(federation, spec, module.make_server(spec, settings),
                         module.make_client(federation.clients[0], spec, settings))


def roc_auc(scores: np.ndarray, included: np.ndarray) -> float:
    """P[score of an included canary > score of an excluded one] (ties count ½): the
    Mann–Whitney form of the ROC AUC."""
    positive, negative = scores[included], scores[~included]
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))


def run_audit(command) -> AuditResult:
    """Run the audit of ``command`` (a :class:`~fedsim.audit.command.AuditCommand`, validated):
    ``--target gradient`` here, ``--target statistics`` in :mod:`fedsim.audit.statistics`."""
    started, started_cpu = time.perf_counter(), time.process_time()
    audited = None if command.target == "statistics" else audited_client(command)
    trainer = None if audited is None else getattr(audited.client, "trainer", None)
    if audited is None or (command.target == "auto" and not isinstance(trainer, DPTrainer)):
        from fedsim.audit.statistics import run_statistics_audit

        return run_statistics_audit(command)
    federation, server, client = audited.federation, audited.server, audited.client
    if not isinstance(trainer, DPTrainer):
        raise UserError(f"--algorithm {command.algorithm} trains no model by DP-SGD here; the gradient-canary "
                        "audit needs a DP-SGD method (use --target statistics for its statistics release, or "
                        "--fedhypevae.training dp-sgd).")
    shapes = released_shapes(trainer, set(server.broadcast()))
    total = sum(int(np.prod(shape)) for shape in shapes.values())
    if command.canaries > total:
        raise UserError(f"--canaries must be at most {total} (the coordinates the client releases), "
                        f"got {command.canaries}.")
    canaries = GradientCanaries(shapes, command.canaries, numpy_rng(command.seed, "audit-canaries"))
    client.trainer = AuditedDPTrainer(trainer, canaries)
    for round_index in range(command.training.rounds):
        update, _ = client.local_round(server.broadcast(), round_index)
        server.aggregate([update])
    state = client.privacy_state
    bound = audit_guesses(canaries.scores, canaries.included, command.privacy.delta, command.beta)
    return AuditResult(canaries.scores.copy(), canaries.included.copy(), canaries.times_sampled.copy(), bound,
                       roc_auc(canaries.scores, canaries.included), float(state.epsilon()), command.privacy.delta,
                       state.plan.as_dict(), canaries.steps, len(federation.clients[0].x_train),
                       time.perf_counter() - started, time.process_time() - started_cpu)


def check_bound_covers_canaries(command, num_records: int) -> None:
    """With DP, ``UserError`` unless ``--privacy.max-records`` ≥ the audited client's train
    records plus every canary: the plan (q = B/max_records, T, σ) is then the same whichever
    canaries are included, and the bound keeps every real record (no truncation)."""
    needed = num_records + command.canaries
    if command.privacy.private and command.privacy.max_records < needed:
        raise UserError(f"--privacy.max-records must be at least {needed} for this audit (the audited client's "
                        f"{num_records} train records plus --canaries {command.canaries}), got "
                        f"{command.privacy.max_records}.")


def set_threads(threads: int) -> None:
    """``torch.set_num_threads`` unless 0 (all cores)."""
    if threads > 0:
        torch.set_num_threads(threads)
