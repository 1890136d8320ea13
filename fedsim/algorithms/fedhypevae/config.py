"""FedHypeVAE options (tyro-exposed)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def validate(self, prefix: str = "--fedhypevae.") -> None:
        """Raise a ``UserError`` naming the first invalid option (as on the CLI, under ``prefix``)."""
        sizes = ("latent_dim", "hidden_dim", "hidden_layers", "code_dim", "hyper_hidden", "label_dim",
                 "mmd_samples", "meta_codes", "meta_steps")
        weights = ("beta", "lambda_mmd", "lambda_lip", "lambda_v", "meta_beta")
        check(self, prefix, [
            *((name, getattr(self, name) >= 1, "an integer >= 1") for name in sizes),
            ("meta_samples", self.meta_samples >= 2, "an integer >= 2 (Eq. 11 estimates a covariance)"),
            *((name, finite(getattr(self, name)) and getattr(self, name) >= 0, "a finite number >= 0")
              for name in weights),
            *((name, finite(getattr(self, name)) and getattr(self, name) > 0, "a finite number > 0")
              for name in ("code_radius", "lr", "server_lr", "meta_lr")),
        ])
