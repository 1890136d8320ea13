"""The FedHypeVAE client model: parameter ownership, the per-record objective and the
hypernetwork's code dependence."""

from __future__ import annotations

import dataclasses

import torch

from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.models.fedhypevae import FedHypeVAEModel, is_shared, project_to_ball
from fedsim.models.hypernet import mix_modulations
from fedsim.models.init import seeded
from fedsim.models.losses import gaussian_kl, mmd2, multi_kernel

TINY = FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4, mmd_samples=6)


def model(**changes) -> FedHypeVAEModel:
    with seeded(0, "test-model"):
        return FedHypeVAEModel(12, 3, dataclasses.replace(TINY, **changes), torch.Generator().manual_seed(0))


def test_shared_parameters_are_exactly_the_decoder_and_prior():
    m = model()
    names = [n for n, _ in m.named_parameters()]
    shared = [n for n in names if is_shared(n)]
    private = [n for n in names if not is_shared(n)]
    assert shared and all(n.startswith(("decoder.", "prior.")) for n in shared)
    assert set(private) == {n for n in names if n.startswith("encoder.")} | {"client_code"}
    assert float(m.client_code.detach().norm()) <= TINY.code_radius + 1e-6


def test_record_terms_are_the_documented_formulas():
    m = model(lambda_mmd=0.7, beta=0.3)
    g = torch.Generator().manual_seed(1)
    x, onehot = torch.randn(12, generator=g), torch.tensor([0.0, 1.0, 0.0])
    eps, noise = torch.randn(4, generator=g), torch.randn(6, 4, generator=g)
    terms = m.record_terms(x, onehot, eps, noise)
    # independent recomputation from the sub-modules
    mu_q, logvar_q = m.encoder(x, onehot)
    modulation, context = m.generated(m.client_code)
    z = mu_q + (0.5 * logvar_q).exp() * eps
    reconstruction = (x - m.decoder.decode(modulation, z, onehot)).pow(2).mean()
    mu_p, log_sigma_p = m.prior(context, onehot)
    synthetic = m.decoder.decode(modulation, mu_p + log_sigma_p.exp() * noise, onehot.expand(6, -1))
    mmd = multi_kernel(synthetic, synthetic).mean() - 2 * multi_kernel(x[None], synthetic).mean()
    torch.testing.assert_close(terms["reconstruction"], reconstruction)
    torch.testing.assert_close(terms["kl"], gaussian_kl(mu_q, logvar_q, mu_p, log_sigma_p))
    torch.testing.assert_close(terms["mmd"], mmd)
    torch.testing.assert_close(m.record_loss(x, onehot, eps, noise), reconstruction + 0.3 * terms["kl"] + 0.7 * mmd)
    assert "mmd" not in model(lambda_mmd=0.0).record_terms(x, onehot, eps, noise)


def test_class_average_of_record_mmd_is_the_class_conditional_mmd2_up_to_real_real():
    """Averaged over a class's records, the per-record MMD term is MMD²(real_y, synthetic_y)
    minus the parameter-free real–real term (Eq. 6, decomposed)."""
    m = model()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(9, 12, generator=g)
    onehot = torch.tensor([0.0, 0.0, 1.0]).expand(9, -1)
    eps, noise = torch.randn(9, 4, generator=g), torch.randn(6, 4, generator=g)
    per_record = torch.stack([m.record_terms(x[j], onehot[j], eps[j], noise)["mmd"] for j in range(9)])
    modulation, context = m.generated(m.client_code)
    synthetic = m.sample(modulation, context, onehot[:6], noise)
    expected = mmd2(x, synthetic) - multi_kernel(x, x).mean()
    torch.testing.assert_close(per_record.mean(), expected, rtol=1e-5, atol=1e-6)


def test_the_code_modulates_the_generator_unless_the_hypernetwork_is_ablated():
    onehot = torch.eye(3)
    noise = torch.zeros(3, 4)
    for hypernetwork in (True, False):
        m = model(hypernetwork=hypernetwork)
        with torch.no_grad():
            torch.nn.init.normal_(m.decoder.head.weight, std=0.5)  # make the modulation visible
            a = m.sample(*m.generated(torch.zeros(4)), onehot, noise)
            b = m.sample(*m.generated(torch.full((4,), 1.5)), onehot, noise)
        assert (float((a - b).abs().max()) > 1e-3) == hypernetwork


def test_mixing_with_one_hot_weights_selects_one_modulation_and_projection_bounds_codes():
    m = model()
    first, second = m.decoder.generate(torch.zeros(4)), m.decoder.generate(torch.ones(4))
    mixed = mix_modulations([first, second], torch.tensor([0.0, 1.0]))
    for (scale, shift), (s2, b2) in zip(mixed, second):
        torch.testing.assert_close(scale, s2)
        torch.testing.assert_close(shift, b2)
    half = mix_modulations([first, second], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(half[0][1], 0.5 * (first[0][1] + second[0][1]))
    big = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(project_to_ball(big, 1.0), torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(project_to_ball(torch.tensor([0.3, 0.4]), 1.0), torch.tensor([0.3, 0.4]))
