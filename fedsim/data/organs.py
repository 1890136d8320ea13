r"""``synthetic-organs``: the built-in generator at the paper's data scale.

**This is synthetic data, not medical data.**  No image, scan or patient record
is used or imitated; only the *size* of OrganSMNIST (MedMNIST v2's sagittal
abdominal-CT organ dataset, the paper's "Abdominal CT (Sagittal view)" set) and
its class names are borrowed, so that federations of the paper's scale can be
simulated with one flag (``--data.dataset synthetic-organs``).

What is taken from OrganSMNIST (source: the ``organsmnist`` entry of ``INFO`` in
the medmnist package, ``medmnist/info.py``, https://github.com/MedMNIST/MedMNIST;
Yang et al., "MedMNIST v2", Scientific Data 10:41, 2023):

* ``n = 25,211`` records = 13,932 train + 2,452 val + 8,827 test (its
  ``n_samples``), pooled — like fedsim's evaluation protocol, which pools official
  splits and re-splits per client;
* ``K = 11`` classes, named as in its ``label`` map: bladder, femur-left,
  femur-right, heart, kidney-left, kidney-right, liver, lung-left, lung-right,
  pancreas, spleen.

**Class sizes — a stand-in, not OrganSMNIST's.**  The per-class counts of
OrganSMNIST were not found in a source that can be cited (medmnist's ``INFO``
gives only the split totals, and the MedMNIST v2 paper gives per-dataset, not
per-class, numbers).  Until they are, the class sizes ``N_c`` are the plain
``synthetic`` dataset's prior (γ = 1) rounded to exactly 25,211 records by the
largest-remainder rule::

    π_c = exp(−c/10) / Σ_c' exp(−c'/10),   c = 0 … 10,
    N_c = ⌊25,211·π_c⌋, plus one for the 25,211 − Σ_c ⌊25,211·π_c⌋ classes
          with the largest fractional parts,

i.e. ``N = (3596, 3254, 2944, 2664, 2411, 2181, 1974, 1786, 1616, 1462, 1323)``
(largest/smallest ≈ e ≈ 2.7).  The order of the organ names carries no meaning
for these sizes.  Replacing :data:`CLASS_COUNTS` by the published per-class
totals (train + val + test of each label) is the only change needed once they
are available; :data:`CLASS_COUNTS_SOURCE` says which one is in use and travels
in the dataset's metadata.

Generative model: that of :mod:`fedsim.data.synthetic` (steps 2–5 unchanged,
with the options of ``--data.synthetic.*``), except step 1, whose labels are a
uniformly random permutation of the multiset with exactly ``N_c`` records of
class ``c`` (instead of ``n`` draws from π).  So, for record ``i`` of class
``y_i`` at site ``s_i``::

    h_i = σ_sep·m_{y_i} + W_{y_i} z_i + σ_noise·ε_i
    x_i = (I + s·A_{s_i}) h_i + s·b_{s_i},   then per-feature standardisation,

with the class means ``m_c``, within-class bases ``W_c`` (rank r), site maps
``A_s, b_s`` and site assignment ``p(s | c) ∝ ρ_s(c)``, ``ρ_s ~ Dirichlet(1_K)``
defined there.

Other choices:

* dimension ``d = --data.synthetic.dim``: 384 by default (DINOv2 ViT-S/14, the
  default of ``synthetic``); ``--data.synthetic.dim 768`` gives ViT-B/14's width;
* sites ``S = --data.synthetic.num-sites`` = 10 by default, so that
  ``--data.partition site`` gives the paper's m = 10 clients (≈ 2,500 records
  each on average, with site-dependent class mixes);
* intrinsic rank, noise, class separation and site shift keep the defaults
  tuned for ``synthetic``.  Measured (central logistic regression, 80/20
  stratified split, seeds 0 and 1): 91.1 % and 88.5 % at d = 384, close to the
  plain ``synthetic`` default's 86–90 %.  At d = 768 with the same options the
  task is easier (97.2 %, 98.0 %): the noise variance along any direction is
  σ_noise²/d, so it halves when d doubles.  ``--data.synthetic.noise 5.66``
  (= 4·√2, the per-direction noise of d = 384) brings it back to 86.3 %, 87.9 %;
  the preset does not change the noise by itself, so that the option keeps one
  meaning;
* generation takes ≈ 1.9 s (d = 384) and ≈ 3.7 s (d = 768) of CPU time on one
  core, mostly the d × d site maps of step 4 (n·d² multiply-adds);
* with ``--data.partition dirichlet --data.alpha 0.3`` and 10 clients, a client
  holds 25,211/10 ≈ 2,521 records on average, 64 % of them (≈ 1,613) in its
  train split — the paper's ≈ 1,600 train records per client;
* ``n-samples``, ``num-classes`` and ``imbalance`` are fixed by the preset;
  setting them to anything but their defaults is refused (they would be
  silently ignored otherwise).
"""

from __future__ import annotations

from dataclasses import replace

from fedsim.data.dataset import EmbeddingDataset
from fedsim.data.synthetic import SyntheticConfig, make_synthetic
from fedsim.errors import UserError

NAME = "synthetic-organs"

SPLIT_SIZES = {"train": 13_932, "val": 2_452, "test": 8_827}
"""OrganSMNIST's official split sizes (medmnist ``INFO['organsmnist']['n_samples']``)."""

NUM_RECORDS = sum(SPLIT_SIZES.values())  # 25,211

CLASS_NAMES = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)
"""OrganSMNIST's labels 0–10 (medmnist ``INFO['organsmnist']['label']``)."""

CLASS_COUNTS = (3596, 3254, 2944, 2664, 2411, 2181, 1974, 1786, 1616, 1462, 1323)
"""Records per class: the stand-in of the module docstring (NOT OrganSMNIST's per-class counts)."""

CLASS_COUNTS_SOURCE = (
    "stand-in: fedsim's synthetic prior exp(-c/10) rounded to 25,211 by largest remainder; "
    "OrganSMNIST's per-class counts were not available from a citable source"
)
"""Where :data:`CLASS_COUNTS` come from; stored in the dataset's metadata."""

_FIXED_OPTIONS = ("n_samples", "num_classes", "imbalance")


def organs_config(synthetic: SyntheticConfig) -> SyntheticConfig:
    """The generator options of the preset: the user's ``synthetic`` with n = 25,211 and K = 11.

    Raises a UserError when the user set an option the preset fixes.
    """
    defaults = SyntheticConfig()
    for option in _FIXED_OPTIONS:
        value = getattr(synthetic, option)
        if value != getattr(defaults, option):
            flag = option.replace("_", "-")
            raise UserError(
                f"--data.synthetic.{flag} is {value!r}, but --data.dataset {NAME} fixes it "
                f"({NUM_RECORDS} records in {len(CLASS_NAMES)} classes of fixed sizes); leave it at its default."
            )
    return replace(synthetic, n_samples=NUM_RECORDS, num_classes=len(CLASS_NAMES))


def make_synthetic_organs(synthetic: SyntheticConfig, seed: int) -> EmbeddingDataset:
    """Generate ``synthetic-organs`` (formulas and sources in the module docstring)."""
    return make_synthetic(
        organs_config(synthetic),
        seed,
        class_counts=CLASS_COUNTS,
        class_names=CLASS_NAMES,
        name=NAME,
        extra_metadata={"preset": NAME, "class_counts_source": CLASS_COUNTS_SOURCE,
                        "note": "synthetic data shaped like OrganSMNIST's size, not medical data"},
    )
