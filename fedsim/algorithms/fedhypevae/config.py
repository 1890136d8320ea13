"""FedHypeVAE options (tyro-exposed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedsim.validation import check, finite


@dataclass(frozen=True)
class FedHypeVAEConfig:
    """Model, objective (Eq. 5–7) and meta-code (Eq. 11–13) options of FedHypeVAE."""

    latent_dim: int = 16
    """Dimension of the CVAE latent z."""
    hidden_dim: int = 128
    """Width of the encoder and decoder hidden layers."""
    hidden_layers: int = 2
    """Number of hidden layers in the encoder and the decoder."""
    code_dim: int = 16
    """Dimension d_v of the private client codes v_i and of the meta-code v_o."""
    code_radius: float = 3.0
    """Codes are projected onto the ball ‖v‖ ≤ r after every step."""
    hyper_hidden: int = 64
    """Width of the hypernetwork h_θ and of the prior networks h_ω, g_ω."""
    label_dim: int = 16
    """Dimension of the learnable label embedding e(y) (Eq. 4)."""
    beta: float = 0.1
    """Weight of the KL term in the negative ELBO (β-VAE weighting, as the DP-CVAE reference)."""
    lambda_mmd: float = 1.0
    """λ_MMD: weight of the class-conditional multi-kernel MMD² alignment (Eq. 6–7); 0 disables it."""
    mmd_samples: int = 4
    """Synthetic samples per record for the MMD term (drawn from the client's own generator)."""
    lambda_lip: float = 1e-3
    """λ_Lip: weight of the spectral-norm penalty Σ max(0, ‖W‖₂ − 1)² on h_θ, h_ω, g_ω (Eq. 5)."""
    lambda_v: float = 1e-3
    """λ_v: weight of ‖v_i‖² (Eq. 5)."""
    lr: float = 1e-3
    """Client learning rate (Adam on the privatized gradient, a post-processing)."""
    server_lr: float = 1.0
    """η_Φ of Eq. 10 applied to the weighted mean of the clients' changes of Φ."""
    hypernetwork: bool = True
    """False: ablation with one shared decoder and prior (no client modulation, codes unused)."""
    meta_codes: int = 1
    """K of Eq. 13: number of meta-codes mixed for synthesis (1 = Eq. 11–12)."""
    meta_steps: int = 200
    """Adam steps when fitting the meta-code(s) to the DP statistics (Eq. 11)."""
    meta_lr: float = 0.05
    """Learning rate for fitting the meta-code(s)."""
    meta_samples: int = 64
    """Monte Carlo samples per class for E_z and Cov_z in Eq. 11."""
    meta_beta: float = 1.0
    """β of Eq. 11: weight of the covariance match relative to the mean match."""
    meta_fit: bool = True
    """False: ablation without meta-code fitting; synthesis uses v = 0, the mean of the codes'
    N(0, I) initialisation (client codes are private and are never averaged or released)."""
    training: Literal["stats-first", "dp-sgd"] = "stats-first"
    """How the budget is spent (README, "FedHypeVAE training").  ``stats-first``: every client
    releases its DP class statistics ONCE before round 0 with the share ``statistics_share``
    of ε; the server pools them and warm-starts Φ on them (post-processing, no ε); DP-SGD
    spends the rest on the ``dp_sgd_parameters`` only; the same release feeds Eq. 11.
    ``dp-sgd``: the paper's schedule (Eq. 8–11): DP-SGD on every parameter from a random Φ,
    statistics released after training with ``--privacy.stats-epsilon-fraction``."""
    statistics_share: float = 1.0
    """``stats-first`` only: share of ε for the statistics release, in (0, 1]; DP-SGD is
    calibrated for the rest.  1 = ``stats-only``: no DP-SGD, the rounds train nothing
    (chosen on validation, README "FedHypeVAE training")."""
    dp_sgd_parameters: Literal["codes-heads", "all"] = "codes-heads"
    """``stats-first`` with a DP-SGD share: what DP-SGD trains.  ``codes-heads``: the client
    code v_i and the output head of h_θ (the per-layer scale/shift generator of Eq. 3) on the
    per-record MMD term of Eq. 6 (the small DP footprint); ``all``: every parameter on the
    full objective (Eq. 5), as ``dp-sgd``."""
    warm_start_steps: int = 600
    """``stats-first``: Adam steps of the server's warm start of Φ on records sampled from
    the pooled DP class-conditional Gaussians (post-processing)."""
    warm_start_batch: int = 256
    """``stats-first``: sampled records per warm-start step."""
    warm_start_lr: float = 3e-3
    """``stats-first``: Adam learning rate of the warm start."""
    observation_variance: bool = True
    """Eq. 12 with an observation variance: x̂ = decoder mean + s_y ⊙ ε, s_y² the per-class,
    per-dimension gap between the DP second moments (diagonal) and the variance of the
    decoder mean at the meta-code (clamped at 0); False: the decoder mean alone (the paper)."""

    def validate(self, prefix: str = "--fedhypevae.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        sizes = ("latent_dim", "hidden_dim", "hidden_layers", "code_dim", "hyper_hidden", "label_dim",
                 "mmd_samples", "meta_codes", "meta_steps", "warm_start_steps", "warm_start_batch")
        weights = ("beta", "lambda_mmd", "lambda_lip", "lambda_v", "meta_beta")
        check(self, prefix, [
            *((name, getattr(self, name) >= 1, "an integer >= 1") for name in sizes),
            ("meta_samples", self.meta_samples >= 2, "an integer >= 2 (Eq. 11 estimates a covariance)"),
            *((name, finite(getattr(self, name)) and getattr(self, name) >= 0, "a finite number >= 0")
              for name in weights),
            *((name, finite(getattr(self, name)) and getattr(self, name) > 0, "a finite number > 0")
              for name in ("code_radius", "lr", "server_lr", "meta_lr", "warm_start_lr")),
            ("training", self.training in ("stats-first", "dp-sgd"), "one of stats-first, dp-sgd"),
            ("statistics_share", finite(self.statistics_share) and 0 < self.statistics_share <= 1,
             "a number in (0, 1] (1 = stats-only)"),
            ("dp_sgd_parameters", self.dp_sgd_parameters in ("codes-heads", "all"), "one of codes-heads, all"),
            ("observation_variance", isinstance(self.observation_variance, bool), "true or false"),
        ])

    @property
    def stats_first(self) -> bool:
        """True for the statistics-first schedule (option ``training``)."""
        return self.training == "stats-first"

    @property
    def stats_only(self) -> bool:
        """True when the statistics take the whole budget and no DP-SGD runs."""
        return self.stats_first and self.statistics_share >= 1.0
