"""Where the randomness of every DP mechanism is drawn: Poisson batches and Gaussian noise.

Every mechanism of a client takes a :class:`NoiseSource`:

* DP-SGD's Poisson subsampling (:meth:`NoiseSource.poisson_batch`): each of the ``n``
  records joins a step's batch independently with probability ``q``.  The RDP/PRV
  analyses of the subsampled Gaussian mechanism assume exactly this, so batch sizes
  vary (Binomial(n, q)) and may be 0;
* the Gaussian noise of DP-SGD (:func:`fedsim.privacy.dp_sgd.add_gaussian_noise`), of the
  class-statistics release (:mod:`fedsim.privacy.statistics`) and of the label-count
  release (:mod:`fedsim.privacy.labels`): :meth:`NoiseSource.gaussian` returns
  ``std · N(0, I)`` of a given shape.  Callers skip the draw when ``std = 0`` (ε = ∞).

:class:`SeededNoise` draws from a seeded ``torch.Generator`` (:mod:`fedsim.seeding`), so a
run is reproducible from its seed: the Poisson mask is ``U < q`` with
``U ~ Uniform[0, 1)^n`` from ``torch.rand``, the noise ``std · torch.randn``.  Such noise is
fine for simulation; a deployment needs noise an adversary cannot predict (and floating
point samplers with known weaknesses, Mironov 2012, avoided).  Other sources implement
the same protocol.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class NoiseSource(Protocol):
    """The randomness of a client's DP mechanisms (module docstring)."""

    def poisson_batch(self, num_records: int, sample_rate: float) -> Tensor:
        """Sorted int64 indices of the records drawn into one Poisson batch of rate
        ``sample_rate`` (each record independently; ValueError unless 0 < q ≤ 1)."""
        ...

    def gaussian(self, shape: Sequence[int], std: float, dtype: torch.dtype = torch.float32,
                 device: torch.device | None = None) -> Tensor:
        """``std · N(0, I)`` of ``shape`` and ``dtype`` (independent coordinates), on
        ``device`` (default: the CPU) — drawn on the CPU and moved, so the same stream gives
        the same values on every device."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to continue the same stream (checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`state_dict`."""
        ...

    def reseed(self, entropy: int) -> None:
        """Start a fresh stream from ``entropy`` (fault recovery: never repeat released noise)."""
        ...


def check_sample_rate(sample_rate: float) -> None:
    """ValueError unless ``0 < sample_rate ≤ 1``."""
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")


class SeededNoise:
    """A :class:`NoiseSource` drawing from ``generator`` (module docstring).

    The generator may be shared with other data-independent randomness of the client
    (reparameterisation noise, fake labels): draws then interleave in program order,
    and the whole stream is reproduced from the run seed."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def poisson_batch(self, num_records: int, sample_rate: float) -> Tensor:
        check_sample_rate(sample_rate)
        mask = torch.rand(num_records, generator=self.generator) < sample_rate
        return torch.nonzero(mask, as_tuple=False).flatten()

    def gaussian(self, shape: Sequence[int], std: float, dtype: torch.dtype = torch.float32,
                 device: torch.device | None = None) -> Tensor:
        values = std * torch.randn(tuple(shape), generator=self.generator, dtype=dtype)
        return values if device is None else values.to(device)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def reseed(self, entropy: int) -> None:
        self.generator.manual_seed(int(entropy))
