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
See :data:`DP_LR` and :data:`DP_BATCH_SIZE` for the values and the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.fedprox import FedProxConfig
from fedsim.validation import check

DP_LR = 0.5
"""Default lr of the DP rows (benchmarks/dp_fedavg_hparams.py; module docstring)."""
DP_BATCH_SIZE = 256
"""Default expected Poisson batch size B of the DP rows (their records' ``batch_size``): large
batches make the noise σ·C/B per step small; with ~100-400 train records per client B ≥ n_i
means q = 1 and one (full-batch) step per local epoch, the fewest steps to account for."""


def _check_private(config, prefix: str) -> None:
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
