"""DP randomness nobody can predict: Poisson masks and Gaussian noise from the OS CSPRNG.

A DP guarantee assumes that the adversary cannot predict the mechanism's noise.  A
generator seeded from the run seed (written to ``config.json``) breaks that: whoever
knows the seed re-simulates both neighbouring hypotheses and tells them apart
(issue #14).  :class:`SecureNoise` therefore draws every random bit from the
operating system's cryptographically secure generator (``os.urandom``, i.e. Linux
``getrandom(2)``), keeps no state, persists nothing and cannot be re-derived from
any configuration.  ``--privacy.reproducible-noise`` selects the seeded source
instead (debugging, bit-equality tests); every output then says that the reported ε
is not a DP guarantee (:func:`noise_label`, :data:`REPRODUCIBLE_NOISE_NOTE`).

Construction (what is implemented, and why):

* **Uniforms.** 8 bytes of ``os.urandom`` per draw, the top 53 bits kept:
  ``u = k · 2⁻⁵³`` with ``k`` uniform on ``{0, …, 2⁵³ − 1}``, i.e. every float64 of
  the grid ``2⁻⁵³ ℤ ∩ [0, 1)`` with equal probability.
* **Poisson mask.** Record ``j`` joins the batch iff ``u_j < q``: an independent
  Bernoulli with ``P = ⌈q·2⁵³⌉ / 2⁵³``, within ``2⁻⁵³`` of ``q``.
* **Gaussian.** Box–Muller in float64 on two uniforms, ``u₁ ∈ (0, 1]`` (``(k + 1)·2⁻⁵³``,
  so ``log u₁`` is finite) and ``u₂ ∈ [0, 1)``:
  ``r = √(−2 ln u₁)``, ``z = (r cos 2πu₂, r sin 2πu₂)``, two independent N(0, 1).
* **Floating-point precaution (as Opacus' ``secure_mode``).**  A single Box–Muller (or
  any single floating-point) Gaussian draw takes values in a sparse, structured set;
  after adding it to the true value, which outputs are reachable depends on the true
  value, and an attacker who sees the output bits can tell neighbouring datasets apart
  (Mironov 2012 for the Laplace mechanism; Jin et al. 2022, arXiv:2112.05307, for the
  Gaussian mechanism, Opacus' included).  Opacus' fix, following
  Holohan & Braghin (arXiv:2107.10138, §5.1, with n = 2), sums ``2n = 4`` independent
  ``N(0, σ²)`` draws and divides by ``√(2n) = 2``: the result is exactly ``N(0, σ²)`` but
  its set of attainable floating-point values is dense, and reversing it costs
  ``2^{53·(2n−1)} = 2¹⁵⁹`` work instead of ``2⁵³``.  We do the same: each output
  coordinate is ``(z₁ + z₂ + z₃ + z₄) / 2`` of four float64 Box–Muller normals, then
  multiplied by σ and cast to the requested dtype.  Opacus also throws away one
  first draw of its (stateful) generator; a stateless OS source has no first draw to
  discard.  What remains, as in Opacus: the rounding of ``value + noise`` to float32 in
  the caller is not hardened (a snapping/discrete mechanism would be needed for that).

Cost (``python -m fedsim.privacy.secure_noise``, the shared 2-core CPU of this project,
one torch thread, medians, varying with the load): 250 000 Gaussians ≈ 120–270 ms
(``torch.randn``: 3–10 ms; the 8 MB of kernel randomness, 32 bytes per coordinate, is
most of it, the rest is Box–Muller in float64), a 2 000-record Poisson mask ≈ 0.15 ms.
On a default FedHypeVAE client (d = 384, 241 840 parameters, batch 64) that adds
≈ 240 ms to a ≈ 520 ms DP-SGD step.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from fedsim.privacy.config import PrivacyConfig
    from fedsim.privacy.noise import NoiseSource

SECURE_NOISE_LABEL = "secure (OS CSPRNG)"
REPRODUCIBLE_NOISE_LABEL = "reproducible (seeded; NOT a DP guarantee)"
NO_NOISE_LABEL = "none (epsilon=inf)"
REPRODUCIBLE_NOISE_NOTE = (
    "privacy.reproducible_noise: DP noise and Poisson sampling came from a generator seeded "
    "by the run seed in config.json; anyone who knows the seed can rebuild the noise, so the "
    "reported epsilon is NOT a differential-privacy guarantee (debugging and equivalence tests only)."
)

_MANTISSA_BITS = 53
_TWO_POW_MINUS_53 = 2.0**-_MANTISSA_BITS
_SUMMED_DRAWS = 4  # Opacus' 2n with n = 2 (module docstring)


def _random_words(count: int) -> Tensor:
    """``count`` uniform integers on ``{0, …, 2⁵³ − 1}`` from the OS CSPRNG, as float64
    (exact: every such integer is a float64)."""
    words = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(64 - _MANTISSA_BITS)
    return torch.from_numpy(words.astype(np.float64))


def secure_uniform(count: int) -> Tensor:
    """``count`` float64 uniforms on the grid ``2⁻⁵³ ℤ ∩ [0, 1)`` from the OS CSPRNG."""
    return _random_words(count).mul_(_TWO_POW_MINUS_53)


def secure_standard_normal(count: int) -> Tensor:
    """``count`` float64 N(0, 1) draws: Box–Muller on CSPRNG uniforms (module docstring)."""
    pairs = (count + 1) // 2
    words = _random_words(2 * pairs)
    radius = words[:pairs].add_(1.0).mul_(_TWO_POW_MINUS_53).log_().mul_(-2.0).sqrt_()  # u₁ ∈ (0, 1]
    angle = words[pairs:].mul_(2.0 * math.pi * _TWO_POW_MINUS_53)  # 2π·u₂, u₂ ∈ [0, 1)
    normals = torch.empty(2 * pairs, dtype=torch.float64)
    torch.mul(radius, torch.cos(angle), out=normals[:pairs])
    torch.mul(radius, angle.sin_(), out=normals[pairs:])
    return normals[:count]


def secure_gaussian(count: int) -> Tensor:
    """``count`` float64 N(0, 1) draws hardened against floating-point attacks: the sum of
    four independent Box–Muller normals divided by 2 (Opacus' ``secure_mode``)."""
    draws = secure_standard_normal(_SUMMED_DRAWS * count).view(_SUMMED_DRAWS, count)
    return draws.sum(dim=0).div_(math.sqrt(_SUMMED_DRAWS))


class SecureNoise:
    """The :class:`~fedsim.privacy.noise.NoiseSource` of every DP mechanism by default.

    Stateless: each call reads fresh bytes from ``os.urandom``.  Two instances (or two
    runs with the same seed, or a process and its fork: the kernel source is fork-safe,
    unlike a user-space generator copied into a child) never share a stream;
    ``state_dict`` holds nothing secret, ``reseed`` is a no-op, and the object pickles
    to Ray workers as an empty shell (no file handle is kept open)."""

    kind = "secure"

    def poisson_batch(self, num_records: int, sample_rate: float) -> Tensor:
        """Sorted int64 indices of the records in one Poisson batch: each record joins
        independently with probability ``sample_rate`` (a CSPRNG Bernoulli)."""
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")
        if num_records < 0:
            raise ValueError(f"number of records must be >= 0, got {num_records}")
        mask = secure_uniform(num_records) < sample_rate
        return torch.nonzero(mask, as_tuple=False).flatten()

    def gaussian(self, shape: Sequence[int], std: float, dtype: torch.dtype = torch.float32,
                 device: torch.device | None = None) -> Tensor:
        """``N(0, std²)`` noise of ``shape`` and ``dtype``, generated in float64 on the CPU,
        cast, and moved to ``device`` (default: the CPU); ``std = 0`` returns zeros without
        drawing."""
        if not std >= 0.0 or math.isinf(std):
            raise ValueError(f"noise std must be finite and >= 0, got {std}")
        shape = tuple(int(s) for s in shape)
        if std == 0.0:
            return torch.zeros(shape, dtype=dtype, device=device)
        values = secure_gaussian(math.prod(shape)).mul_(std).view(shape).to(dtype)
        return values if device is None else values.to(device)

    def state_dict(self) -> dict[str, Any]:
        """Only the kind of source: the noise itself is never persisted."""
        return {"kind": self.kind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Accept the state of a secure source (nothing to restore); refuse another kind,
        which would mean a checkpoint of a different noise configuration."""
        if state.get("kind") != self.kind:
            raise ValueError(f"cannot restore a {state.get('kind')!r} noise state into a secure noise source")

    def reseed(self, entropy: int) -> None:
        """No-op: there is no seed (a restarted worker's draws are fresh anyway)."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        return "SecureNoise()"


def reproducible(privacy: "PrivacyConfig") -> bool:
    """Whether ``privacy`` draws its noise from a seeded generator: with
    ``--privacy.reproducible-noise``, and with ε = ∞ (no DP, so nothing to protect and
    the run stays reproducible from its seed)."""
    return bool(privacy.reproducible_noise) or not privacy.private


def dp_noise(privacy: "PrivacyConfig", rng: "torch.Generator") -> "NoiseSource":
    """The noise source of a client whose seeded generator ``rng`` also draws its
    data-independent model randomness (reparameterisation noise, MMD samples, fake
    labels): :class:`SecureNoise` by default; with ``--privacy.reproducible-noise`` or
    ε = ∞ the seeded source on ``rng`` itself, so every draw keeps the order of a
    single seeded stream (see :func:`reproducible`)."""
    if not reproducible(privacy):
        return SecureNoise()
    from fedsim.privacy.noise import SeededNoise

    return SeededNoise(rng)


def noise_source(privacy: "PrivacyConfig", seed: int, *tags: int | str) -> "NoiseSource":
    """The noise source of the component named by ``tags``: :class:`SecureNoise` by
    default; the seeded source of ``torch_generator(seed, *tags)`` with
    ``--privacy.reproducible-noise`` or ε = ∞ (see :func:`reproducible`)."""
    from fedsim.seeding import torch_generator

    return dp_noise(privacy, torch_generator(seed, *tags))


def noise_label(privacy: "PrivacyConfig") -> str:
    """What every output states as the run's noise source."""
    if not privacy.private:
        return NO_NOISE_LABEL
    return REPRODUCIBLE_NOISE_LABEL if privacy.reproducible_noise else SECURE_NOISE_LABEL


def _benchmark(repeats: int = 20) -> dict[str, float]:
    """Median milliseconds of 250 000 Gaussians and of a 2 000-record mask."""
    import statistics
    import time

    source = SecureNoise()

    def median_ms(call: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(1000.0 * (time.perf_counter() - start))
        return statistics.median(times)

    return {
        "gaussian_250k_ms": median_ms(lambda: source.gaussian((250_000,), 1.0)),
        "poisson_mask_2000_ms": median_ms(lambda: source.poisson_batch(2_000, 0.05)),
        "torch_randn_250k_ms": median_ms(lambda: torch.randn(250_000)),
    }


if __name__ == "__main__":
    for name, value in _benchmark().items():
        print(f"{name:>24}: {value:.3f}")
