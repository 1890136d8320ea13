"""Model selection and training never read a client's test split: the synthetic-data
methods give the same λ choices, validation accuracies and released generator when
every test split is replaced by noise with permuted labels — and with it the global
test set pooled from the test splits — while the test metrics on both move (the poison
did reach them).  The default probe preset (``tuned``) chooses
its regularisation per client; those choices do not move either.  (FedAvg/FedProx/FedLambda: test_fedavg.py,
DP-CVAE: test_dp_cvae.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines_toy import mean, poison_test, run, toy_federation
from fedsim.algorithms.dp_cgan import DPCGANConfig
from fedsim.algorithms.dp_stats import DPStatsConfig
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.evaluation.downstream import EvaluationConfig

METHODS = [
    ("dp-cgan", DPCGANConfig(latent_dim=8, generator_hidden=(32,), discriminator_hidden=(32,), lr=1e-2), 32),
    ("fedhypevae", FedHypeVAEConfig(hidden_dim=16, latent_dim=4, code_dim=4, hyper_hidden=8, label_dim=4,
                                    meta_steps=20, training="dp-sgd", observation_variance=False), None),
    ("dp-stats", DPStatsConfig(), None),
]


@pytest.mark.parametrize("algorithm,config,batch_size", METHODS, ids=[name for name, _, _ in METHODS])
@pytest.mark.parametrize("selection", ["global", "per-client"])
def test_selection_and_training_never_read_test_data(algorithm, config, batch_size, selection):
    federation = toy_federation()
    clean, clean_rows, _, _ = run(algorithm, config, federation, rounds=2, epsilon=1.0, selection=selection,
                                  batch_size=batch_size, reproducible_noise=True)
    poisoned, poisoned_rows, _, _ = run(algorithm, config, poison_test(federation), rounds=2, epsilon=1.0,
                                        selection=selection, batch_size=batch_size, reproducible_noise=True)
    assert [r["lambda"] for r in clean_rows] == [r["lambda"] for r in poisoned_rows]
    assert [r["val_acc"] for r in clean_rows] == [r["val_acc"] for r in poisoned_rows]
    assert [e.probes for e in clean.evaluations] == [e.probes for e in poisoned.evaluations]  # tuned probe choices
    labels = np.repeat(np.arange(federation.num_classes), 20)
    np.testing.assert_array_equal(clean.artifact.sample(labels, torch.Generator().manual_seed(0)),
                                  poisoned.artifact.sample(labels, torch.Generator().manual_seed(0)))
    assert mean(poisoned_rows, "acc") != mean(clean_rows, "acc")
    assert mean(poisoned_rows, "global_acc") != mean(clean_rows, "global_acc")  # the global test set is poisoned too


@pytest.mark.parametrize("algorithm,config,batch_size", METHODS[1:], ids=[name for name, _, _ in METHODS[1:]])
@pytest.mark.parametrize("evaluation", [EvaluationConfig(mix="data", synthetic_size="3x", synthetic_labels="balanced"),
                                        EvaluationConfig(synthetic_size="2x", synthetic_labels="global")],
                         ids=["data-balanced-3x", "prediction-global-2x"])
def test_synthetic_set_options_never_read_test_data(algorithm, config, batch_size, evaluation):
    """The same with the data-level mix and larger, relabelled synthetic sets (issue 16)."""
    federation = toy_federation()
    results = [run(algorithm, config, f, rounds=2, epsilon=1.0, selection="per-client", batch_size=batch_size,
                   reproducible_noise=True, evaluation=evaluation) for f in (federation, poison_test(federation))]
    (clean, clean_rows, _, _), (poisoned, poisoned_rows, _, _) = results
    assert [r["lambda"] for r in clean_rows] == [r["lambda"] for r in poisoned_rows]
    assert [r["val_acc"] for r in clean_rows] == [r["val_acc"] for r in poisoned_rows]
    assert [e.probes for e in clean.evaluations] == [e.probes for e in poisoned.evaluations]
    assert len(clean.evaluations[0].lambdas) == (len(evaluation.mix_lambdas) if evaluation.mix == "data" else 11)
    assert mean(poisoned_rows, "acc") != mean(clean_rows, "acc")
    assert mean(poisoned_rows, "global_acc") != mean(clean_rows, "global_acc")
