"""The README's ```python blocks, for tests that run them as written (sizes swapped by the caller)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(containing: str) -> str:
    """The one ```python block of README.md that contains ``containing``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S) if containing in b]
    assert len(blocks) == 1, f"expected one README python block with {containing!r}, found {len(blocks)}"
    return blocks[0]


def swapped(code: str, swaps: dict[str, str]) -> str:
    """``code`` with each key replaced by its value; every key must occur (a README edit must not silently
    turn the test into one that runs something else)."""
    for old, new in swaps.items():
        assert old in code, f"README snippet no longer contains {old!r}"
        code = code.replace(old, new)
    return code
