"""Fitting the neutral meta-code v_o to DP class statistics (paper Eq. 11, 13).

    v_o = argmin_v Σ_{y valid} ‖E_{z~p_ω(z|y)}[x(z,y)] − μ̂_y‖² + β ‖Cov_z[x(z,y)] − Σ̂_y‖²_F

``E_z`` and ``Cov_z`` are Monte Carlo estimates over ``S`` samples per class with the
reparameterisation ``z = μ_{v,y} + σ_{v,y} ⊙ ε``; fixed ``ε`` across steps makes the
objective deterministic.  Both terms are divided by d so that β is scale free.  With
K > 1 codes and mixture logits, ``(θ, ω)`` are the π-mixtures of Eq. 13.  Only Φ's
outputs are differentiated: Φ itself stays fixed.  Codes are projected onto
``‖v‖ ≤ r`` after each Adam step.  The statistics are DP releases, so this is all
post-processing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fedsim.algorithms.fedhypevae.synthesis import mixed_generation
from fedsim.models.fedhypevae import FedHypeVAEModel, project_to_ball
from fedsim.privacy.statistics import ClassMoments


def meta_code_objective(model: FedHypeVAEModel, codes: Tensor, logits: Tensor,
                        moments: ClassMoments, noise: Tensor, beta: float) -> Tensor:
    """The Eq. 11 loss for codes ``(K, d_v)``, mixture logits ``(K,)`` and noise ``(S, latent)``."""
    modulation, context = mixed_generation(model, codes, torch.softmax(logits, dim=0))
    classes = torch.nonzero(moments.valid).flatten()
    dim = moments.means.shape[1]
    losses = []
    for y in classes.tolist():
        onehot = torch.zeros(noise.shape[0], model.num_classes)
        onehot[:, y] = 1.0
        x = model.sample(modulation, context, onehot, noise)
        mean = x.mean(dim=0)
        centred = x - mean
        if moments.covariances.dim() == 2:  # diagonal statistics
            covariance_gap = (centred.pow(2).mean(dim=0) - moments.covariances[y]).pow(2).sum()
        else:
            covariance = centred.T @ centred / x.shape[0]
            covariance_gap = (covariance - moments.covariances[y]).pow(2).sum()
        losses.append(((mean - moments.means[y]).pow(2).sum() + beta * covariance_gap) / dim)
    return torch.stack(losses).mean()


def fit_meta_codes(model: FedHypeVAEModel, moments: ClassMoments, num_codes: int, steps: int,
                   lr: float, samples: int, beta: float, radius: float,
                   generator: torch.Generator) -> tuple[Tensor, Tensor, list[float]]:
    """Minimise Eq. 11 (Eq. 13 for K > 1) over codes and mixture weights.

    Returns ``(codes (K, d_v), weights π (K,), loss history)``."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    code_dim = model.client_code.shape[0]
    codes = (0.1 * torch.randn(num_codes, code_dim, generator=generator)).requires_grad_(True)
    logits = torch.zeros(num_codes, requires_grad=num_codes > 1)
    noise = torch.randn(samples, model.config.latent_dim, generator=generator)
    optimizer = torch.optim.Adam([codes, logits] if num_codes > 1 else [codes], lr=lr)
    history: list[float] = []
    if not bool(moments.valid.any()):
        return codes.detach(), torch.softmax(logits.detach(), dim=0), history
    for _ in range(steps):
        optimizer.zero_grad()
        loss = meta_code_objective(model, codes, logits, moments, noise, beta)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for k in range(num_codes):
                codes[k] = project_to_ball(codes[k], radius)
        history.append(float(loss.detach()))
    return codes.detach(), torch.softmax(logits.detach(), dim=0), history
