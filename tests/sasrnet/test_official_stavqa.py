"""Our ``kind="avst"`` model against ST-AVQA's public code (github GeWu-Lab/MUSIC-AVQA: the model
``net_grd_avst/net_avst.py``, its training script ``net_grd_avst/main_avst.py``), only where
MM_STAVQA_PUBLIC_DIR points to a checkout of it (the suite never contains that code): one training step
(loss, its terms, every gradient, the parameters after the published optimiser's step) and the grounding
initialisation the script always applies."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import torch
from public_code import (
    assert_training_step_bounds,
    import_public,
    no_dropout,
    one_public_and_one_own_step,
    public_losses_at,
    recipe,
    training_step_report,
)
from sasrnet.official import official_key

PUBLIC = os.environ.get("MM_STAVQA_PUBLIC_DIR")
pytestmark = pytest.mark.skipif(not PUBLIC, reason="MM_STAVQA_PUBLIC_DIR (a checkout of GeWu-Lab/MUSIC-AVQA) not set")

# AVQA_Fusion_Net layers its forward never calls: the ImageNet ResNet-18 (the features come extracted),
# fc_a1_pure / fc_a2_pure (its "audio_feat_pure" is fc_a2's output), fc_v, fc_st, fc, fc_aq, fc_vq, norm3
AVST_UNUSED = ("visual_net.", "fc_a1_pure.", "fc_a2_pure.", "fc_v.", "fc_st.", "fc.", "fc_aq.", "fc_vq.", "norm3.")


def avst_key(name: str) -> str | None:
    return None if name.startswith(AVST_UNUSED) else official_key(name)


def _public(monkeypatch):
    """net_avst with its ResNet-18 built without the ImageNet file (a path on the authors' machine)."""
    visual_net, net_avst = import_public([Path(PUBLIC) / "net_grd_avst"], "visual_net", "net_avst")
    monkeypatch.setattr(net_avst, "resnet18", lambda pretrained=False, **kw: visual_net.resnet18(False, **kw))
    return net_avst


def _script() -> str:
    return (Path(PUBLIC) / "net_grd_avst/main_avst.py").read_text()


def _script_function(name: str, namespace: dict):
    """A function of main_avst.py, compiled from its source alone (importing the script needs CUDA, munch,
    tensorboard and the authors' paths)."""
    tree = ast.parse(_script())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([fn], []), "main_avst.py", "exec"), namespace)
    return namespace[name]


def _ours_from(ref):
    from sasrnet.config import model_config
    from sasrnet.model import build_model

    ours = build_model(model_config("avst", "paper", {"word_vocab": 93, "n_answers": 42}))
    mapped = {avst_key(k): v for k, v in ref.state_dict().items() if avst_key(k) is not None}
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    assert not unexpected and set(missing) == {n for n, _ in ours.named_buffers()}  # input stats: identity
    return ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_training_step_equals_the_public_code(dtype, monkeypatch):
    """Train mode, paper sizes, equal weights and inputs, dropout off: the loss main_avst.py's train()
    computes (CrossEntropy of the answers + 0.5 CrossEntropy of the match head over the positive and
    negative frames, interleaved by its batch_organize), each term, every gradient and the parameters
    after one step of its Adam(lr 1e-4) equal ours (the measures: training_step_report)."""
    src = _script()
    for line in ("criterion = nn.CrossEntropyLoss()", "loss = loss_qa + 0.5*loss_match",
                 "optimizer = optim.Adam(model.parameters(), lr=args.lr)"):
        assert line in src, line
    lr = float(re.search(r"'--lr', type=float, default=([0-9.e-]+)", src).group(1))
    cfg = recipe("avst-paper")
    assert (cfg.model, cfg.lr, cfg.warmup_steps, cfg.grad_clip) == ("avst", lr, 0, 0.0)
    batch_organize = _script_function("batch_organize", {"torch": torch})

    net_avst = _public(monkeypatch)
    torch.manual_seed(0)
    ref = no_dropout(net_avst.AVQA_Fusion_Net()).to(dtype).train()
    ours = no_dropout(_ours_from(ref)).to(dtype).train()
    assert ours.cfg.w_match == 0.5
    g = torch.Generator().manual_seed(1)
    b, t = 3, 10
    audio = torch.randn(b, t, 128, generator=g, dtype=dtype)
    vp, vn = (torch.randn(b, t, 512, 14, 14, generator=g, dtype=dtype).relu() for _ in range(2))
    q = torch.randint(0, 93, (b, 14), generator=g)
    answer = torch.randint(0, 42, (b,), generator=g)
    criterion = torch.nn.CrossEntropyLoss()

    def public_loss(outputs):  # main_avst.py:50-57
        out_qa, out_match_posi, out_match_nega = outputs
        with public_losses_at(dtype):  # float64: batch_organize's torch.zeros and line 52's cast stay float64
            out_match, match_label = batch_organize(out_match_posi, out_match_nega)
            out_match = out_match.type(torch.DoubleTensor if dtype is torch.float64 else torch.FloatTensor)
            loss_match = criterion(out_match, match_label.type(torch.LongTensor))
            loss_qa = criterion(out_qa, answer)
            loss = loss_qa + 0.5 * loss_match
        return loss, {"loss": loss, "answer": loss_qa, "match": loss_match}

    batch = {"audio": audio, "visual": vp, "visual_neg": vn, "question": q, "answer": answer}
    step = one_public_and_one_own_step(ref, ours, public_loss, (audio, vp, vn, q), batch, cfg, lr, key=avst_key)
    assert_training_step_bounds(training_step_report("AVST", dtype, step, lr), dtype)


def test_grounding_init_loads_what_the_public_script_loads(tmp_path, monkeypatch):
    """main_avst.py always starts from the grounding checkpoint (lines 236-247, run here from its source on
    a random checkpoint of the grounding network's layout): our init_from of the same .pt file sets every
    parameter the public loader sets, to the same values (fc_a1_pure / fc_a2_pure aside: never used), and
    leaves the others as they were."""
    from sasrnet.recipes.train import _init_from

    net_avst = _public(monkeypatch)
    torch.manual_seed(0)
    ref = net_avst.AVQA_Fusion_Net()
    ours = _ours_from(ref)
    start = {k: v.clone() for k, v in ref.state_dict().items()}
    shapes = {k: v.shape for k, v in ref.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    ckpt = {f"module.{k}": torch.randn(shapes[k], generator=g)
            for k in shapes if k.split(".")[0] in ("fc_a1", "fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4")}
    ckpt["module.visual_net.conv1.weight"] = torch.randn(shapes["visual_net.conv1.weight"], generator=g)
    path = tmp_path / "main_grounding_gen_best.pt"
    torch.save(ckpt, path)

    # the script's loading block, from `pretrained_file = ...` to `model.load_state_dict(model_dict)`
    tree = ast.parse(_script())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    train_branch = next(n for n in main.body if isinstance(n, ast.If) and "train" in ast.unparse(n.test)).body
    first = next(i for i, s in enumerate(train_branch) if "pretrained_file" in ast.unparse(s))
    last = next(i for i, s in enumerate(train_branch) if ast.unparse(s) == "model.load_state_dict(model_dict)")
    block = ast.Module(train_branch[first:last + 1], [])
    assert "grounding_gen/models_grounding_gen/main_grounding_gen_best.pt" in ast.unparse(block)

    class _Torch:  # torch.load of the script's fixed path reads our file
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def load(_):
            return torch.load(path, weights_only=True)

    model = torch.nn.DataParallel(ref)  # as the script wraps it: keys "module.*"
    exec(compile(block, "main_avst.py", "exec"), {"torch": _Torch(), "model": model, "print": lambda *a: None})
    n = _init_from(ours, path)
    assert n == 14
    own = ours.state_dict()
    changed = {k for k, v in ref.state_dict().items() if not torch.equal(v, start[k])}
    assert changed == {k.removeprefix("module.") for k in ckpt if "visual_net" not in k} | {
        "fc_a1_pure.weight", "fc_a1_pure.bias", "fc_a2_pure.weight", "fc_a2_pure.bias"}
    for k, v in ref.state_dict().items():
        if avst_key(k) is not None:
            assert torch.equal(own[avst_key(k)], v), k
