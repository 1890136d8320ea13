"""fedsim: a federation simulator for differentially private sharing of
foundation-model embeddings.  The library (this package) is pure PyTorch/NumPy;
the Ray runtime lives in the top-level ``actors`` package and Ray Tune studies in
``sweeps``."""

__version__ = "0.1.0"
