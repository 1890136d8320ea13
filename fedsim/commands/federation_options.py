"""The options that define one federation (data, privacy, training schedule, every
method's config, evaluation protocol), shared by ``train`` and the sweeps' ``RunOptions``
so each option is declared and documented once.

The per-method option groups (``--fedhypevae.*``, ``--dp-cvae.*``, …) are generated from
the method records of :mod:`fedsim.algorithms.registry`: a new record adds its group."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import tyro

from fedsim.algorithms.registry import METHODS
from fedsim.algorithms.spec import TrainingConfig
from fedsim.data.federation import DataConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig


def _group(name: str, config: type, help: str) -> tuple[str, Any, dataclasses.Field[Any]]:
    return name, Annotated[config, tyro.conf.arg(help=help)], dataclasses.field(default=config())


def _federation_options(self: Any) -> dict[str, Any]:
    """These options of ``self`` by field name (to carry them into another command)."""
    return {field.name: getattr(self, field.name) for field in dataclasses.fields(FederationOptions)}


def _validate(self: Any, prefix: str = "--") -> None:
    """Check every option (``UserError`` naming the first invalid one as on the CLI, under ``prefix``)."""
    self.data.check_dataset(prefix + "data.")
    self.data.validate(prefix + "data.")
    self.privacy.validate(prefix + "privacy.")
    self.training.validate(prefix + "training.")
    for record in METHODS:
        getattr(self, record.field).validate(f"{prefix}{record.name}.")
    self.evaluation.validate(prefix + "evaluation.")


if TYPE_CHECKING:
    @dataclasses.dataclass(frozen=True)
    class FederationOptions:
        """What the type checker sees of the class built below (it cannot follow
        ``make_dataclass``): the fixed groups, the methods' groups by attribute."""

        data: DataConfig = DataConfig()
        privacy: PrivacyConfig = PrivacyConfig()
        training: TrainingConfig = TrainingConfig()
        evaluation: EvaluationConfig = EvaluationConfig()

        def __getattr__(self, method_field: str) -> Any: ...  # one group per method record
        def federation_options(self) -> dict[str, Any]: ...
        def validate_federation(self, prefix: str = "--") -> None: ...

else:
    FederationOptions = dataclasses.make_dataclass(
        "FederationOptions",
        [
            _group("data", DataConfig, "Dataset, partition and split options."),
            _group("privacy", PrivacyConfig, "Differential-privacy options (per client, sample level)."),
            _group("training", TrainingConfig, "Federated training schedule (rounds, local epochs, batch size, "
                                               "client sampling) of every method."),
            *(_group(record.field, record.config_type(), record.help) for record in METHODS),
            _group("evaluation", EvaluationConfig, "Downstream evaluation protocol."),
        ],
        namespace={"federation_options": _federation_options, "validate_federation": _validate,
                   "__doc__": "Options of one federation, whatever runs it.", "__module__": __name__},
        frozen=True,
    )
