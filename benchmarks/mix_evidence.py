"""Which evidence chooses the data mix's union probes (issue 16): cost and validation BACC.

Under ``--evaluation.mix data`` every client fits one probe per λ on its real train split
∪ the synthetic set (:mod:`fedsim.evaluation.mixing`), the dearest fits of a run.  The
probe's C (and whether it replaces the reference probe) is chosen on *evidence*; this
script trains one generator and evaluates that same generator with the union probes'
evidence varied (everything else of ``data:balanced:4x`` fixed):

* ``all-folds`` (what ``mixed_probe`` does): the validation split plus out-of-fold
  predictions of every record of the union, synthetic ones included;
* ``real-folds``: validation plus out-of-fold predictions of the client's real train
  records only (the synthetic records are in every fold's train set) — the hypothesis
  that a synthetic record's held-out prediction is evidence about the generator, not the
  client's data;
* ``no-folds``: the validation split alone (``--evaluation.probe.folds 0`` for the union
  probes only; the local and synthetic probes keep their folds);
* ``…-warm``: each λ's fits start at the previous λ's solution of the same C
  (:func:`fedsim.evaluation.probe.fit_probe` ``warm``): the same optima to the tolerance,
  fewer L-BFGS iterations.

Per variant: seconds of the 10 clients' evaluation (the first variant also pays the local
probes, memoised for the others: run a cheap one first), full-fit L-BFGS iterations of the
union probes, and per λ rule the pooled-validation BACC at the chosen λ, the rule's
split-half score ``val_cv`` and the mean λ.  Validation only: each client's test split is
replaced by its validation split before the evaluation, so no test record is read.

    OMP_NUM_THREADS=1 python benchmarks/mix_evidence.py --method fedhypevae --epsilon 8 --seed 0 \\
        --variants no-folds all-folds real-folds all-folds-warm
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from unittest import mock

import numpy as np
from privacy_utility import (
    command_for,
    evaluation_config,
    lambda_rule,
    train_run,
    validation_set,
)

from fedsim.evaluation import mixing
from fedsim.evaluation.blend import select_lambdas
from fedsim.evaluation.downstream import evaluate_generator
from fedsim.evaluation.probe import fit_probe
from fedsim.evaluation.rule_validation import split_half_score
from fedsim.seeding import numpy_rng

VARIANTS = ("all-folds", "real-folds", "no-folds", "all-folds-warm", "real-folds-warm", "no-folds-warm")
RULES = ("per-client:accuracy:0", "per-client:accuracy:1", "per-client:balanced:0", "per-client:balanced:1")


class UnionProbes:
    """``mixed_probe`` of one variant; counts the full fits' L-BFGS iterations."""

    def __init__(self, variant: str) -> None:
        self.variant, self.iterations = variant, 0
        self.previous: dict[int, dict] = {}   # client -> the previous λ's converged fits

    def __call__(self, data, synthetic_x, synthetic_y, lam, probe, seed):
        x = np.concatenate([data.x_train, synthetic_x.astype(data.x_train.dtype)])
        y = np.concatenate([data.y_train.astype(np.int64), np.asarray(synthetic_y, dtype=np.int64)])
        groups = np.repeat([0, 1], [len(data.y_train), len(synthetic_y)])
        options: dict = {}
        if self.variant.startswith("real-folds"):
            options["folded"] = groups == 0
        if self.variant.startswith("no-folds"):
            probe = replace(probe, folds=0)
        if self.variant.endswith("-warm") and data.client_id in self.previous:
            options["warm"] = self.previous[data.client_id]
        fitted = fit_probe(x, y, data.num_classes, data.x_val, data.y_val, probe, seed, "mix", data.client_id,
                           f"{lam:g}", mixture=(groups, (lam, 1.0 - lam)), **options)
        converged = {name: model for name, model in fitted.models.items() if name != "reference"}
        self.previous[data.client_id] = converged
        self.iterations += sum(model.iterations for model in converged.values())
        return fitted


def evaluate(federation, artifact, variant: str, seed: int, val_set):
    """Every client's data-mix evaluation of ``artifact`` (the project's
    :func:`~fedsim.evaluation.downstream.evaluate_generator`) with the union probes of ``variant``."""
    config = evaluation_config("data:balanced:4x")
    union = UnionProbes(variant)
    with mock.patch.object(mixing, "mixed_probe", union):
        evaluations = [evaluate_generator(replace(client, x_test=client.x_val, y_test=client.y_val),  # no test record
                                          artifact, config, seed, val_set) for client in federation.clients]
    return evaluations, union.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="fedhypevae")
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["no-folds", "all-folds", "real-folds"])
    args = parser.parse_args()
    prepared, _, result = train_run(command_for(args.method, args.epsilon, args.seed, args.rounds, args.dataset,
                                                evaluation_config("prediction:client:1x", 0)))
    federation = prepared.federation
    val_set = validation_set(federation)   # "global" columns = the pooled validation splits
    for variant in args.variants:
        started = time.perf_counter()
        evaluations, iterations = evaluate(federation, result.artifact, variant, args.seed, val_set)
        row: dict = {"method": args.method, "epsilon": args.epsilon, "seed": args.seed, "variant": variant,
                     "seconds": round(time.perf_counter() - started, 1), "union_iterations": iterations}
        for rule in RULES:
            selection, metric, guard = lambda_rule(rule)
            chosen = select_lambdas(evaluations, selection, guard, metric)  # type: ignore[arg-type]
            cv = split_half_score(evaluations, selection, guard, metric,  # type: ignore[arg-type]
                                  numpy_rng(args.seed, "rule-cv"), 20)
            row[rule] = {"val_blend": round(100 * float(np.mean([e.test["global_bacc"][i]
                                                                 for e, i in zip(evaluations, chosen)])), 2),
                         "val_cv": round(100 * cv, 2),
                         "lambda": round(float(np.mean([e.lambdas[i] for e, i in zip(evaluations, chosen)])), 3)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
