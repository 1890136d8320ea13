"""Model parts: CVAE encoder and losses, the FedHypeVAE hypernetwork and
hyper-generated prior, linear classifiers, and baselines' networks."""
