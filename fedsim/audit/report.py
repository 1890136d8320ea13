"""What ``python -m fedsim.audit`` prints and writes: the claimed ε and δ, ε_lb at β,
guesses made and correct, the AUC; ``audit.json`` (everything, with the setting) and
``scores.png`` (histogram of the scores of included vs excluded canaries)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from fedsim.audit.run import AuditResult, run_audit, set_threads
from fedsim.outputs import config_dict, write_json
from fedsim.privacy.secure_noise import noise_label

PLAN_NOTE = ("The client's DP-SGD plan (q = B/max_records, T, σ and the normaliser B) is fixed from the "
             "public bound --privacy.max-records before the canaries are drawn, and the bound is at least the "
             "client's records plus every canary, so including a canary does not change q, T or σ; canaries "
             "are Poisson-sampled with the plan's q like every record (without DP the plan uses the client's "
             "own record count, also fixed before the canaries).")
STATISTICS_PLAN_NOTE = ("The release's σ_s is the client's own calibration (for FedHypeVAE: after charging "
                        "its accountant with the DP-SGD steps of --training.rounds rounds, the public history "
                        "σ_s depends on); the public bound --privacy.max-records is at least the client's "
                        "records plus every canary; the claimed ε is the release's own (one Gaussian mechanism).")
STATISTICS_SCORE_NOTE = ("Input-space canaries: records R·e_c of class y on distinct (class, coordinate) pairs; "
                         "score_k = (S̃_y[c] − S_y[c] of the client's own records)/R + (M̃_y[c] − M_y[c])/R², "
                         "2 + noise when included, noise (std √6·σ_s) when not.")
SCORE_NOTE = ("Gradient canaries: Dirac vectors C·e_k on distinct coordinates of the released parameters, "
              "added to the clipped sum when sampled; score_k = Σ_t g̃_t[k], the privatized gradients the "
              "mechanism releases (the optimizer is post-processing).")


def default_directory(command) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = f"-{command.target}" if command.target == "statistics" else ""
    return Path("audits") / f"{command.algorithm}{target}-eps{command.privacy.epsilon:g}-{stamp}"


def audit_json(command, result: AuditResult) -> dict:
    """The content of ``audit.json``."""
    bound = result.bound
    return {
        "algorithm": command.algorithm,
        "claimed_epsilon": _number(result.claimed_epsilon),
        "target_epsilon": _number(command.privacy.epsilon),
        "delta": result.delta,
        "epsilon_lower_bound": bound.epsilon_lower_bound,
        "epsilon_ceiling": bound.ceiling,
        "beta": bound.beta,
        "canaries": bound.canaries,
        "guesses": bound.guesses,
        "correct_guesses": bound.correct,
        "guess_counts_tried": list(bound.guess_counts_tried),
        "correct_per_guess_count": [list(entry) for entry in bound.correct_per_count],
        "auc": result.auc,
        "target": result.target,
        "kind": "gradient" if result.target == "gradient" else "input-space records in the statistics release",
        "noise": noise_label(command.privacy),
        "audited_client": 0,
        "client_records": result.num_records,
        "steps": result.steps,
        "plan": result.plan,
        "plan_note": PLAN_NOTE if result.target == "gradient" else STATISTICS_PLAN_NOTE,
        "score_note": SCORE_NOTE if result.target == "gradient" else STATISTICS_SCORE_NOTE,
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "scores": result.scores.tolist(),
        "included": result.included.astype(int).tolist(),
        "times_sampled": result.times_sampled.tolist(),
        "config": config_dict(command),
    }


def write_histogram(result: AuditResult, claimed: float, path: Path) -> None:
    """Histogram of the scores of included and excluded canaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.6))
    bins = [float(edge) for edge in np.histogram_bin_edges(result.scores, bins=40)]
    axes.hist(result.scores[~result.included], bins=bins, alpha=0.6, label="excluded")
    axes.hist(result.scores[result.included], bins=bins, alpha=0.6, label="included")
    axes.set_xlabel("score Σ_t g̃_t[k]" if result.target == "gradient" else "score ΔS/R + ΔM/R²")
    axes.set_ylabel("canaries")
    axes.set_title(f"claimed ε = {claimed:.3g}: ε_lb = {result.bound.epsilon_lower_bound:.2f} "
                   f"(β = {result.bound.beta:g}), AUC = {result.auc:.3f}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_summary(result: AuditResult) -> str:
    bound = result.bound
    return (f"claimed ε = {result.claimed_epsilon:.4g} at δ = {result.delta:g}\n"
            f"empirical lower bound ε_lb = {bound.epsilon_lower_bound:.3f} at β = {bound.beta:g} "
            f"({bound.correct} of {bound.guesses} guesses correct, {bound.canaries} canaries; "
            f"the most {bound.canaries} canaries can show: {bound.ceiling:.3f})\n"
            f"AUC (included vs excluded scores) = {result.auc:.3f}; "
            f"{f'{result.steps} DP-SGD steps' if result.target == 'gradient' else 'one statistics release'}, "
            f"{result.seconds:.0f} s wall, {result.cpu_seconds:.0f} s CPU")


def audit_and_report(command) -> AuditResult:
    """Validate, run, print and write (``audit.json``, ``scores.png``)."""
    command.validate()
    set_threads(command.threads)
    directory = command.out or default_directory(command)
    result = run_audit(command)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(audit_json(command, result), directory / "audit.json")
    write_histogram(result, result.claimed_epsilon, directory / "scores.png")
    print(format_summary(result))
    print(f"wrote {directory / 'audit.json'} and {directory / 'scores.png'}")
    return result


def _number(value: float) -> float | str:
    """A JSON-ready number (``"inf"`` for ∞, as in config.json)."""
    return "inf" if value == float("inf") else value
