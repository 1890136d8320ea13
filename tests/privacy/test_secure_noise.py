"""DP randomness from the OS CSPRNG (issues #14, #17): the distributions are the requested
ones (checked against their closed forms with tolerances from the standard error), every
bit is the ChaCha20 keystream of a fresh key from ``os.urandom`` (checked against a
pure-Python ChaCha20 written from RFC 8439 and its test vector, and by recomputing
Box–Muller by hand from known bytes), nothing is persisted or derivable from the seed,
and every output names the source.

The statistical checks run on fresh OS randomness, so they are not bit-deterministic;
their tolerances (6 standard errors, KS p > 1e-6) make a false failure a ~1e-6 event
while a wrong σ, a missing factor or a biased mask fails them every time."""

from __future__ import annotations

import math
import pickle
import struct
import sys
import types

import numpy as np
import pytest
import torch
import tyro
from scipy import stats

from fedsim.commands.train import TrainCommand
from fedsim.errors import UserError
from fedsim.privacy import secure_noise
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.state import PrivacyState
from fedsim.privacy.ledger import PAPER_MODE_NOTE, format_ledger, ledger_to_json, privacy_record
from fedsim.privacy.plan import DPSGDPlan
from fedsim.privacy.secure_noise import (
    NO_NOISE_LABEL,
    REPRODUCIBLE_NOISE_LABEL,
    REPRODUCIBLE_NOISE_NOTE,
    SECURE_NOISE_LABEL,
    SecureNoise,
    noise_label,
    noise_source,
)
from fedsim.seeding import torch_generator

TOLERANCE_SE = 6.0  # standard errors: a false failure has probability ~2e-9 per check


# --- the distributions -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_mean_and_std_match_the_requested_std(dtype):
    n, std = 400_000, 2.5
    noise = SecureNoise().gaussian((400, 1000), std, dtype=dtype)
    assert noise.shape == (400, 1000) and noise.dtype == dtype
    sample = noise.double().flatten()
    assert abs(sample.mean().item()) < TOLERANCE_SE * std / math.sqrt(n)
    # the sample std of n normals has standard error σ/√(2n)
    assert abs(sample.std().item() - std) < TOLERANCE_SE * std / math.sqrt(2 * n)


def test_gaussian_is_normal_by_kolmogorov_smirnov():
    std = 0.7
    sample = SecureNoise().gaussian((200_000,), std, dtype=torch.float64).numpy() / std
    result = stats.kstest(sample, "norm")
    assert result.pvalue > 1e-6, result
    # and the test has power: a 5 % error in σ is rejected
    assert stats.kstest(sample * 1.05, "norm").pvalue < 1e-6


def test_zero_std_draws_nothing_and_bad_std_is_refused(monkeypatch):
    monkeypatch.setattr(secure_noise.os, "urandom", lambda n: pytest.fail("drew entropy for std = 0"))
    assert torch.equal(SecureNoise().gaussian((3, 2), 0.0), torch.zeros(3, 2))
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="std"):
            SecureNoise().gaussian((3,), bad)


def _known_bytes(words: list[int]) -> bytes:
    return b"".join(struct.pack("=Q", w) for w in words)


# --- the random bytes: ChaCha20 (RFC 8439) keyed by os.urandom ------------------------------
def _chacha20_keystream(key: bytes, length: int) -> bytes:
    """RFC 8439 §2.3–2.4 written out: the keystream of ``key`` with nonce 0 and block
    counter 0, 1, 2, … (an independent implementation of what ``random_bytes`` expands)."""
    mask = 0xFFFFFFFF

    def quarter(s, a, b, c, d):
        for x, y, z, r in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
            s[x] = (s[x] + s[y]) & mask
            s[z] ^= s[x]
            s[z] = ((s[z] << r) | (s[z] >> (32 - r))) & mask

    out = b""
    for counter in range((length + 63) // 64):
        initial = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), counter, 0, 0, 0]
        state = list(initial)
        for _ in range(10):
            for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                               (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
                quarter(state, a, b, c, d)
        out += struct.pack("<16I", *((x + y) & mask for x, y in zip(state, initial)))
    return out[:length]


def test_reference_chacha20_matches_the_rfc_test_vector():
    """RFC 8439 A.1, test vector #1: the keystream of the all-zero key and nonce."""
    assert _chacha20_keystream(bytes(32), 64).hex() == (
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586")


def test_random_bytes_are_the_chacha20_keystream_of_a_fresh_os_urandom_key(monkeypatch):
    keys = []

    def fake_urandom(n):
        keys.append(bytes(range(len(keys), len(keys) + n)))
        return keys[-1]

    monkeypatch.setattr(secure_noise.os, "urandom", fake_urandom)
    first, second = secure_noise.random_bytes(300), secure_noise.random_bytes(70)
    assert [len(k) for k in keys] == [32, 32]  # a new 256-bit key from the OS for every call
    assert first == _chacha20_keystream(keys[0], 300) and second == _chacha20_keystream(keys[1], 70)
    assert secure_noise.random_bytes(0) == b"" and len(keys) == 2


def test_random_bytes_take_a_fresh_key_per_chunk(monkeypatch):
    """Past ``_BYTES_PER_KEY`` bytes the stream continues under a new OS key (the block
    counter never wraps); shown with a 128-byte chunk."""
    keys = []
    monkeypatch.setattr(secure_noise, "_BYTES_PER_KEY", 128)
    monkeypatch.setattr(secure_noise.os, "urandom", lambda n: keys.append(bytes([len(keys) + 1]) * n) or keys[-1])
    stream = secure_noise.random_bytes(300)
    assert len(keys) == 3
    assert stream == b"".join(_chacha20_keystream(k, size) for k, size in zip(keys, (128, 128, 44)))


@pytest.mark.parametrize("chunk", [1, 64, 100])
def test_random_bytes_written_chunk_by_chunk_are_one_keystream(monkeypatch, chunk):
    """The buffer is filled ``_CHUNK_BYTES`` at a time (issue #17): the bytes are still the
    keystream of one key, compared with the reference ChaCha20, also across a key change."""
    keys = []
    monkeypatch.setattr(secure_noise, "_CHUNK_BYTES", chunk)
    monkeypatch.setattr(secure_noise.os, "urandom", lambda n: keys.append(bytes([len(keys) + 7]) * n) or keys[-1])
    assert secure_noise.random_bytes(300) == _chacha20_keystream(keys[0], 300)
    monkeypatch.setattr(secure_noise, "_BYTES_PER_KEY", 128)
    stream = secure_noise.random_bytes(300)
    assert stream == b"".join(_chacha20_keystream(k, size) for k, size in zip(keys[1:], (128, 128, 44)))


def test_two_calls_are_independent():
    """Fresh keys: the correlation of two draws is within 6 standard errors of 0."""
    n = 200_000
    first, second = (SecureNoise().gaussian((n,), 1.0, dtype=torch.float64) for _ in range(2))
    correlation = float(torch.corrcoef(torch.stack([first, second]))[0, 1])
    assert abs(correlation) < TOLERANCE_SE / math.sqrt(n)


# --- the transforms, from known bytes --------------------------------------------------------
def test_gaussian_is_four_box_muller_normals_of_the_random_bytes_summed_and_halved(monkeypatch):
    """An independent scalar recomputation from the bytes the CSPRNG returned: each output
    coordinate uses 4 normals (Opacus' floating-point precaution), i.e. 32 bytes."""
    rng = np.random.default_rng(5)  # only to choose the fake CSPRNG bytes
    words = [int(w) for w in rng.integers(0, 2**64, size=4 * 3, dtype=np.uint64)]
    requested = []

    def fake_bytes(n):
        requested.append(n)
        return _known_bytes(words)[:n]

    monkeypatch.setattr(secure_noise, "random_bytes", fake_bytes)
    std = 1.5
    noise = SecureNoise().gaussian((3,), std, dtype=torch.float64)
    assert requested == [32 * 3]

    k = [w >> 11 for w in words]  # the top 53 bits
    pairs = len(k) // 2
    normals = []
    for i in range(pairs):
        u1, u2 = (k[i] + 1) * 2.0**-53, k[pairs + i] * 2.0**-53
        normals.append(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))
    for i in range(pairs):
        u1, u2 = (k[i] + 1) * 2.0**-53, k[pairs + i] * 2.0**-53
        normals.append(math.sqrt(-2 * math.log(u1)) * math.sin(2 * math.pi * u2))
    expected = [std * sum(normals[j * 3 + c] for j in range(4)) / 2 for c in range(3)]
    assert noise.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_extreme_uniforms_stay_finite(monkeypatch):
    """All-zero and all-one random bytes (u₁ = 2⁻⁵³ and u₁ = 1): finite noise, no log(0)."""
    for byte in (b"\x00", b"\xff"):
        monkeypatch.setattr(secure_noise, "random_bytes", lambda n, b=byte: b * n)
        assert torch.isfinite(SecureNoise().gaussian((8,), 1.0, dtype=torch.float64)).all()


def test_poisson_mask_rate_matches_q_and_indices_are_sorted_int64():
    n, q = 200_000, 0.05
    batch = SecureNoise().poisson_batch(n, q)
    assert batch.dtype == torch.int64 and batch.dim() == 1
    assert torch.all(batch[1:] > batch[:-1]) and 0 <= batch.min() and batch.max() < n
    binomial_se = math.sqrt(n * q * (1 - q))
    assert abs(len(batch) - n * q) < TOLERANCE_SE * binomial_se
    # records join independently: the overlap of two batches is Binomial(n, q²)
    other = SecureNoise().poisson_batch(n, q)
    overlap = len(np.intersect1d(batch.numpy(), other.numpy()))
    assert abs(overlap - n * q * q) < TOLERANCE_SE * math.sqrt(n * q * q * (1 - q * q))


def test_poisson_mask_is_a_53_bit_threshold_of_the_random_bytes(monkeypatch):
    """Record j joins iff its 53-bit uniform k_j·2⁻⁵³ is below q (recomputed by hand)."""
    q = 0.3
    threshold = int(q * 2**53)
    words = [((threshold + d) << 11) | 0x7FF for d in (-1, 0, 1, 5)] + [0, (2**53 - 1) << 11]
    monkeypatch.setattr(secure_noise, "random_bytes", lambda n: _known_bytes(words)[:n])
    batch = SecureNoise().poisson_batch(len(words), q)
    expected = [j for j, w in enumerate(words) if (w >> 11) * 2.0**-53 < q]
    assert batch.tolist() == expected == [0, 1, 4]


def test_poisson_mask_edge_rates():
    assert torch.equal(SecureNoise().poisson_batch(50, 1.0), torch.arange(50))
    assert SecureNoise().poisson_batch(0, 0.5).numel() == 0
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sample rate"):
            SecureNoise().poisson_batch(10, bad)


# --- nobody can predict it ---------------------------------------------------------------
def test_two_runs_with_the_same_seed_draw_different_noise():
    privacy = PrivacyConfig(epsilon=1.0)
    first, second = (noise_source(privacy, 0, "fedhypevae", "steps", 3) for _ in range(2))
    assert not torch.equal(first.gaussian((64,), 1.0), second.gaussian((64,), 1.0))
    assert not torch.equal(first.poisson_batch(2000, 0.5), second.poisson_batch(2000, 0.5))


def test_draws_ignore_torch_and_numpy_global_seeds():
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        np.random.seed(0)
        draws.append(SecureNoise().gaussian((32,), 1.0))
    assert not torch.equal(*draws)


def test_nothing_about_the_noise_is_persisted_or_pickled():
    source = SecureNoise()
    before = pickle.dumps(source)
    source.gaussian((1000,), 1.0)
    source.poisson_batch(1000, 0.1)
    source.reseed(12345)  # a no-op: there is no seed
    assert pickle.dumps(source) == before  # no stream state to carry
    assert source.state_dict() == {"kind": "secure"} and vars(source) == {}
    copy = pickle.loads(before)
    assert isinstance(copy, SecureNoise)
    assert not torch.equal(copy.gaussian((64,), 1.0), source.gaussian((64,), 1.0))
    copy.load_state_dict(source.state_dict())
    with pytest.raises(ValueError, match="secure"):
        copy.load_state_dict({"kind": "seeded", "generator": [0]})


# --- the factory -------------------------------------------------------------------------
def _seeded_noise_class(monkeypatch):
    """``fedsim.privacy.noise.SeededNoise`` (from the trainer branch); until that module
    exists, a minimal stand-in with the same draws as today's code."""
    try:
        from fedsim.privacy.noise import SeededNoise
        return SeededNoise
    except ModuleNotFoundError:
        pass

    class SeededNoise:  # stand-in: torch.rand mask and torch.randn noise, as today
        def __init__(self, generator):
            self.generator = generator

        def poisson_batch(self, num_records, sample_rate):
            mask = torch.rand(num_records, generator=self.generator) < sample_rate
            return torch.nonzero(mask, as_tuple=False).flatten()

        def gaussian(self, shape, std, dtype=torch.float32):
            return std * torch.randn(shape, generator=self.generator, dtype=dtype)

    module = types.ModuleType("fedsim.privacy.noise")
    module.SeededNoise = SeededNoise
    monkeypatch.setitem(sys.modules, "fedsim.privacy.noise", module)
    return SeededNoise


def test_factory_is_secure_by_default():
    assert isinstance(noise_source(PrivacyConfig(), 0, "statistics", 1), SecureNoise)
    assert isinstance(noise_source(PrivacyConfig(privacy_mode="paper"), 0, "labels"), SecureNoise)


@pytest.mark.parametrize("privacy", [PrivacyConfig(reproducible_noise=True), PrivacyConfig(epsilon=math.inf)],
                         ids=["reproducible-noise", "epsilon-inf"])
def test_factory_gives_the_seeded_stream_of_the_tags(monkeypatch, privacy):
    seeded = _seeded_noise_class(monkeypatch)
    source = noise_source(privacy, 7, "fedhypevae-client-steps", 2)
    assert isinstance(source, seeded)
    reference = seeded(torch_generator(7, "fedhypevae-client-steps", 2))
    assert torch.equal(source.poisson_batch(500, 0.2), reference.poisson_batch(500, 0.2))
    assert torch.equal(source.gaussian((4, 5), 1.3), reference.gaussian((4, 5), 1.3))
    first, second = (noise_source(privacy, 7, "statistics", 2) for _ in range(2))
    assert torch.equal(first.gaussian((64,), 1.0), second.gaussian((64,), 1.0))  # same seed, same noise


# --- the option --------------------------------------------------------------------------
def test_reproducible_noise_flag_parses_defaults_off_and_validates():
    assert TrainCommand().privacy.reproducible_noise is False
    command = tyro.cli(TrainCommand, args=["--privacy.reproducible-noise"])
    assert command.privacy.reproducible_noise is True
    command.privacy.validate()
    assert tyro.cli(TrainCommand, args=[]).privacy.reproducible_noise is False
    with pytest.raises(UserError, match="--privacy.reproducible-noise"):
        PrivacyConfig(reproducible_noise="yes").validate()
    doc = PrivacyConfig.__dataclass_fields__["reproducible_noise"]
    assert doc.default is False
    help_text = tyro.extras.get_parser(TrainCommand).format_help()
    assert "reproducible-noise" in help_text and "does NOT hold" in " ".join(help_text.split())


# --- the labels --------------------------------------------------------------------------
def _records(privacy: PrivacyConfig) -> list:
    records = []
    for client_id, n in enumerate((60, 90)):  # a fixed σ: the labels, not the calibration, are tested here
        steps = 2 * math.ceil(n / 16)
        plan = DPSGDPlan(num_records=n, sample_rate=16 / n, expected_batch_size=16.0,
                         steps_per_epoch=steps // 2, total_steps=steps,
                         noise_multiplier=2.0 if privacy.private else 0.0, target_epsilon=privacy.epsilon)
        state = PrivacyState.fresh(privacy, plan, local_epochs=2, noise=noise_source(privacy, 0, client_id))
        if privacy.private:
            state.accountant.record(plan.noise_multiplier, plan.sample_rate, plan.total_steps, kind="dp-sgd")
        records.append(privacy_record(client_id, state, None, None))
    return records


def test_ledger_says_secure_noise_and_adds_no_note():
    records = _records(PrivacyConfig(epsilon=2.0))
    document = ledger_to_json(records)
    assert document["noise"] == SECURE_NOISE_LABEL == "secure (OS CSPRNG)"
    assert all(row["noise"] == SECURE_NOISE_LABEL for row in document["clients"])
    assert document["note"] == ""
    assert "noise: secure (OS CSPRNG)" in format_ledger(records)


@pytest.mark.parametrize("mode", ["strict", "paper"])
def test_ledger_says_reproducible_noise_is_not_a_guarantee(mode):
    records = _records(PrivacyConfig(epsilon=2.0, reproducible_noise=True, privacy_mode=mode))
    document = ledger_to_json(records)
    assert document["noise"] == REPRODUCIBLE_NOISE_LABEL == "reproducible (seeded; NOT a DP guarantee)"
    assert all(row["noise"] == REPRODUCIBLE_NOISE_LABEL for row in document["clients"])
    assert REPRODUCIBLE_NOISE_NOTE in document["note"] and "NOT a differential-privacy guarantee" in document["note"]
    assert (PAPER_MODE_NOTE in document["note"]) == (mode == "paper")  # both caveats kept
    assert "NOTE: " in format_ledger(records) and REPRODUCIBLE_NOISE_LABEL in format_ledger(records)


def test_no_dp_has_no_noise_label_to_claim():
    assert noise_label(PrivacyConfig(epsilon=math.inf)) == NO_NOISE_LABEL
    assert noise_label(PrivacyConfig(epsilon=math.inf, reproducible_noise=True)) == NO_NOISE_LABEL
    assert ledger_to_json(_records(PrivacyConfig(epsilon=math.inf)))["noise"] == NO_NOISE_LABEL
