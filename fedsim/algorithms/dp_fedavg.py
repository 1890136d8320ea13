"""``dp-fedavg`` and ``dp-fedprox``: FedAvg and FedProx (:mod:`fedsim.algorithms.fedavg`,
:mod:`fedsim.algorithms.fedprox`) always under record-level DP-SGD — the same
:class:`~fedsim.privacy.dp_trainer.DPTrainer`, Poisson sampling, clipping and
accountant as the generators, at the run's ``--privacy.*`` ε and δ — so the table and
the sweeps compare the generators with federated classifiers *at equal ε*.

Only the options differ from the non-private rows: ``private`` is forced to True, and
the learning rate and the Poisson batch size (the record's ``batch_size``, used when
``--training.batch-size`` is not given) are DP-appropriate.  They were chosen on
VALIDATION accuracy (never test) by ``benchmarks/dp_fedavg_hparams.py``::

    python benchmarks/dp_fedavg_hparams.py

a grid of lr × B × local epochs on the built-in ``synthetic`` and ``digits`` datasets
(10 clients, Dirichlet α = 0.3, 50 rounds, one seed) at ε = 1 and ε = 8 (δ = 1e-5).
Measured (08:30-08:55 UTC, 2 Dec 2026, a 2-core machine at load ≈ 12; validation
accuracy %, mean across clients; one noise draw per cell — the runs then used the
secure noise source; the script now seeds it)::

    lr × B                 digits ε=1  digits ε=8  synthetic ε=1  synthetic ε=8
    0.1 × 64 / 256 / 1024  53.8 / 53.4 / 42.7   70.7 / 67.0 / 67.3   30.2 / 28.0 (36.3) / 22.5   – / 58.2 / –
    0.5 × 64 / 256 / 1024  45.0 / 56.7 / 50.6   90.2 / 85.1 / 85.5   26.3 / 23.9 (30.5) / –      – / 73.7 / –
    2   × 64 / 256 / 1024  38.5 / 60.6 / 46.1   88.2 / 92.0 / 91.7   – / 27.3 / –                – / 66.1 / –

(synthetic: only B = 256 was run for every lr — the 64/1024 cells took 1-2 min each
under that load and were cut; in brackets, a repeat of the same cell, which shows the
noise spread of a synthetic ε = 1 cell, ≈ 6-8 points.)  B = 256 is the best batch at
every lr on digits and at lr 0.1 on synthetic.  Over the four cells at B = 256 the
mean is 61.5 % for lr 2, 59.9 % for lr 0.5 and 51.7 % for lr 0.1: lr 2 and 0.5 differ
by less than one cell's noise spread, and lr 0.5 is far better on the 384-d
synthetic embeddings at ε = 8 (73.7 vs 66.1 %), the high-norm case of foundation-model
embeddings; so lr = 0.5 (also the non-private FedAvg's lr; like it, scale it like
1/E‖x‖² for other features).  Local epochs: E = 1 (the table's schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.fedprox import FedProxConfig
from fedsim.validation import check

DP_LR = 0.5
"""Default lr of the DP rows (benchmarks/dp_fedavg_hparams.py; module docstring)."""
DP_BATCH_SIZE = 256
"""Expected Poisson batch size B of the DP rows (their records' ``batch_size``, used when
--training.batch-size is not given; module docstring): larger than the non-private 128, so the
noise σ·C/B per step is smaller and there are fewer steps per epoch to account for; B ≥ n_i
means q = 1, one full-batch step per local epoch."""


def _check_private(config: FedAvgConfig, prefix: str) -> None:
    check(config, prefix, [("private", config.private is True,
                            "True (this method is always DP; use fedavg/fedprox for the non-private rows)")])


@dataclass(frozen=True)
class DPFedAvgConfig(FedAvgConfig):
    """dp-fedavg options: FedAvg's, always trained with DP-SGD under --privacy.*."""

    lr: float = DP_LR
    """Constant SGD learning rate (chosen on validation accuracy by benchmarks/dp_fedavg_hparams.py)."""
    private: bool = True
    """Always True: every local step is DP-SGD under --privacy.* (the non-private row is fedavg)."""

    def validate(self, prefix: str = "--dp-fedavg.") -> None:
        """FedAvg's checks, and ``private`` is True."""
        super().validate(prefix)
        _check_private(self, prefix)


@dataclass(frozen=True)
class DPFedProxConfig(FedProxConfig):
    """dp-fedprox options: FedProx's, always trained with DP-SGD under --privacy.*."""

    lr: float = DP_LR
    """Constant SGD learning rate (chosen on validation accuracy by benchmarks/dp_fedavg_hparams.py)."""
    private: bool = True
    """Always True: every local step is DP-SGD under --privacy.* (the non-private row is fedprox)."""

    def validate(self, prefix: str = "--dp-fedprox.") -> None:
        """FedProx's checks, and ``private`` is True."""
        super().validate(prefix)
        _check_private(self, prefix)
