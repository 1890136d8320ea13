"""Algorithms by name, and the settings bundle every algorithm is built from.

An algorithm module exposes ``make_server(spec, settings)``, ``make_client(data, spec,
settings)`` and ``synthetic_set(artifact, size, generator)`` (``None`` when the method
releases no synthetic data).  Settings are frozen dataclasses, so they pickle to Ray
workers unchanged."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fedsim.algorithms.spec import TrainingConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig

ALGORITHMS: dict[str, str] = {
    "fedhypevae": "fedsim.algorithms.fedhypevae",
    "fedavg": "fedsim.algorithms.fedavg",
    "fedprox": "fedsim.algorithms.fedprox",
    "fedlambda": "fedsim.algorithms.fedlambda",
    "dp-cvae": "fedsim.algorithms.dp_cvae",
    "dp-cgan": "fedsim.algorithms.dp_cgan",
    "dp-stats": "fedsim.algorithms.dp_stats",
}


@dataclass(frozen=True)
class RunSettings:
    """Everything a client or server needs besides its data."""

    algorithm: str
    method: Any                  # the algorithm's own frozen config dataclass
    privacy: PrivacyConfig
    schedule: TrainingConfig
    evaluation: EvaluationConfig
    seed: int


def algorithm_module(name: str) -> ModuleType:
    """The module implementing algorithm ``name``."""
    if name not in ALGORITHMS:
        from fedsim.errors import UserError

        raise UserError(f"--algorithm {name!r} is unknown; valid: {', '.join(sorted(ALGORITHMS))}.")
    return importlib.import_module(ALGORITHMS[name])
