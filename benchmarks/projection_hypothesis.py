"""Hypothesis check (issue 16, direction 2: a data-independent low-dimensional working space).

Release the DP class statistics (counts, sums, diagonal second moments; the Gaussian
mechanism of ``dp-stats`` with its √3 sensitivity, σ_s from fedsim's calibration, client
placement) in a k-dimensional random orthonormal projection P, clipped at R_k = √k
(standardised data: E‖Px‖² ≈ k), instead of the full d = 384 at R = √d; sample
class-conditional Gaussians in the projection, lift them with Pᵀ plus unit isotropic noise in
the complement, and score a logistic probe (best of C ∈ {0.01, 0.1, 1}) trained on them on the
pooled VALIDATION splits (never test).  A numpy sketch of the mechanism (not fedsim's code
path), to decide whether the idea is worth building:

    OMP_NUM_THREADS=1 python benchmarks/projection_hypothesis.py [seed]

Measured 2026-12-03 (seed 0, synthetic, α = 0.3): the projection loses more class signal
than it saves noise at every ε — ε = ∞: k = 384 / 128 / 64 / 32: 80.8 / 51.8 / 32.3 / 21.6 %;
ε = 8: 63.3 / 43.3 / 33.6 / 22.0 %; ε = 1: 24.3 / 19.3 / 20.5 / 18.3 % — so it was not built.
"""
import sys, math, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from fedsim.data.federation import DataConfig, load_federation
from fedsim.privacy.calibration import calibrate_release_noise

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
fed = load_federation(DataConfig(dataset="synthetic"), seed)
K, d = fed.num_classes, fed.clients[0].x_train.shape[1]
xv = np.concatenate([c.x_val for c in fed.clients]); yv = np.concatenate([c.y_val for c in fed.clients])
rng = np.random.default_rng(1000 + seed)

def release(x, y, P, R, sigma):
    z = x @ P if P is not None else x.astype(np.float64)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    if math.isfinite(R):
        z = z * np.minimum(1, R / np.maximum(norms, 1e-12))
    k = z.shape[1]
    N = np.bincount(y, minlength=K).astype(float)
    S = np.zeros((K, k)); M = np.zeros((K, k))
    np.add.at(S, y, z); np.add.at(M, y, z * z)
    if sigma > 0:
        s = math.sqrt(3) * sigma
        N += rng.normal(0, s, K); S += rng.normal(0, s * R, (K, k)); M += rng.normal(0, s * R * R, (K, k))
    return N, S, M

def score(k, eps, sigma):
    P = None if k == d else np.linalg.qr(rng.normal(size=(d, k)))[0]
    R = math.inf if eps == math.inf else math.sqrt(k)
    N = 0; S = 0; M = 0
    for c in fed.clients:
        n, s_, m = release(c.x_train, c.y_train, P, R, sigma); N = N + n; S = S + s_; M = M + m
    valid = N > max(2, 3 * math.sqrt(10) * math.sqrt(3) * sigma)
    mu = S / np.maximum(N, 1)[:, None]; var = M / np.maximum(N, 1)[:, None] - mu ** 2
    allmu = S[valid].sum(0) / N[valid].sum(); allvar = M[valid].sum(0) / N[valid].sum() - allmu ** 2
    floor = 1e-3 * max(allvar.mean(), 1e-6)
    var = np.maximum(var, floor)
    n_per = 500
    xs, ys = [], []
    for c in np.flatnonzero(valid):
        xs.append(mu[c] + np.sqrt(var[c]) * rng.normal(size=(n_per, mu.shape[1]))); ys += [c] * n_per
    xs = np.concatenate(xs); ys = np.array(ys)
    if P is not None:
        # lift: in-subspace samples plus isotropic residual of the complement's variance (public: standardised -> 1 per coordinate)
        lifted = xs @ P.T
        resid = rng.normal(size=(len(xs), d)); resid -= (resid @ P) @ P.T
        xs = lifted + resid
    best = 0
    for C in (0.01, 0.1, 1.0):
        clf = LogisticRegression(C=C, max_iter=300, class_weight="balanced").fit(xs, ys)
        best = max(best, balanced_accuracy_score(yv, clf.predict(xv)))
    return best, int(valid.sum())

for eps in (1.0, 8.0, math.inf):
    sigma = 0.0 if eps == math.inf else calibrate_release_noise([], eps, 1e-4, "rdp")
    row = [f"eps={eps} sigma={sigma:.2f}"]
    for k in (384, 128, 64, 32, 16):
        b, v = score(k, eps, sigma)
        row.append(f"k={k}: {100*b:.1f} ({v} cls)")
    print(" | ".join(row), flush=True)
