"""Differential-privacy machinery: the DP-SGD trainer (Poisson batches, per-sample or
ghost clipping, Gaussian noise, accounting), noise sources, a client's privacy state,
accountants, the DP statistics and label releases and the per-client privacy ledger.
One small module per concept."""
