"""Fixtures of the cliperase tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def easy_world(tmp_path_factory):
    """(model dir, ForgetSplit): a micro CLIP trained on the easy four-shape world, forget "circle"
    (cliperase_testutil.train_easy_world; ~5 s)."""
    from cliperase_testutil import train_easy_world

    return train_easy_world(tmp_path_factory.mktemp("easy"))
