"""What the generative baselines (DP-CVAE, DP-CGAN) share: a client that trains a
conditional generator model under DP-SGD and returns only the generator's change, a
server that averages generators (FedAvg, McMahan et al. 2017, weights n_i/Σn), and
the released artifact (the averaged generator and a DP label distribution).

Privacy, per client (sample-level, docs/design.md, "Privacy model"):

* DP-SGD on every parameter the client trains on data (:class:`~fedsim.privacy.dp_trainer.DPTrainer`
  with ghost clipping), σ calibrated by :func:`~fedsim.privacy.plan.plan_dp_sgd` for the
  steps really run, with the share ``1 − stats_epsilon_fraction`` of ε;
* one release of the client's class counts (:mod:`fedsim.privacy.labels`), made when
  the client is created, with the smallest noise that keeps the composed ε ≤ the target.
  The DP label distribution it gives is public: DP-CGAN draws its generator's labels
  from it, and the released synthetic set (and ``--evaluation.synthetic-labels global``)
  draw labels from the pooled counts;
* Eq. 10's weights are the sums of the released noisy counts (clamped to
  ``[1, max_records]``), never the exact n_i;
* there is no local state outside DP, so ``--privacy.privacy-mode`` does not apply:
  the ledger always reads ``strict``.

Subclasses define the model (:meth:`GenerativeClient.build_model`), which of its
parameters DP-SGD trains, one local step and the diagnostics.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from fedsim.algorithms.base import ClientUpdate, LocalDiagnostics, SharedStateServer, apply_server_step
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.evaluation.blend import ClientEvaluation
from fedsim.evaluation.downstream import EvaluationConfig, evaluate_generator
from fedsim.evaluation.global_test import GlobalTestSet
from fedsim.models.conditional import ConditionalGenerator
from fedsim.models.init import seeded
from fedsim.privacy.accounting import calibrate_release_noise
from fedsim.privacy.clipped_sums import GhostClippedSum
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.dp_trainer import DPTrainer
from fedsim.privacy.labels import label_distribution, release_label_counts
from fedsim.privacy.ledger import ClientPrivacyRecord, privacy_record
from fedsim.privacy.plan import DPSGDPlan, kept_records, plan_dp_sgd
from fedsim.privacy.secure_noise import dp_noise, noise_source
from fedsim.privacy.state import PrivacyState
from fedsim.seeding import torch_generator

if TYPE_CHECKING:
    from fedsim.algorithms.registry import RunSettings
    from fedsim.data.federation import ClientData

ModelT = TypeVar("ModelT", bound=nn.Module)
"""The whole model of a generative baseline (a CVAE, a CGAN)."""

DIAGNOSTIC_RECORDS = 256


@dataclass(frozen=True)
class SyntheticGenerator:
    """The public output of a generative baseline: the averaged conditional generator
    and the DP label distribution (pooled noisy counts, normalised)."""

    generator: ConditionalGenerator
    label_distribution: Tensor
    released_records: float | None = None
    """Σ of the clients' released noisy class counts (a DP count of all train records)."""

    def sample(self, labels: np.ndarray | Tensor, rng: torch.Generator) -> np.ndarray:
        """``x̂ = G(z, y)`` with ``z ~ N(0, I)`` (drawn from ``rng``) for every label, in data space."""
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        return self.generator.generate(labels, rng).numpy().astype(np.float32)

    def sample_labels(self, size: int, rng: torch.Generator) -> np.ndarray:
        """Labels drawn from the DP label distribution."""
        draws = torch.multinomial(self.label_distribution, size, replacement=True, generator=rng)
        return draws.numpy().astype(np.int64)


class GenerativeClient(ABC, Generic[ModelT]):
    """One client of a generative baseline (module docstring)."""

    tag = "generative"           # seed tag of the method
    shared_prefix = "decoder."   # parameters the server averages

    def __init__(self, data: ClientData, spec: FederationSpec, config: Any, privacy: PrivacyConfig,
                 schedule: TrainingConfig, evaluation: EvaluationConfig, seed: int) -> None:
        self.client_id = data.client_id
        self.data, self.config, self.evaluation, self.seed = data, config, evaluation, seed
        privacy = replace(privacy, privacy_mode="strict")  # no local state outside DP
        with seeded(seed, self.tag, "client", data.client_id):
            self.model = self.build_model(spec, config)
        scaler = self.generator_of(self.model).scaler
        kept = kept_records(data.x_train, data.y_train, privacy, seed, data.client_id)
        self.u = scaler.to_model(torch.as_tensor(data.x_train[kept], dtype=torch.float32))
        self.labels = torch.as_tensor(data.y_train[kept], dtype=torch.long)
        self.onehot = nn.functional.one_hot(self.labels, spec.num_classes).float()
        plan = plan_dp_sgd(len(self.u), schedule.resolved_batch_size(), schedule.rounds, schedule.local_epochs,
                           privacy, 1.0 - privacy.stats_epsilon_fraction)
        # data-independent model randomness (reparameterisation noise, fake labels); with
        # seeded noise it is also the DP-SGD noise stream, so all draws keep one order
        self.rng = torch_generator(seed, self.tag, "steps", data.client_id)
        privacy_state = PrivacyState.fresh(privacy, plan, schedule.local_epochs, dp_noise(privacy, self.rng))
        self.shared = {n: p for n, p in self.model.named_parameters() if n.startswith(self.shared_prefix)}
        trained = self.trained_parameters()
        self.trainer = DPTrainer(trained, GhostClippedSum(self.model), self.make_optimizer(list(trained.values())),
                                 privacy_state, num_records=len(self.u))
        self.label_noise_multiplier, self.label_counts = self._release_label_counts(spec.num_classes)

    @property
    def privacy_state(self) -> PrivacyState:
        """The client's privacy configuration, plan, accountant and noise (held by its trainer)."""
        return self.trainer.privacy_state

    # --- hooks ------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def build_model(spec: FederationSpec, config: Any) -> ModelT:
        """The method's whole model (client and server build the same one)."""

    @staticmethod
    @abstractmethod
    def generator_of(model: ModelT) -> ConditionalGenerator:
        """The submodule the server averages and releases."""

    def trained_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters DP-SGD trains (default: all of them, clipped jointly)."""
        return dict(self.model.named_parameters())

    @abstractmethod
    def make_optimizer(self, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The client's optimizer over the DP-trained parameters."""

    @abstractmethod
    def local_step(self) -> None:
        """One local step: a DP-SGD update through ``self.trainer.step``."""

    def diagnostics(self) -> dict[str, float]:
        return {}

    # --- protocol -----------------------------------------------------------------------
    def _release_label_counts(self, num_classes: int) -> tuple[float | None, Tensor]:
        """Noisy class counts (module docstring); σ composes with the planned DP-SGD."""
        noise = noise_source(self.privacy_state.privacy, self.seed, self.tag, "label-counts", self.client_id)
        state = self.privacy_state
        if not state.private:
            return None, release_label_counts(self.labels, num_classes, 0.0, noise)
        plan, privacy = state.sgd_plan(), state.privacy
        planned = [(plan.noise_multiplier, plan.sample_rate, plan.total_steps)]
        sigma = calibrate_release_noise(planned, privacy.epsilon, privacy.delta, privacy.accountant)
        counts = release_label_counts(self.labels, num_classes, sigma, noise)
        state.accountant.record(sigma, 1.0, 1, kind="release")
        return sigma, counts

    def local_round(self, broadcast: Mapping[str, Tensor], round_index: int) -> tuple[ClientUpdate, LocalDiagnostics]:
        delta = self.trainer.run_round(self.shared, broadcast, self.local_step)
        count = self.privacy_state.public_sample_count(len(self.u), float(self.label_counts.sum()))
        return ClientUpdate(self.client_id, delta, count), LocalDiagnostics(self.client_id, self.diagnostics())

    def release(self) -> Tensor:
        """The noisy class counts released at creation (no new mechanism)."""
        return self.label_counts.clone()

    def evaluate(self, artifact: SyntheticGenerator, global_test: GlobalTestSet | None = None) -> ClientEvaluation:
        return evaluate_generator(self.data, artifact, self.evaluation, self.seed, global_test)

    def privacy_record(self) -> ClientPrivacyRecord:
        return privacy_record(self.client_id, self.privacy_state, self.label_noise_multiplier, 1.0)

    def diagnostic_records(self) -> slice:
        """A fixed subset of train records for simulator-side diagnostics."""
        return slice(0, min(DIAGNOSTIC_RECORDS, len(self.u)))

    # --- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizers": self.optimizer_states(),
                "privacy_state": self.privacy_state.state_dict(), "rng": self.rng.get_state(),
                "label_counts": self.label_counts, "label_noise_multiplier": self.label_noise_multiplier}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.load_optimizer_states(state["optimizers"])
        self.privacy_state.load_state_dict(state["privacy_state"])
        self.rng.set_state(state["rng"])
        self.label_counts = state["label_counts"]
        self.label_noise_multiplier = state["label_noise_multiplier"]

    def optimizer_states(self) -> list[dict[str, Any]]:
        return [self.trainer.optimizer.state_dict()]

    def load_optimizer_states(self, states: list[dict[str, Any]]) -> None:
        self.trainer.optimizer.load_state_dict(states[0])


class GenerativeServer(SharedStateServer):
    """Holds the shared generator; averages the clients' generators (Eq. 10 with η = 1)."""

    def __init__(self, spec: FederationSpec, client_class: type[GenerativeClient[Any]], config: Any,
                 seed: int) -> None:
        self.spec, self.client_class = spec, client_class
        with seeded(seed, client_class.tag, "server"):
            self.model = client_class.build_model(spec, config)
        self.shared = {n: p.detach() for n, p in self.model.named_parameters()
                       if n.startswith(client_class.shared_prefix)}

    def broadcast(self) -> dict[str, Tensor]:
        return {name: value.clone() for name, value in self.shared.items()}

    def aggregate(self, updates: Sequence[ClientUpdate]) -> None:
        """``G ← G + Σ_i w_i (G_i − G) = Σ_i w_i G_i`` (FedAvg of the generators)."""
        apply_server_step(self.shared, updates, 1.0)

    def finalize(self, releases: Sequence[Tensor]) -> SyntheticGenerator:
        counts = torch.stack([r.double() for r in releases]).sum(dim=0)
        module = self.client_class.generator_of(self.model)
        return SyntheticGenerator(copy.deepcopy(module).eval(), label_distribution(counts),
                                  float(counts.clamp_min(0.0).sum()))


def module_functions(client_class: type[GenerativeClient[Any]]) -> tuple[
        Callable[[FederationSpec, RunSettings], GenerativeServer],
        Callable[[ClientData, FederationSpec, RunSettings], GenerativeClient[Any]]]:
    """``make_server`` and ``make_client`` of the registry's module interface for a
    generative baseline whose client is ``client_class`` (its constructor takes
    ``(data, spec, method, privacy, schedule, evaluation, seed)``)."""

    def make_server(spec: FederationSpec, settings: RunSettings) -> GenerativeServer:
        return GenerativeServer(spec, client_class, settings.method, settings.seed)

    def make_client(data: ClientData, spec: FederationSpec, settings: RunSettings) -> GenerativeClient[Any]:
        return client_class(data, spec, settings.method, settings.privacy, settings.training,
                            settings.evaluation, settings.seed)

    return make_server, make_client


def expected_batch(plan: DPSGDPlan) -> int:
    """``max(1, round(q·n))``: a data-independent size for record-free samples."""
    return max(1, int(math.floor(plan.expected_batch_size + 0.5)))
