"""Nearest class mean, the example of README "Adding a method" (docs/design.md, "How to add a method").

Each round every client sends its per-class embedding sums and counts as its ClientUpdate; the
server keeps the last round's totals, and the artifact scores a record by its squared distance
to each class mean.  Not private (record ``privacy="none"``): the sums travel in the clear, and
each round is recorded as a release without noise, so the client's ε reads ∞."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from fedsim.algorithms.base import ClientUpdate, LocalDiagnostics, SharedStateServer, check_update_keys
from fedsim.evaluation.downstream import evaluate_global_only
from fedsim.privacy.ledger import privacy_record
from fedsim.privacy.secure_noise import noise_source
from fedsim.privacy.state import PrivacyState


@dataclass(frozen=True)
class NearestMeanConfig:
    """Nearest-class-mean options (``--nearest-mean.*``)."""

    normalize: bool = False
    """L2-normalise embeddings before averaging and comparing them (cosine nearest mean)."""

    def validate(self, prefix: str = "--nearest-mean.") -> None:
        """Nothing to check: the one option is a flag."""


def features(x, config: NearestMeanConfig) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=1) if config.normalize else x


@dataclass(frozen=True)
class ClassMeans:
    """The artifact: class means; called on embeddings, class probabilities ∝ exp(−‖x − μ_k‖²)."""

    means: torch.Tensor
    config: NearestMeanConfig

    def __call__(self, x):
        return torch.softmax(-torch.cdist(features(x, self.config), self.means) ** 2, dim=1).numpy()


class NearestMeanClient:
    def __init__(self, data, spec, settings) -> None:
        self.client_id, self.data = data.client_id, data
        privacy = replace(settings.privacy, epsilon=math.inf)  # no DP: the ledger says ε = ∞
        noise = noise_source(privacy, settings.seed, "nearest-mean", data.client_id)
        self.privacy_state = PrivacyState.fresh(privacy, None, settings.training.local_epochs, noise)
        onehot = torch.nn.functional.one_hot(torch.as_tensor(data.y_train), spec.num_classes).double()
        self.totals = {"sums": onehot.T @ features(data.x_train, settings.method), "counts": onehot.sum(0)}

    def local_round(self, broadcast, round_index):
        self.privacy_state.accountant.record(0.0, 1.0, kind="release")  # sent in the clear: ε = ∞
        return ClientUpdate(self.client_id, self.totals, len(self.data.y_train)), LocalDiagnostics(self.client_id)

    def release(self):
        return None

    def evaluate(self, artifact: ClassMeans, global_test=None):
        return evaluate_global_only(self.data, artifact, global_test=global_test)

    def privacy_record(self):
        return privacy_record(self.client_id, self.privacy_state, None, None)

    def state_dict(self) -> dict:
        return {"privacy_state": self.privacy_state.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.privacy_state.load_state_dict(state["privacy_state"])


class NearestMeanServer(SharedStateServer):
    def __init__(self, spec, settings) -> None:
        self.config = settings.method
        self.shared = {"sums": torch.zeros(spec.num_classes, spec.dim, dtype=torch.float64),
                       "counts": torch.zeros(spec.num_classes, dtype=torch.float64)}

    def broadcast(self) -> dict:
        return {}

    def aggregate(self, updates) -> None:
        for update in updates:
            check_update_keys(update, list(self.shared))
        for name, total in self.shared.items():
            total.copy_(sum(update.delta[name] for update in updates))

    def finalize(self, releases) -> ClassMeans:
        return ClassMeans(self.shared["sums"] / self.shared["counts"].clamp_min(1)[:, None], self.config)


make_server, make_client = NearestMeanServer, NearestMeanClient  # (spec, settings), (data, spec, settings)


def synthetic_set(artifact, size, generator):
    return None  # it releases class means, not synthetic data
