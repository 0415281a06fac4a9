"""Fixtures of the sasrnet tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sasrnet_testdata import make_avqa_dir


@pytest.fixture(scope="session")
def avqa_dir(tmp_path_factory) -> Path:
    return make_avqa_dir(tmp_path_factory.mktemp("avqa"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # 2 cores shared by many processes: a single intra-op thread is both faster and deterministic
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
