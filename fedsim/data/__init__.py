"""The data layer: embedding datasets, their validation, built-in datasets,
client partitions, per-client splits and the resulting :class:`Federation`.

Modules (one concern each; import them directly, this package imports nothing
heavy):

* :mod:`fedsim.data.dataset`    the in-memory :class:`EmbeddingDataset`,
* :mod:`fedsim.data.io`         Parquet/NPZ loading with validation, atomic writing,
* :mod:`fedsim.data.synthetic`  a DINOv2-like synthetic generator,
* :mod:`fedsim.data.organs`     the ``synthetic-organs`` preset (the generator at OrganSMNIST's size),
* :mod:`fedsim.data.builtin`    built-in datasets (``synthetic``, ``synthetic-organs``, ``digits``, ``breast-cancer``),
* :mod:`fedsim.data.partition`  IID, Dirichlet(α) label-skew and per-site partitions,
* :mod:`fedsim.data.splits`     stratified train/val/test splits,
* :mod:`fedsim.data.federation` :class:`DataConfig` and :func:`build_federation`.
"""
