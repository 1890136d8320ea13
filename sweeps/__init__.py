"""Ray Tune studies over fedsim runs.

``python -m sweeps.privacy_utility`` (or ``ray submit <cluster.yaml>
sweeps/privacy_utility.py -- <options>``) runs the privacy–utility sweep: one whole
federation per trial, over methods × ε × Dirichlet α × FedHypeVAE λ weights × seeds.

Modules (one concern each):

* :mod:`sweeps.grid`            the grid: parsing, validation, trial configs → ``TrainCommand``
* :mod:`sweeps.options`         the tyro-exposed ``run`` and ``plot`` options
* :mod:`sweeps.trial`           the Tune function trainable (one federation)
* :mod:`sweeps.tune_progress`   trials done/total and ETA, printed by a Tune callback
* :mod:`sweeps.runner`          Ray start/connect, ``Tuner`` build or restore, ``fit``
* :mod:`sweeps.collect`         Tune results → one Parquet row per trial (+ per-round rows)
* :mod:`sweeps.plots`           the PNG plots (matplotlib, Agg)
* :mod:`sweeps.report`          the Markdown summary
* :mod:`sweeps.privacy_utility` the CLI (subcommands ``run`` and ``plot``)

Only this package and ``actors/`` import Ray; ``fedsim`` stays Ray-free.
"""
