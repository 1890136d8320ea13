"""DP-CGAN baseline: a conditional GAN per client (generator [z(100)‖onehot] → 512 →
1024 → d, discriminator [x‖onehot] → 1024 → 512 → 1, LeakyReLU 0.2, Adam 2e-4,
β = (0.5, 0.999)), differential privacy on the discriminator (DP-GAN, Xie et al. 2018;
Torkzadehmahani et al. 2019 for the conditional form), generators averaged
(weights n_i/Σn), both models kept by the client across rounds.

One local step (:class:`~fedsim.models.cgan.ConditionalGAN`):

1. discriminator: one DP-SGD step on a Poisson batch.  The real part of the loss,
   ``softplus(−D(x_j, y_j))``, is clipped per record and noised; the fake part,
   ``mean softplus(D(G(z_m, ỹ_m), ỹ_m))`` over ``round(q·n_i)`` fakes with labels ỹ
   drawn from the client's DP label distribution, reads no real record and is added
   outside clipping;
2. generator: one Adam step on ``mean softplus(−D(G(z, ỹ), ỹ))``, same label source.
   It reads no record: G is a function of the DP discriminators, the DP label counts
   and public noise, i.e. post-processing, so the ledger counts the discriminator
   steps and the label release only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fedsim.algorithms.base import synthesize
from fedsim.algorithms.generative import GenerativeClient, expected_batch, module_functions
from fedsim.algorithms.spec import FederationSpec
from fedsim.models.cgan import ConditionalGAN
from fedsim.models.conditional import ConditionalGenerator, OutputScaling
from fedsim.privacy.clipped_sums import RecordBatch
from fedsim.privacy.labels import label_distribution
from fedsim.seeding import torch_generator
from fedsim.validation import check, finite


@dataclass(frozen=True)
class DPCGANConfig:
    """DP-CGAN baseline options (reference values as defaults)."""

    latent_dim: int = 100
    """Dimension of the generator's noise z."""
    generator_hidden: tuple[int, ...] = (512, 1024)
    """Hidden widths of the generator."""
    discriminator_hidden: tuple[int, ...] = (1024, 512)
    """Hidden widths of the discriminator."""
    lr: float = 2e-4
    """Adam learning rate of both networks."""
    beta1: float = 0.5
    """Adam β₁ of both networks."""
    beta2: float = 0.999
    """Adam β₂ of both networks."""
    scaling: OutputScaling = OutputScaling()
    """Data-independent feature scaling of the generator output (the discriminator sees the same space)."""

    def validate(self, prefix: str = "--dp-cgan.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        check(self, prefix, [
            ("latent_dim", self.latent_dim >= 1, "an integer >= 1"),
            *((name, len(getattr(self, name)) >= 1 and min(getattr(self, name)) >= 1,
               "one or more integers >= 1") for name in ("generator_hidden", "discriminator_hidden")),
            ("lr", finite(self.lr) and self.lr > 0, "a finite number > 0"),
            *((name, 0 <= getattr(self, name) < 1, "a number in [0, 1)") for name in ("beta1", "beta2")),
        ])
        self.scaling.validate(prefix + "scaling.")


class DPCGANClient(GenerativeClient[ConditionalGAN]):
    """A DP-CGAN client: DP discriminator, post-processed generator (module docstring)."""

    tag = "dp-cgan"
    shared_prefix = "generator."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generator_optimizer = torch.optim.Adam(self.model.generator.parameters(), lr=self.config.lr,
                                                    betas=(self.config.beta1, self.config.beta2))
        self.fake_labels = label_distribution(self.label_counts)  # DP: post-processing
        self.fake_batch = expected_batch(self.privacy_state.sgd_plan())

    @staticmethod
    def build_model(spec: FederationSpec, config: DPCGANConfig) -> ConditionalGAN:
        return ConditionalGAN(spec.dim, spec.num_classes, config.latent_dim, list(config.generator_hidden),
                              list(config.discriminator_hidden), config.scaling)

    @staticmethod
    def generator_of(model: ConditionalGAN) -> ConditionalGenerator:
        return model.generator

    def trained_parameters(self) -> dict[str, nn.Parameter]:
        """Only the discriminator reads records, so only it is trained by DP-SGD."""
        return {n: p for n, p in self.model.named_parameters() if n.startswith("discriminator.")}

    def make_optimizer(self, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.config.lr, betas=(self.config.beta1, self.config.beta2))

    def _fake_conditions(self) -> tuple[Tensor, Tensor]:
        """Noise z and one-hot labels ỹ ~ the DP label distribution (data-independent)."""
        labels = torch.multinomial(self.fake_labels, self.fake_batch, replacement=True, generator=self.rng)
        z = torch.randn(self.fake_batch, self.config.latent_dim, generator=self.rng)
        return z, nn.functional.one_hot(labels, self.onehot.shape[1]).float()

    def local_step(self) -> None:
        """The discriminator's DP-SGD step (real part clipped, fake part outside clipping),
        then the generator's step, which reads no record (module docstring)."""
        model = self.model
        batch = self.trainer.sample_batch()
        z, fake_onehot = self._fake_conditions()
        with torch.no_grad():
            fake = model.generator(z, fake_onehot)
        self.trainer.step(RecordBatch((self.u[batch], self.onehot[batch])),
                          penalty=lambda: model.fake_loss(fake, fake_onehot))
        self.generator_step()

    def generator_step(self) -> None:
        """One Adam step of G on the generator loss of fresh ``(z, ỹ)``.  Autograd computes
        G's gradients only: D's weight gradients, which ``loss.backward()`` would also
        compute (a third of the backward's work), are never used (D's next step starts
        from zero), and G's are the same, bit for bit (``tests/algorithms/test_dp_cgan.py``)."""
        z, fake_onehot = self._fake_conditions()
        generator = list(self.model.generator.parameters())
        gradients = torch.autograd.grad(self.model.generator_loss(z, fake_onehot), generator)
        for parameter, gradient in zip(generator, gradients):
            parameter.grad = gradient
        self.generator_optimizer.step()

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """Simulator-side discriminator and generator losses on a fixed subset of records."""
        rows = self.diagnostic_records()
        u, onehot = self.u[rows], self.onehot[rows]
        rng = torch_generator(self.seed, self.tag, "diagnostics", self.client_id)
        z = torch.randn(len(u), self.config.latent_dim, generator=rng)
        fake = self.model.generator(z, onehot)
        return {"d_loss": float(self.model(u, onehot).mean() + self.model.fake_loss(fake, onehot)),
                "g_loss": float(self.model.generator_loss(z, onehot))}

    def optimizer_states(self) -> list[dict[str, Any]]:
        return [self.trainer.optimizer.state_dict(), self.generator_optimizer.state_dict()]

    def load_optimizer_states(self, states: list[dict[str, Any]]) -> None:
        self.trainer.optimizer.load_state_dict(states[0])
        self.generator_optimizer.load_state_dict(states[1])


make_server, make_client = module_functions(DPCGANClient)
synthetic_set = synthesize     # labels from the DP label distribution, then the averaged generator


__all__ = ["DPCGANClient", "DPCGANConfig", "make_client", "make_server", "synthetic_set"]
