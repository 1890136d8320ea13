"""DP randomness nobody can predict: Poisson masks and Gaussian noise from a CSPRNG keyed by the OS.

A DP guarantee assumes that the adversary cannot predict the mechanism's noise.  A
generator seeded from the run seed (written to ``config.json``) breaks that: whoever
knows the seed re-simulates both neighbouring hypotheses and tells them apart
(issue #14).  :class:`SecureNoise` therefore draws every random bit from a
cryptographically secure generator keyed afresh, at every call, by the operating
system's (``os.urandom``, i.e. Linux ``getrandom(2)``); it keeps no state, persists
nothing and cannot be re-derived from any configuration.  ``--privacy.reproducible-noise``
selects the seeded source instead (debugging, bit-equality tests); every output then
says that the reported ε is not a DP guarantee (:func:`noise_label`, :data:`REPRODUCIBLE_NOISE_NOTE`).

Construction (what is implemented, and why):

* **Random bytes** (:func:`random_bytes`).  Each call takes a fresh 256-bit key from
  ``os.urandom`` and returns the ChaCha20 keystream of that key (RFC 8439; nonce 0, block
  counter from 0; a new key every GiB, so the 32-bit counter never wraps), i.e. the
  ``cryptography`` package's (OpenSSL's) ChaCha20 encryption of zeros.  This is the
  construction of the Linux kernel's own CSPRNG, which ``os.urandom`` reads: a key
  from the entropy pool, expanded by ChaCha20.  ChaCha20 is a PRF: without the key its
  keystream is computationally indistinguishable from uniform bytes (a distinguisher
  would break ChaCha20 as a stream cipher), and two calls share a key with probability
  ≈ calls² · 2⁻²⁵⁷, so calls are independent.  Unlike a statistical generator (PCG64,
  Mersenne Twister, Philox, ``torch.randn``), whose state can be recovered from a few
  outputs, seeing all the noise of one call reveals nothing about the key or about any
  other call; and since nothing is kept between calls, a fork or a Ray worker never
  shares a stream.  The kernel does the same expansion, but block by block behind a
  system call; OpenSSL's vectorised ChaCha20 produces the bytes 3–14× faster here (Cost
  below).  The security rests on ChaCha20 and on the OS key, as ``os.urandom``'s does.
* **Uniforms.** 8 random bytes per draw, the top 53 bits kept:
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
  coordinate is ``σ · (z₁ + z₂ + z₃ + z₄) / 2`` of four float64 Box–Muller normals (one
  rounding: ÷2 is exact), cast to the requested dtype.  Opacus draws its four normals in
  the tensor's dtype (float32 for a model) from torchcsprng's AES-CTR generator; ours are
  float64.  Opacus also throws away one first draw of its (stateful) generator; a
  generator keyed afresh at every call has no first draw to discard.  What remains, as
  in Opacus: the rounding of ``value + noise`` to float32 in the caller is not hardened
  (a snapping/discrete mechanism would be needed for that).

Cost (``python -m fedsim.privacy.secure_noise``, the shared 2-core CPU of this project,
one torch thread, medians of 20, load average ≈ 3, 2026-12-02): 250 000 Gaussians
16 ms with ChaCha20 against 54 ms when every byte came from ``os.urandom`` (the 8 MB,
32 bytes per coordinate, take 1.9–4.3 ms from ChaCha20 and 14–27 ms from
``os.urandom``; bytes → 53-bit words 2 ms; Box–Muller and the 4-draw sum in float64,
in place, 3–8 ms; ``torch.randn``: 0.6 ms); a 2 000-record Poisson mask 0.03 ms.  On a
default FedHypeVAE client (d = 384, 242 112 parameters, one draw per parameter tensor)
that is ≈ 7–20 ms per DP-SGD step (``benchmarks/dp_step.py``; README, "Performance").
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
_KEY_BYTES = 32  # a 256-bit ChaCha20 key
_NONCE = bytes(16)  # 32-bit block counter 0 ‖ 96-bit nonce 0: each key encrypts one stream
_BYTES_PER_KEY = 2**30  # ≪ 2³² blocks of 64 bytes: the block counter never wraps
_CHUNK_BYTES = 2**20  # zeros encrypted per call into the output buffer (random_bytes)


def random_bytes(count: int) -> bytearray:
    """``count`` bytes of the ChaCha20 keystream under fresh 256-bit keys from ``os.urandom``
    (one key per started GiB; module docstring, "Random bytes").

    The keystream is written in place into one fresh buffer, ``_CHUNK_BYTES`` of zeros
    encrypted at a time (the cipher continues its stream across calls, so the bytes are
    those of one encryption of ``count`` zeros): 3–4× faster for the ~30 MB of a
    DP-CGAN step than encrypting a ``count``-byte zero string into a new one."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # ~30 ms: off the import path

    out = bytearray(count)
    view, zeros = memoryview(out), memoryview(bytes(min(_CHUNK_BYTES, count)))  # the plaintext: zeros
    for start in range(0, count, _BYTES_PER_KEY):
        end = min(count, start + _BYTES_PER_KEY)
        encryptor = Cipher(algorithms.ChaCha20(os.urandom(_KEY_BYTES), _NONCE), mode=None).encryptor()
        for offset in range(start, end, _CHUNK_BYTES):
            size = min(_CHUNK_BYTES, end - offset)
            encryptor.update_into(zeros[:size], view[offset:offset + size])
    return out


def _random_words(count: int) -> Tensor:
    """``count`` uniform integers on ``{0, …, 2⁵³ − 1}`` (the top 53 bits of 8 random
    bytes each), as float64 (exact: every such integer is a float64)."""
    words = np.frombuffer(random_bytes(8 * count), dtype=np.uint64)
    if not words.flags.writeable:  # a read-only buffer (tests' known bytes): shift a copy
        words = words.copy()
    words >>= np.uint64(64 - _MANTISSA_BITS)  # in place, in the buffer of the bytes
    return torch.from_numpy(words.view(np.int64)).to(torch.float64)  # < 2⁵³: the int64 view is exact


def secure_uniform(count: int) -> Tensor:
    """``count`` float64 uniforms on the grid ``2⁻⁵³ ℤ ∩ [0, 1)`` from the CSPRNG."""
    return _random_words(count).mul_(_TWO_POW_MINUS_53)


def secure_standard_normal(count: int) -> Tensor:
    """``count`` float64 N(0, 1) draws: Box–Muller on CSPRNG uniforms (module docstring),
    computed in place in the buffer of the uniforms (one temporary, the cosines)."""
    pairs = (count + 1) // 2
    return _box_muller_in_place(_random_words(2 * pairs))[:count]


def _box_muller_in_place(words: Tensor) -> Tensor:
    """Box–Muller on an even number of 53-bit words (float64), in their own buffer: the
    first half becomes ``r cos 2πu₂``, the second ``r sin 2πu₂`` (one temporary, the cosines)."""
    pairs = words.numel() // 2
    radius = words[:pairs].add_(1.0).mul_(_TWO_POW_MINUS_53)  # u₁ ∈ (0, 1]
    values = radius.numpy()  # the same buffer: NumPy's float64 log and sqrt are 2–10× faster here than torch's
    np.log(values, out=values)
    values *= -2.0
    np.sqrt(values, out=values)
    angle = words[pairs:].mul_(2.0 * math.pi * _TWO_POW_MINUS_53)  # 2π·u₂, u₂ ∈ [0, 1)
    cosine = torch.cos(angle)
    angle.sin_().mul_(radius)  # second half: r sin 2πu₂
    radius.mul_(cosine)  # first half: r cos 2πu₂
    return words


def secure_gaussian(count: int, std: float = 1.0) -> Tensor:
    """``count`` float64 N(0, std²) draws hardened against floating-point attacks: std times
    the sum of four independent Box–Muller normals divided by 2 (Opacus' ``secure_mode``)."""
    draws = secure_standard_normal(_SUMMED_DRAWS * count).view(_SUMMED_DRAWS, count)
    return draws.sum(dim=0).mul_(std / math.sqrt(_SUMMED_DRAWS))  # ÷2 is exact: one rounding


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
        values = secure_gaussian(math.prod(shape), std).view(shape).to(dtype)
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
    """Median milliseconds of 250 000 Gaussians, of their parts (the 8 MB of random bytes
    from ChaCha20 and, for comparison, straight from ``os.urandom``; the float64
    transforms), of ``torch.randn`` and of a 2 000-record Poisson mask."""
    import statistics
    import time

    source, count = SecureNoise(), 250_000
    size = 8 * _SUMMED_DRAWS * count  # 32 bytes per coordinate
    words = _random_words(_SUMMED_DRAWS * count)

    def median_ms(call: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(1000.0 * (time.perf_counter() - start))
        return statistics.median(times)

    def transforms() -> Tensor:  # words → uniforms → Box–Muller → 4-draw sum, as secure_gaussian
        normals = _box_muller_in_place(words.clone())
        return normals.view(_SUMMED_DRAWS, count).sum(dim=0).mul_(0.5).to(torch.float32)

    return {
        "gaussian_250k_ms": median_ms(lambda: source.gaussian((count,), 1.0)),
        "chacha20_bytes_8mb_ms": median_ms(lambda: random_bytes(size)),
        "os_urandom_8mb_ms": median_ms(lambda: os.urandom(size)),
        "bytes_to_53bit_words_ms": median_ms(
            lambda: torch.from_numpy((np.frombuffer(bytes(size), dtype=np.uint64) >> np.uint64(11))
                                     .view(np.int64)).to(torch.float64)),
        "box_muller_and_sum_ms": median_ms(transforms),
        "torch_randn_250k_ms": median_ms(lambda: torch.randn(count)),
        "poisson_mask_2000_ms": median_ms(lambda: source.poisson_batch(2_000, 0.05)),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, value in _benchmark().items():
        print(f"{name:>24}: {value:.3f}")
