"""mmcore.registry.Registry: the one name -> part table behind the project's registries."""

from __future__ import annotations

import pytest
from mmcore.registry import Registry


def test_registry_keys_order_clashes_and_removal():
    r: Registry[str] = Registry("thing", key=lambda n: n.lower())
    assert r.register("Alpha", "a") == "a" and r.register("beta", "b") == "b"
    assert r.register("ALPHA", "a") == "a"  # the same part again: a module imported twice
    with pytest.raises(ValueError, match="thing 'alpha' is already registered"):
        r.register("alpha", "other")
    assert list(r) == ["a", "b"] and len(r) == 2 and "alpha" in r and "gamma" not in r and 3 not in r
    assert r.find("ALPHA") == "a" and r.find("gamma") is None
    r.unregister("Alpha")
    r.unregister("never-there")
    assert list(r) == ["b"] and r.find("alpha") is None
