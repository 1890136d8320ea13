"""The methods fedsim runs: one :class:`MethodRecord` each, in :data:`METHODS`.

Everything that lists methods derives from these records: the CLI's ``--algorithm``
choices (:data:`MethodName`), each method's option group (``--<name>.*``, the fields of
:class:`~fedsim.commands.federation_options.FederationOptions`), the ``table`` command's
rows and labels, the sweeps' default method list, and the resolution of a run's
settings.  Adding a method is one module plus one record: here, or outside this file
with :func:`register` (docs/design.md, "How to add a method").

A method's module exposes ``make_server(spec, settings)``, ``make_client(data, spec,
settings)`` and ``synthetic_set(artifact, size, generator)`` (``None`` when the method
releases no synthetic data); it is imported on first use.  Settings are frozen
dataclasses, so they pickle to Ray workers unchanged."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from fedsim.algorithms.spec import TrainingConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MethodRecord:
    """Everything fedsim needs to know about one method."""

    name: str
    """Its name on the command line (``--algorithm``, ``--methods``) and in run directories."""
    label: str
    """Its name in tables and plots."""
    module: str
    """The module with ``make_server``, ``make_client`` and ``synthetic_set`` (imported on first use)."""
    config: str
    """``module:Class`` of its frozen options dataclass, exposed as ``--<name>.*``."""
    help: str
    """Help text of its option group."""
    batch_size: int | None
    """Its expected Poisson batch size B when ``--training.batch-size`` is not given (None: it runs no
    DP-SGD, and the option does not apply)."""
    privacy: Literal["dp", "optional", "none"]
    """``dp``: always trains under ``--privacy.*``; ``optional``: its config's ``private`` flag decides
    (False: no DP, the run's ε is ∞ whatever ``--privacy.epsilon`` says); ``none``: never private
    (ε = ∞)."""
    synthesis: bool
    """True when ``synthetic_set`` releases a synthetic set (a generative method)."""
    table_row: int | None = None
    """Its row in the ``table`` command's default methods (in this order); None: not in them."""
    paper: bool = False
    """True for the six methods of the paper's Table 1 (:data:`PAPER_METHODS`)."""
    runs_on_device: bool = False
    """True when its clients and server keep models, data and DP noise on ``--device``
    (:mod:`fedsim.device`); False: always the CPU."""
    aggregate_releases: bool = False
    """True when it has a release the server only uses summed over clients (class
    statistics), so ``--privacy.noise-placement aggregate`` applies to it
    (:mod:`fedsim.privacy.aggregate`); False: the option is refused."""

    @property
    def field(self) -> str:
        """Its options' attribute name (``dp-cvae`` → ``dp_cvae``, shown on the CLI as ``--dp-cvae.*``)."""
        return self.name.replace("-", "_")

    def config_type(self) -> type:
        """Its options dataclass."""
        module, name = self.config.split(":")
        config_type: type = getattr(importlib.import_module(module), name)
        return config_type

    def implementation(self) -> ModuleType:
        """Its module (``make_server``, ``make_client``, ``synthetic_set``)."""
        return importlib.import_module(self.module)

    def is_private(self, config: Any) -> bool:
        """Whether a run with options ``config`` trains under DP (at a finite ``--privacy.epsilon``)."""
        return self.privacy == "dp" or (self.privacy == "optional" and bool(config.private))


METHODS: tuple[MethodRecord, ...] = (
    MethodRecord("fedhypevae", "FedHypeVAE", "fedsim.algorithms.fedhypevae",
                 "fedsim.algorithms.fedhypevae.config:FedHypeVAEConfig",
                 "FedHypeVAE model, objective and meta-code options.", batch_size=64, privacy="dp",
                 synthesis=True, table_row=6, paper=True, aggregate_releases=True),
    MethodRecord("fedavg", "FedAvg", "fedsim.algorithms.fedavg", "fedsim.algorithms.fedavg:FedAvgConfig",
                 "FedAvg baseline options (global linear classifier).", batch_size=128, privacy="optional",
                 synthesis=False, table_row=1, paper=True, runs_on_device=True),
    MethodRecord("fedprox", "FedProx", "fedsim.algorithms.fedprox", "fedsim.algorithms.fedprox:FedProxConfig",
                 "FedProx baseline options (FedAvg with a proximal term).", batch_size=128, privacy="optional",
                 synthesis=False, table_row=2, paper=True, runs_on_device=True),
    MethodRecord("fedlambda", "FedLambda", "fedsim.algorithms.fedlambda",
                 "fedsim.algorithms.fedlambda:FedLambdaConfig",
                 "FedLambda baseline options (the FedAvg model blended with a local classifier).",
                 batch_size=128, privacy="optional", synthesis=False, table_row=3, paper=True, runs_on_device=True),
    MethodRecord("dp-cvae", "DP-CVAE", "fedsim.algorithms.dp_cvae", "fedsim.algorithms.dp_cvae:DPCVAEConfig",
                 "DP-CVAE baseline options (Di Salvo et al. 2025).", batch_size=256, privacy="dp",
                 synthesis=True, table_row=5, paper=True),
    MethodRecord("dp-cgan", "DP-CGAN", "fedsim.algorithms.dp_cgan", "fedsim.algorithms.dp_cgan:DPCGANConfig",
                 "DP-CGAN baseline options (DP discriminator, averaged generators).", batch_size=256,
                 privacy="dp", synthesis=True, table_row=4, paper=True),
    MethodRecord("dp-stats", "dp-stats", "fedsim.algorithms.dp_stats", "fedsim.algorithms.dp_stats:DPStatsConfig",
                 "dp-stats options (one DP release of class statistics, sampled as class-conditional "
                 "Gaussians: the floor every learned generator must beat).", batch_size=None, privacy="dp",
                 synthesis=True, table_row=9, aggregate_releases=True),
    MethodRecord("dp-fedavg", "DP-FedAvg", "fedsim.algorithms.fedavg",
                 "fedsim.algorithms.dp_fedavg:DPFedAvgConfig",
                 "DP-FedAvg options (FedAvg always under record-level DP-SGD at --privacy.*; lr and the "
                 "Poisson batch chosen on validation by benchmarks/dp_fedavg_hparams.py: lr 0.5, B 256).",
                 batch_size=256, privacy="dp", synthesis=False, table_row=7, runs_on_device=True),
    MethodRecord("dp-fedprox", "DP-FedProx", "fedsim.algorithms.fedprox",
                 "fedsim.algorithms.dp_fedavg:DPFedProxConfig",
                 "DP-FedProx options (FedProx always under record-level DP-SGD at --privacy.*; lr and the "
                 "Poisson batch chosen on validation by benchmarks/dp_fedavg_hparams.py: lr 0.5, B 256).",
                 batch_size=256, privacy="dp", synthesis=False, table_row=8, runs_on_device=True),
)
"""Every method, in the order of ``--algorithm``'s choices and of the sweeps' default list."""

BY_NAME: dict[str, MethodRecord] = {record.name: record for record in METHODS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
MethodName = Literal[NAMES]  # type: ignore[valid-type]  # the CLI's choices, from the records
DEFAULT_METHOD = "fedhypevae"


def _table_methods() -> tuple[str, ...]:
    return tuple(record.name for record in sorted((r for r in METHODS if r.table_row is not None),
                                                  key=lambda r: r.table_row or 0))


def _paper_methods() -> tuple[str, ...]:
    return tuple(name for name in _table_methods() if BY_NAME[name].paper)


TABLE_METHODS: tuple[str, ...] = _table_methods()
"""The ``table`` command's default rows, in order: the paper's methods, then the DP rows at equal ε
(dp-fedavg, dp-fedprox, dp-stats)."""
PAPER_METHODS: tuple[str, ...] = _paper_methods()
"""The paper's Table-1 methods, in the table's row order."""

# modules that build their option classes from the records when they are imported
_OPTION_MODULES = ("fedsim.commands.federation_options", "fedsim.commands.train", "fedsim.commands.table")


def register(record: MethodRecord) -> None:
    """Add ``record`` to :data:`METHODS` (a method defined outside this file: a plugin, a test).

    Everything derived from the records then includes it: ``--algorithm``'s choices, its
    ``--<name>.*`` option group, the ``table`` command's labels (and rows, with
    ``table_row``), the sweeps' default method list and :func:`method`.  The CLI builds
    its option classes when :mod:`fedsim.commands` is imported, so call this before
    that (a ``RuntimeError`` otherwise).  Ray workers import this module afresh: a
    registered method runs there only if the workers register it too (``--backend
    local`` needs nothing more)."""
    global METHODS, NAMES, MethodName, PAPER_METHODS, TABLE_METHODS
    if record.name in BY_NAME:
        raise ValueError(f"a method named {record.name!r} is already registered")
    built = [name for name in _OPTION_MODULES if name in sys.modules]
    if built:
        raise RuntimeError(f"register {record.name!r} before importing {', '.join(built)}: their option "
                           "classes are built from the records on import")
    METHODS = (*METHODS, record)
    BY_NAME[record.name] = record
    NAMES = tuple(BY_NAME)
    MethodName = Literal[NAMES]  # type: ignore[valid-type]
    TABLE_METHODS = _table_methods()
    PAPER_METHODS = _paper_methods()


def method(name: str, option: str = "--algorithm") -> MethodRecord:
    """The record of method ``name``; a ``UserError`` naming ``option`` when there is none."""
    if name not in BY_NAME:
        from fedsim.errors import UserError

        raise UserError(f"{option} {name!r} is unknown; valid: {', '.join(NAMES)}.")
    return BY_NAME[name]


def algorithm_module(name: str) -> ModuleType:
    """The module implementing method ``name``."""
    return method(name).implementation()


@dataclass(frozen=True)
class RunSettings:
    """Everything a client or server needs besides its data.  ``training.batch_size`` is
    always a number here: when the user gave none, the method's record's ``batch_size``."""

    algorithm: str
    method: Any                  # the algorithm's own frozen config dataclass
    privacy: PrivacyConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    seed: int
    device: str = "cpu"
    """``--device`` as given (``auto``, ``cpu``, ``cuda``); each process resolves it with
    :func:`fedsim.device.method_device` (:meth:`device_here`)."""

    @property
    def device_option(self) -> str:
        """``--device`` as it applies to this method: as given when its clients run on a
        device (``MethodRecord.runs_on_device``), else ``cpu``."""
        return self.device if method(self.algorithm).runs_on_device else "cpu"

    def device_here(self) -> torch.device:
        """The device of this method's clients and server in this process
        (:func:`fedsim.device.resolve_device` of :attr:`device_option`)."""
        from fedsim.device import resolve_device

        return resolve_device(self.device_option)

    def server_device_here(self) -> torch.device:
        """The server's device in this process: CUDA when the clients may use a device and
        this process sees a GPU (the driver with ``--backend local``; a Ray server actor,
        given no GPU, uses the CPU), else the CPU."""
        from fedsim.device import resolve_device

        return resolve_device("cpu" if self.device_option == "cpu" else "auto")

    def __post_init__(self) -> None:
        if self.training.batch_size is None:
            resolved = dataclasses.replace(self.training, batch_size=method(self.algorithm).batch_size)
            object.__setattr__(self, "training", resolved)
