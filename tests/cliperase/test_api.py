"""The README's library snippet for cliperase, run as written on the easy shapes world (micro CLIP)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from cliperase_testutil import EASY_KW
from readme_snippets import readme_snippet, swapped


def test_importing_cliperase_imports_no_torch():
    code = "import sys, cliperase; print('torch' in sys.modules, 'unlearn' in cliperase.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def _forget_accuracy(model, bundle, data) -> float:
    from mmcore.eval.zeroshot import zero_shot_eval

    held = data.subset([i for i, r in enumerate(data.records) if data.classnames[r.label] == "circle"])
    return zero_shot_eval(model, bundle.tokenizer, held, bundle.preprocess_eval)["accuracy"]


@pytest.mark.slow
def test_readme_snippet_unlearns_in_memory(easy_world):
    from mmcore.data.shapes import make_shapes

    model_dir, _split = easy_world
    code = swapped(readme_snippet("cliperase.unlearn("), {
        '"runs/clip"': repr(str(model_dir)),
        "make_shapes(1000, seed=0)": f"make_shapes(200, seed=0, **{EASY_KW!r})",
        "UnlearnConfig(steps=50)": "UnlearnConfig(steps=30, lr=1e-3, batch_size=32, forget_batch_size=16)",
    })
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    bundle, model = scope["bundle"], scope["model"]
    assert isinstance(model, torch.nn.Module) and model is not bundle.model
    held_out = make_shapes(200, seed=1, **EASY_KW)
    before = _forget_accuracy(bundle.model, bundle, held_out)  # the input model is left as it was
    after = _forget_accuracy(model, bundle, held_out)
    assert before > 0.8 and after < before - 0.5, (before, after)
    assert not torch.are_deterministic_algorithms_enabled() or torch.is_deterministic_algorithms_warn_only_enabled()


def test_unlearn_takes_an_open_clip_model_and_refuses_retrain(easy_world):
    import cliperase
    from cliperase_testutil import easy_split
    from mmcore.encoders.clip import load_clip
    from mmcore.errors import ConfigError

    model_dir, _ = easy_world
    split = easy_split()
    net = load_clip(model_dir).model
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = cliperase.unlearn(net, split.forget, split.retain.records, cliperase.UnlearnConfig(steps=2, method="ga"),
                            inplace=True)
    assert out is net and any(not torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ConfigError, match="retrain"):
        cliperase.unlearn(net, split.forget, split.retain, cliperase.UnlearnConfig(method="retrain"))
