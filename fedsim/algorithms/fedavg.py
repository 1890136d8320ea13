"""FedAvg (McMahan et al. 2017) of a linear classifier on embeddings; the training
shared by FedProx (:mod:`fedsim.algorithms.fedprox`) and FedLambda
(:mod:`fedsim.algorithms.fedlambda`).

Per round each client copies the global model ``w``, runs ``local_epochs × ⌈n_i/B⌉``
steps of SGD (momentum 0.5, weight decay 5e-4, fresh momentum each round) on the
cross-entropy of its train split, and returns ``w_i − w``; the server applies
``w ← w + Σ_i (n_i/Σn)(w_i − w)`` (:func:`~fedsim.algorithms.base.apply_server_step`).
FedProx (Li et al. 2020) adds the proximal term ``(μ/2)‖w_i − w‖²`` to the local
objective; it reads no record, so it is added outside clipping.

Learning rate: the reference steps its schedule per local epoch, so its lr falls
from 1e-3 to 1e-5 by round 8 and the baselines barely train.  fedsim uses a constant
lr = 0.5, chosen on VALIDATION accuracy by ``benchmarks/fedavg_lr.py`` (10 clients,
50 rounds × 1 local epoch, batch 128, IID and Dirichlet α = 0.3).  The best lr scales
like 1/E‖x‖²: on ``synthetic`` (384-d, unit-variance features, ‖x‖² ≈ 384) the best
is 0.1–0.3 and 0.5 is within 0.5 points of it; on ``digits`` (64-d, features in
[0, 1], ‖x‖² ≈ 12) the best is 3 and 0.5 is within 3–5 points; on ``breast-cancer``
0.5 is the best.  lr ≤ 0.03 leaves the model far from converged on both (e.g. 1e-3:
17 % on synthetic, 15 % on digits).  For embeddings of larger norm, lower ``lr``
in proportion.

Privacy: the paper's table releases FedAvg/FedProx updates without DP, so the
default (``private=False``) runs with ε = ∞ whatever ``--privacy.epsilon`` says and
the ledger reads ``epsilon inf / mode none``.  With ``private=True`` every local
step is the shared DP-SGD step (:class:`~fedsim.privacy.dp_trainer.DPTrainer` with ghost
clipping: Poisson batches, joint clipping, σ calibrated for the steps really run) and
the ledger reports the accountant's ε; the client count n_i is then hidden
(``--privacy.max-records``), so Eq. 10's weights are equal (every client sends the
public bound).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import numpy as np
import torch
from torch import Tensor, nn

from fedsim.algorithms.base import ClientUpdate, LocalDiagnostics, SharedStateServer, apply_server_step
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.device import CPU, to_device
from fedsim.evaluation.blend import ClientEvaluation
from fedsim.evaluation.classifier import predict_proba
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_global_only, evaluate_with_global_model
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.models.init import seeded
from fedsim.privacy.clipped_sums import GhostClippedSum, RecordBatch
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_trainer import DPTrainer
from fedsim.privacy.ledger import ClientPrivacyRecord, privacy_record
from fedsim.privacy.plan import kept_records, plan_dp_sgd
from fedsim.privacy.secure_noise import noise_source
from fedsim.privacy.state import PrivacyState
from fedsim.validation import check, finite

if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.data.federation import ClientData

DIAGNOSTIC_RECORDS = 256


@dataclass(frozen=True)
class FedAvgConfig:
    """FedAvg options: a global linear classifier trained federatedly on embeddings."""

    lr: float = 0.5
    """Constant SGD learning rate (tuned on validation data of synthetic, digits and breast-cancer; scale it like 1/E‖x‖² for other features; the reference's schedule collapses to 1e-5 by round 8)."""
    momentum: float = 0.5
    """SGD momentum (reset at the start of every round)."""
    weight_decay: float = 5e-4
    """SGD weight decay (a record-free term)."""
    private: bool = False
    """Train with DP-SGD under --privacy.* (False: no DP, as in the paper's table; the ledger says epsilon inf)."""

    def validate(self, prefix: str = "--fedavg.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("lr", finite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("momentum", 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("weight_decay", finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
        ])


@dataclass(frozen=True)
class GlobalClassifier:
    """The public output: the final global linear classifier."""

    model: nn.Linear

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return predict_proba(self.model, x)


def record_cross_entropy(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``ℓ_j(w) = CE(w·x_j + b, y_j)`` for every record of the batch, shape ``(B,)``."""
    return nn.functional.cross_entropy(model(x), y, reduction="none")


class FederatedClassifierClient:
    """A client of FedAvg / FedProx / FedLambda (module docstring)."""

    def __init__(self, data: ClientData, spec: FederationSpec, config: FedAvgConfig, privacy: PrivacyConfig,
                 schedule: TrainingConfig, evaluation: EvaluationConfig, seed: int,
                 proximal_mu: float = 0.0, blend: bool = False, device: torch.device = CPU) -> None:
        self.client_id, self.device = data.client_id, device
        self.data, self.config, self.evaluation, self.seed = data, config, evaluation, seed
        self.proximal_mu, self.blend = proximal_mu, blend
        privacy = replace(privacy, privacy_mode="strict") if config.private else replace(privacy, epsilon=math.inf)
        with seeded(seed, "fedavg", "client", data.client_id):
            self.model = nn.Linear(spec.dim, spec.num_classes)  # initialised on the CPU, then moved
        self.model.to(device)
        self.parameters = dict(self.model.named_parameters())
        kept = kept_records(data.x_train, data.y_train, privacy, seed, data.client_id)
        self.x = torch.as_tensor(data.x_train[kept], dtype=torch.float32).to(device)
        self.y = torch.as_tensor(data.y_train[kept], dtype=torch.long).to(device)
        plan = plan_dp_sgd(len(self.x), schedule.resolved_batch_size(), schedule.rounds, schedule.local_epochs, privacy)
        noise = noise_source(privacy, seed, "fedavg", "steps", data.client_id)
        self.trainer = DPTrainer(self.parameters, GhostClippedSum(self.model, self._record_losses),
                                 self._round_optimizer(), PrivacyState.fresh(privacy, plan, schedule.local_epochs, noise),
                                 num_records=len(self.x))

    @property
    def privacy_state(self) -> PrivacyState:
        return self.trainer.privacy_state

    def _record_losses(self, x: Tensor, y: Tensor) -> Tensor:
        return record_cross_entropy(self.model, x, y)

    def _round_optimizer(self) -> torch.optim.Optimizer:
        """SGD with fresh momentum (a new one every round)."""
        return torch.optim.SGD(self.parameters.values(), lr=self.config.lr, momentum=self.config.momentum,
                               weight_decay=self.config.weight_decay)

    def local_round(self, broadcast: Mapping[str, Tensor], round_index: int) -> tuple[ClientUpdate, LocalDiagnostics]:
        trainer = self.trainer
        trainer.optimizer = self._round_optimizer()
        broadcast = to_device(broadcast, self.device)  # Φ moves once per round
        penalty = self._proximal_term(broadcast) if self.proximal_mu > 0 else None

        def local_step() -> None:
            batch = trainer.sample_batch()
            trainer.step(RecordBatch((self.x[batch], self.y[batch])), penalty=penalty)

        delta = dict(to_device(trainer.run_round(self.parameters, broadcast, local_step), CPU))  # messages: CPU
        count = self.privacy_state.public_sample_count(len(self.x))  # with DP: the public bound
        return ClientUpdate(self.client_id, delta, count), LocalDiagnostics(self.client_id, self._diagnostics())

    def _proximal_term(self, broadcast: Mapping[str, Tensor]) -> Callable[[], Tensor]:
        """FedProx: ``(μ/2) Σ ‖w − w_global‖²`` (touches no record)."""
        anchor = {name: value.detach().clone() for name, value in broadcast.items()}

        def penalty() -> Tensor:
            squared = cast(Tensor, sum((p - anchor[n]).pow(2).sum() for n, p in self.parameters.items()))
            return 0.5 * self.proximal_mu * squared
        return penalty

    @torch.no_grad()
    def _diagnostics(self) -> dict[str, float]:
        count = min(DIAGNOSTIC_RECORDS, len(self.x))
        logits = self.model(self.x[:count])
        return {"train_loss": float(nn.functional.cross_entropy(logits, self.y[:count])),
                "train_acc": float((logits.argmax(1) == self.y[:count]).float().mean())}

    def release(self) -> None:
        return None

    def evaluate(self, artifact: GlobalClassifier, global_test: GlobalTestSet | None = None) -> ClientEvaluation:
        """FedAvg/FedProx: the global model alone; FedLambda: its λ-blend with a local model
        (``global_test``: the simulator's global test set, scored only)."""
        if self.blend:
            return evaluate_with_global_model(self.data, artifact.probabilities, self.evaluation.probe, self.seed,
                                              global_test)
        return evaluate_global_only(self.data, artifact.probabilities, global_test)

    def privacy_record(self) -> ClientPrivacyRecord:
        return privacy_record(self.client_id, self.privacy_state, None, None)

    def state_dict(self) -> dict[str, Any]:
        return {"model": to_device(self.model.state_dict(), CPU), "privacy_state": self.privacy_state.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.privacy_state.load_state_dict(state["privacy_state"])


class FederatedClassifierServer(SharedStateServer):
    """Holds the global linear classifier; FedAvg aggregation (η = 1)."""

    def __init__(self, spec: FederationSpec, seed: int, device: torch.device = CPU) -> None:
        with seeded(seed, "fedavg", "server"):
            self.model = nn.Linear(spec.dim, spec.num_classes)
        self.model.to(device)
        self.shared = {n: p.detach() for n, p in self.model.named_parameters()}

    def broadcast(self) -> dict[str, Tensor]:
        return {name: value.clone().to(CPU) for name, value in self.shared.items()}

    def aggregate(self, updates: Sequence[ClientUpdate]) -> None:
        apply_server_step(self.shared, updates, 1.0)

    def finalize(self, releases: Sequence[None]) -> GlobalClassifier:
        return GlobalClassifier(copy.deepcopy(self.model).to(CPU).eval())


def make_server(spec: FederationSpec, settings: RunSettings) -> FederatedClassifierServer:
    return FederatedClassifierServer(spec, settings.seed, settings.server_device_here())


def make_client(data: ClientData, spec: FederationSpec, settings: RunSettings, proximal_mu: float = 0.0,
                blend: bool = False) -> FederatedClassifierClient:
    return FederatedClassifierClient(data, spec, settings.method, settings.privacy, settings.training,
                                     settings.evaluation, settings.seed, proximal_mu, blend, settings.device_here())


def synthetic_set(artifact: GlobalClassifier, size: int, generator: torch.Generator) -> None:
    """FedAvg releases a classifier, not synthetic data."""
    return None


__all__ = ["FedAvgConfig", "FederatedClassifierClient", "FederatedClassifierServer", "GlobalClassifier",
           "make_client", "make_server", "synthetic_set"]
