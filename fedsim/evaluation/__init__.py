"""Downstream evaluation protocol, fidelity metrics, reports."""

PROTOCOL_REVISION = 3
"""Revision of the evaluation protocol's defaults, saved in every ``table`` record.

Bumped when a default changes what an evaluation computes without a new option value to
tell the results apart (fedsim's options otherwise promise that a new option's default
reproduces the behaviour from before it existed, which is what lets a table resume
across upgrades).  Revision 1: the tuned probe chose its candidate on the validation
split alone.  Revision 2: it also scores the candidates on out-of-fold predictions of
its own train split (``--evaluation.probe.folds``, default 5) and keeps the reference
probe unless a paired test says a converged one is better.  Revision 3: the per-client
λ keeps λ = 1 (the local probe alone) unless the best λ beats it by more than one paired
standard error on the client's validation records (``--evaluation.lambda-guard``,
default 1; 0 restores the plain arg-max, whose ties went to λ = 0)."""
