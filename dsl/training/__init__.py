"""Training: from a compiled model and CSV data to fitted params and their report.

data (CSV tables, columns, splits, standardizing), config (the `train` block and `--set`
overrides), train (the loop, optimizers, checkpoints as they happen), solvers (full-batch fits
through scipy.optimize), runtime (compile cache, params, datasets), report (metrics and the
saved report), baselines and uncertainty (what a fit is compared with, its error bars)."""
