"""Differential-privacy machinery: per-sample gradients, joint clipping, Gaussian
noise, Poisson subsampling, accountants, the DP statistics release and the
per-client privacy ledger.  One small module per concept."""
