"""DP-CVAE baseline (Di Salvo, Nguyen & Ledig 2025, "Embedding-based federated data
sharing via differentially private conditional VAEs"), with the flaws of its public
code fixed (docs/design.md, "Baselines: what fedsim fixes"):

* each client trains a whole CVAE (:class:`~fedsim.models.cvae.ConditionalVAE`;
  encoder and decoder 3 × 256, latent 100, loss mean MSE + β·KL, β = 0.1, Adam 1e-3)
  with DP-SGD on the joint per-record gradient of encoder *and* decoder, on Poisson
  batches (rate q = B/n_i, B = 256), σ calibrated for the steps really run;
* only the decoder is sent and averaged (weights n_i/Σn); the encoder stays local;
* the released generator is the averaged decoder with ``z ~ N(0, I)``;
* feature scaling is data-independent (:class:`~fedsim.models.conditional.OutputScaling`):
  the reference's per-feature min–max ranges come from the data without noise.  The
  default drops the sigmoid (``linear``: raw features, identity output), which needs
  no range and suits any encoder's scale; ``--dp-cvae.scaling.output sigmoid`` keeps
  the reference's sigmoid on a PUBLIC range ``[low, high]`` (records clipped to it).
  On ``synthetic`` (unit-variance features, ε = 1 and ε = ∞, 10 rounds) the two gave
  the same downstream accuracy within 0.3 points and the same MMD².

Shared machinery: :mod:`fedsim.algorithms.generative` (client/server/artifact, DP label
counts) and :class:`fedsim.privacy.dp_trainer.DPTrainer` (the DP-SGD step, ghost clipping).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedsim.algorithms.base import synthesize
from fedsim.algorithms.generative import GenerativeClient, module_functions
from fedsim.algorithms.spec import FederationSpec
from fedsim.models.conditional import ConditionalGenerator, OutputScaling
from fedsim.models.cvae import ConditionalVAE
from fedsim.privacy.clipped_sums import RecordBatch
from fedsim.seeding import torch_generator
from fedsim.validation import check, finite


@dataclass(frozen=True)
class DPCVAEConfig:
    """DP-CVAE baseline options (reference values as defaults)."""

    hidden_dim: int = 256
    """Width of the hidden layers of the encoder and the decoder."""
    hidden_layers: int = 3
    """Number of hidden layers of the encoder and of the decoder."""
    latent_dim: int = 100
    """Dimension of the latent z."""
    beta: float = 0.1
    """Weight β of the summed KL term (the reconstruction is the mean squared error)."""
    lr: float = 1e-3
    """Adam learning rate (on the privatized gradient, a post-processing)."""
    scaling: OutputScaling = OutputScaling()
    """Data-independent feature scaling of the decoder output."""

    def validate(self, prefix: str = "--dp-cvae.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            *((name, getattr(self, name) >= 1, "an integer >= 1") for name in ("hidden_dim", "hidden_layers", "latent_dim")),
            ("beta", finite(self.beta) and self.beta >= 0, "a finite number >= 0"),
            ("lr", finite(self.lr) and self.lr > 0, "a finite number > 0"),
        ])
        self.scaling.validate(prefix + "scaling.")


class DPCVAEClient(GenerativeClient[ConditionalVAE]):
    """A DP-CVAE client: encoder and decoder under joint DP-SGD; the decoder is shared."""

    tag = "dp-cvae"
    shared_prefix = "decoder."

    @staticmethod
    def build_model(spec: FederationSpec, config: DPCVAEConfig) -> ConditionalVAE:
        return ConditionalVAE(spec.dim, spec.num_classes, [config.hidden_dim] * config.hidden_layers,
                              config.latent_dim, config.beta, config.scaling)

    @staticmethod
    def generator_of(model: ConditionalVAE) -> ConditionalGenerator:
        return model.decoder

    def make_optimizer(self, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.config.lr)

    def local_step(self) -> None:
        """One DP-SGD step on the CVAE loss ``model(u, onehot, ε)`` of a Poisson batch."""
        batch = self.trainer.sample_batch()
        eps = torch.randn(len(batch), self.config.latent_dim, generator=self.rng)
        self.trainer.step(RecordBatch((self.u[batch], self.onehot[batch], eps)))

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """Simulator-side reconstruction and KL on a fixed subset of train records."""
        rows = self.diagnostic_records()
        u, onehot = self.u[rows], self.onehot[rows]
        eps = torch.randn(len(u), self.config.latent_dim,
                          generator=torch_generator(self.seed, self.tag, "diagnostics", self.client_id))
        terms = self.model.record_terms(u, onehot, eps)
        return {"reconstruction": float(terms["reconstruction"].mean()), "kl": float(terms["kl"].mean())}


make_server, make_client = module_functions(DPCVAEClient)
synthetic_set = synthesize     # labels from the DP label distribution, then the averaged generator


__all__ = ["DPCVAEClient", "DPCVAEConfig", "make_client", "make_server", "synthetic_set"]
