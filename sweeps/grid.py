"""The sweep grid: validated axes, Tune's ``param_space``, and trial config → ``TrainCommand``.

A trial's config (what Tune stores and shows) is::

    {"point": {"method": ..., "epsilon": ..., "lambda_mmd": ..., "lambda_v": ..., "lambda_lip": ...},
     "alpha": "0.3" | "iid",
     "seed": 0}

``point`` is one ``tune.grid_search`` over a list of method points rather than a
Cartesian product of separate axes, so that

* the λ weights multiply only FedHypeVAE's trials (baselines have no λ; their λ are None),
* methods that ignore ε (a baseline whose config says ``private=False``, e.g. FedAvg
  as in the paper's table) run once, at ε = ∞, instead of once per ε with identical results.

α and the seed are Cartesian ``grid_search`` axes.  An α label is a number (Dirichlet(α)
label skew) or ``iid`` (the IID partition); it overrides ``--data.partition``/``--data.alpha``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from fedsim.errors import UserError

IID = "iid"
FEDHYPEVAE = "fedhypevae"
LAMBDAS = ("lambda_mmd", "lambda_v", "lambda_lip")


def alpha_label(value: Any) -> str:
    """The canonical label of one α: ``"iid"`` or the number formatted with ``:g``."""
    text = str(value).strip().lower()
    if text == IID:
        return IID
    try:
        alpha = float(text)
    except ValueError:
        alpha = math.nan
    if not (math.isfinite(alpha) and alpha > 0):
        raise UserError(f"--alphas has {value!r}; each value must be a number > 0 (Dirichlet α) or iid.")
    return format(alpha, "g")


def alpha_value(label: str) -> float:
    """The Dirichlet α of a label (NaN for ``iid``)."""
    return math.nan if label == IID else float(label)


def alpha_sort_key(label: str) -> float:
    """Order of α labels on a plot axis: increasing α, IID (the α → ∞ limit) last."""
    return math.inf if label == IID else float(label)


def epsilon_text(epsilon: float) -> str:
    """ε for names and tables: ``inf`` or ``:g``."""
    return "inf" if math.isinf(epsilon) else format(epsilon, "g")


def _unique(values: Iterable) -> tuple:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Grid:
    """The validated axes of one sweep."""

    methods: tuple[str, ...]
    """Methods, in the order given (default: every registered algorithm)."""
    epsilons: tuple[float, ...]
    """Target ε values per client (``inf`` = no DP)."""
    alphas: tuple[str, ...]
    """α labels (numbers, or ``iid``)."""
    lambda_mmd: tuple[float, ...]
    """λ_MMD values (FedHypeVAE only)."""
    lambda_v: tuple[float, ...]
    """λ_v values (FedHypeVAE only)."""
    lambda_lip: tuple[float, ...]
    """λ_Lip values (FedHypeVAE only)."""
    seeds: tuple[int, ...]
    """Run seeds."""
    epsilon_free: tuple[str, ...] = ()
    """Methods that ignore ε (run once at ε = ∞)."""

    def points(self) -> list[dict]:
        """One dict per (method, ε, λ) combination, the values of the ``point`` axis."""
        points = []
        for method in self.methods:
            epsilons = (math.inf,) if method in self.epsilon_free else self.epsilons
            lambdas: Iterable[tuple[float | None, float | None, float | None]]
            if method == FEDHYPEVAE:
                lambdas = itertools.product(self.lambda_mmd, self.lambda_v, self.lambda_lip)
            else:
                lambdas = [(None, None, None)]
            for lams in list(lambdas):
                for epsilon in epsilons:
                    points.append({"method": method, "epsilon": epsilon, **dict(zip(LAMBDAS, lams))})
        return points

    def size(self) -> int:
        """Number of trials."""
        return len(self.points()) * len(self.alphas) * len(self.seeds)

    def param_space(self) -> dict:
        """Tune's ``param_space``: grid searches over points, α and seeds."""
        from ray import tune

        return {"point": tune.grid_search(self.points()), "alpha": tune.grid_search(list(self.alphas)),
                "seed": tune.grid_search(list(self.seeds))}

    def swept_lambdas(self) -> tuple[str, ...]:
        """The λ names with more than one value."""
        return tuple(name for name in LAMBDAS if len(getattr(self, name)) > 1)


def build_grid(methods: Sequence[str] | None, epsilons: Sequence[float], alphas: Sequence[Any],
               lambda_mmd: Sequence[float], lambda_v: Sequence[float], lambda_lip: Sequence[float],
               seeds: Sequence[int], base=None) -> Grid:
    """Validate the axes (``UserError`` naming the option) and return the :class:`Grid`.

    ``methods=None`` means every method of :data:`fedsim.algorithms.registry.METHODS`.
    ``base`` (a ``TrainCommand``) tells which methods ignore ε."""
    from fedsim.algorithms.registry import NAMES

    methods = _unique(NAMES if methods is None else methods)
    if not methods:
        raise UserError("--methods is empty; give at least one of " + ", ".join(NAMES) + ".")
    for method in methods:
        if method not in NAMES:
            raise UserError(f"--methods has {method!r}, which is not a registered method; "
                            f"valid: {', '.join(NAMES)}.")
    epsilons = _unique(float(e) for e in epsilons)
    if not epsilons:
        raise UserError("--epsilons is empty; give at least one ε > 0 (inf = no DP).")
    for epsilon in epsilons:
        if not epsilon > 0:
            raise UserError(f"--epsilons has {epsilon:g}; every ε must be > 0 (inf = no DP).")
    alphas = _unique(alpha_label(a) for a in alphas)
    if not alphas:
        raise UserError("--alphas is empty; give at least one Dirichlet α > 0 or iid.")
    lambdas = {}
    for name, values in zip(LAMBDAS, (lambda_mmd, lambda_v, lambda_lip)):
        values = _unique(float(v) for v in values)
        option = "--" + name.replace("_", "-")
        if not values:
            raise UserError(f"{option} is empty; give at least one weight ≥ 0.")
        for value in values:
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"{option} has {value!r}; every weight must be a finite number ≥ 0.")
        lambdas[name] = values
    seeds = _unique(int(s) for s in seeds)
    if not seeds:
        raise UserError("--seeds is empty; give at least one integer seed.")
    free = tuple(m for m in methods if base is not None and ignores_epsilon(base, m))
    return Grid(methods, epsilons, alphas, seeds=seeds, epsilon_free=free, **lambdas)


def ignores_epsilon(base, method: str) -> bool:
    """True when ``method`` does not train under DP with its config in ``base`` (a record with
    ``privacy="optional"`` and ``private=False``): it always runs at ε = ∞."""
    from fedsim.algorithms.registry import method as record_of

    record = record_of(method, "--methods")
    return not record.is_private(getattr(base, record.field))


def trial_name(config: dict) -> str:
    """A readable, deterministic name of a trial (its run directory's name)."""
    point = config["point"]
    parts = [point["method"], "eps" + epsilon_text(point["epsilon"]), "alpha" + config["alpha"]]
    if point["method"] == FEDHYPEVAE:
        parts += [f"mmd{point['lambda_mmd']:g}", f"v{point['lambda_v']:g}", f"lip{point['lambda_lip']:g}"]
    parts.append(f"seed{config['seed']}")
    return "_".join(parts)


def partition_data(base, label: str):
    """``base.data`` with the partition of α label ``label`` (``iid`` or Dirichlet(α))."""
    return (dataclasses.replace(base.data, partition="iid") if label == IID
            else dataclasses.replace(base.data, partition="dirichlet", alpha=float(label)))


def trial_command(base, config: dict, runs_dir: Path, backend: str = "local", threads: int = 1, ray=None):
    """The ``TrainCommand`` of one trial: ``base`` with the trial's method, ε, partition,
    λ weights and seed; its run directory is ``runs_dir/<trial_name>``; no progress bar;
    ``ray`` (a ``RayConfig``) replaces the Ray runtime options when given."""
    point, label = config["point"], config["alpha"]
    data = partition_data(base, label)
    changes = dict(algorithm=point["method"], seed=int(config["seed"]), data=data,
                   privacy=dataclasses.replace(base.privacy, epsilon=float(point["epsilon"])),
                   out=Path(runs_dir) / trial_name(config), threads=threads, progress=False,
                   backend=backend)
    if ray is not None:
        changes["ray"] = ray
    if point["method"] == FEDHYPEVAE:
        changes["fedhypevae"] = dataclasses.replace(
            base.fedhypevae, **{name: float(point[name]) for name in LAMBDAS})
    return dataclasses.replace(base, **changes)
