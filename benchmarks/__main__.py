"""Entry point: `uv run python -m benchmarks NAME [args...]` (or `uv run mm bench NAME`).

Each benchmark is a module ``benchmarks/<name>.py`` with ``main(argv: list[str]) -> dict``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

# Scripts in this folder that are tools, not benchmarks.
NOT_BENCHMARKS = {"render_readme", "unlearn_shapes_plot", "unlearn_matrix_plot"}


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_") and m.name not in NOT_BENCHMARKS)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m benchmarks NAME [args...]\n\navailable: " + ", ".join(available()))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in available():
        print(f"unknown benchmark {name!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"benchmarks.{name}")
    mod.main(rest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
