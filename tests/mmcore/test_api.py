"""The README's library snippet for mmcore, run as written (a micro CLIP swapped in for ViT-B-32)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from readme_snippets import readme_snippet, swapped


def test_importing_mmcore_imports_no_torch():
    code = "import sys, mmcore; print('torch' in sys.modules, 'load_clip' in mmcore.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_readme_snippet_loads_a_clip_and_embeds(capsys):
    code = swapped(readme_snippet("mmcore.load_clip(\"ViT-B-32\""), {'"ViT-B-32", pretrained="openai"': '"mm-micro-clip"'})
    rng = np.random.default_rng(0)
    scope = {"image": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)}
    exec(compile(code, "README.md", "exec"), scope)
    import mmcore
    from mmcore.encoders.clip import load_clip

    assert mmcore.load_clip is load_clip
    n_params, sim = capsys.readouterr().out.split()
    assert int(n_params) == sum(p.numel() for p in scope["bundle"].model.parameters()) > 0
    assert -1.0 <= float(sim) <= 1.0
    assert abs(float(scope["img"].detach().norm()) - 1) < 1e-5 and scope["txt"].shape == scope["img"].shape
    # a different image gives a different similarity: the snippet's number depends on its input
    other = scope["bundle"].model.encode_image(scope["bundle"].preprocess_eval(255 - scope["image"]).unsqueeze(0),
                                               normalize=True)
    assert float((other @ scope["txt"].T).item()) != float(sim)


def test_count_parameters_is_one_function_and_counts_trainable_ones():
    import mmcore
    import torch
    from mmcore.encoders import clip

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))  # 16 + 10 parameters
    assert mmcore.count_parameters(net) == 26 and clip.count_parameters is mmcore.count_parameters
    net[0].requires_grad_(False)
    assert mmcore.count_parameters(net, trainable_only=True) == 10 and mmcore.count_parameters(net) == 26
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    defs = [p for d in ("packages", "apps") for p in (root / d).rglob("*.py") if "def count_parameters(" in p.read_text()]
    assert [p.relative_to(root).as_posix() for p in defs] == ["packages/mmcore/src/mmcore/checkpoint.py"]
