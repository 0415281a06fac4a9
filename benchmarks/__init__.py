"""Benchmarks: `uv run python -m benchmarks NAME [--quick]` writes benchmarks/results/NAME.json (+ PNG)."""
