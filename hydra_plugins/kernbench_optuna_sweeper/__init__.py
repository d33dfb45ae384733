"""kernbench's Hydra sweeper over current Optuna: ``hydra/sweeper=optuna`` (ADR 0031)."""
