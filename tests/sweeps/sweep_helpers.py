"""Options shared by the tests that run real sweeps (imported as ``sweep_helpers``: pytest
puts this directory on ``sys.path``).  Every trial pays a Ray worker and a whole
federation, so the federations and models are tiny: a trial trains in a few seconds."""

from __future__ import annotations

TINY_MODELS = ["--fedhypevae.hidden-dim", "16", "--fedhypevae.latent-dim", "4", "--fedhypevae.code-dim", "4",
               "--fedhypevae.hyper-hidden", "8", "--fedhypevae.label-dim", "4", "--fedhypevae.meta-steps", "20"]
"""FedHypeVAE small enough that a trial's training is not what the test waits for."""

TINY_FEDERATION = ["--data.synthetic.n-samples", "600", "--data.synthetic.dim", "16", "--data.num-clients", "3",
                   "--training.rounds", "2", *TINY_MODELS,
                   # the public bound of DP-SGD ≥ the largest client's train records (194 for
                   # α = 0.3, seed 1; 147 for seed 0), not the default 2048: a private local
                   # epoch is ⌈max_records / B⌉ = 4 steps instead of 32
                   "--privacy.max-records", "256"]
"""3 clients × ~200 synthetic 16-d records, 2 rounds."""
