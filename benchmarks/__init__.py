"""Benchmarks: `uv run python -m benchmarks NAME [--quick]` writes benchmarks/results/NAME.json (+ PNG).

On a lent GPU (H100 / H200): ``MM_NO_PROGRESS=1 uv run python -m benchmarks gpu_check --out DIR`` in a synced
checkout, a few minutes, one ``gpu_check:`` progress line per section; see benchmarks/gpu_check.py.
"""
