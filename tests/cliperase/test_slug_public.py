"""SLUG against the authors' public code (CSIPlab/SLUG) at equal weights and inputs: the forget and retain
gradients of its ``calc_grad`` and the Pareto layers of its ``get_important_layers`` equal ours.

Runs only where MM_SLUG_PUBLIC_DIR points to a checkout of the public repository (the suite never contains
that code). ``calc_grad.py`` is loaded from its file (the ``clip.unlearn`` package ``__init__`` reads CelebA
files at import); ``get_important_layers`` and ``identify_pareto`` are functions nested in ``main()`` of
``unlearn_slug.py``, so they are compiled from that file's syntax tree and called as they are.

Equal inputs: a micro CLIP (ViT towers, so train mode and eval mode differ in nothing: no BatchNorm, no
dropout) trained on the easy world; D_f / D_r records with one caption each, every retain caption unique
(so the public diagonal CLIP loss and our identical-texts-as-positives loss are the same loss); the same
batches in the same order.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch

PUBLIC = os.environ.get("MM_SLUG_PUBLIC_DIR")
pytestmark = pytest.mark.skipif(not PUBLIC, reason="MM_SLUG_PUBLIC_DIR (a checkout of CSIPlab/SLUG) not set")


def _one_caption(data, tag: str):
    recs = [dataclasses.replace(r, captions=[f"{r.captions[0]} {tag}{i}"]) for i, r in enumerate(data.records)]
    return dataclasses.replace(data, records=recs)


def _public_nested_functions(path: Path, names: tuple[str, ...]) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    defs = [n for n in main.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {d.name for d in defs} == set(names), "the public main() no longer defines " + ", ".join(names)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from torch import nn

    ns: dict[str, object] = {"torch": torch, "nn": nn, "Path": Path, "plt": plt}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), ns)
    return ns


class _Loader(list):
    """What calc_grad reads of open_clip_train's DataInfo: iterable batches, num_batches, num_samples."""

    def __init__(self, batches):
        super().__init__(batches)
        self.num_batches = len(batches)
        self.num_samples = sum(len(b[0]) for b in batches)


def test_gradients_and_pareto_layers_equal_the_public_code(easy_world, tmp_path, monkeypatch):
    from cliperase.slug import layer_scores, pareto_layers, slug_gradients
    from cliperase.templates import config_templates
    from cliperase_testutil import easy_config
    from mmcore.encoders.clip import load_clip

    root = Path(PUBLIC)
    sys.path.insert(0, str(root / "src"))
    monkeypatch.syspath_prepend(str(root / "src"))
    spec = importlib.util.spec_from_file_location("public_slug_calc_grad", root / "src/clip/unlearn/calc_grad.py")
    calc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calc)  # type: ignore[union-attr]
    from clip.open_clip import create_loss  # the public code's vendored open_clip

    model_dir, split = easy_world
    split = dataclasses.replace(split, forget=_one_caption(split.forget, "f"),
                                retain=_one_caption(split.retain.subset(range(96)), "r"))
    cfg = easy_config(model_dir, text="caption", forget_text=None, batch_size=32, forget_batch_size=16)
    cfg = dataclasses.replace(cfg, slug=dataclasses.replace(cfg.slug, retain_grad_samples=0, forget_grad_samples=0))
    bundle = load_clip(str(model_dir))
    model = bundle.model
    g_f, g_r, seen = slug_gradients(model, bundle, split, cfg, config_templates(split.retain, cfg), "cpu")
    assert seen == {"forget": len(split.forget), "retain": len(split.retain)}

    def batches(data, bs):
        out = []
        for s in range(0, len(data), bs):
            recs = data.records[s:s + bs]
            images = torch.stack([bundle.preprocess_eval(r.image) for r in recs])
            out.append((images, bundle.tokenizer([r.captions[0] for r in recs])))
        return out

    data = {name: types.SimpleNamespace(set_epoch=lambda e: None, dataloader=_Loader(batches(d, bs)))
            for name, d, bs in (("forget", split.forget, cfg.forget_batch_size), ("train", split.retain, cfg.batch_size))}
    args = types.SimpleNamespace(
        device="cpu", precision="fp32", accum_freq=1, unlearn_method="slug", log_every_n_steps=10 ** 6,
        world_size=1, rank=0, local_rank=0, batch_size=cfg.batch_size, result_dir=str(tmp_path / "results"),
        celeb_name="circle", model="mm-micro-clip", pretrained="easy", distill=False, horovod=False,
        # create_loss(args): the plain CLIP loss
        siglip=False, coca_caption_loss_weight=0, distill_model=None, local_loss=False, gather_with_grad=False,
        use_horovod=False,
    )
    model.output_dict = True  # the public code reads model(images, texts) as a dict
    model.train()
    calc.calc_grad(model, data, create_loss(args), 0, torch.optim.SGD(model.parameters(), lr=0.0), None, None,
                   None, args)
    grads_dir = tmp_path / "results/grads/circle_mm-micro-clip_easy"
    pub_f = torch.load(grads_dir / "forget_grads.pt", weights_only=True)
    pub_r = torch.load(grads_dir / "train_grads.pt", weights_only=True)
    # calc_grad zero-fills parameters that got no gradient; ours are zeros there too
    for ours, theirs in ((g_f, pub_f), (g_r, pub_r)):
        assert set(ours) == set(theirs)
        for name in ours:
            scale = max(float(theirs[name].abs().max()), 1e-12)
            assert torch.allclose(ours[name], theirs[name], atol=1e-5 * scale, rtol=1e-4), name

    # get_important_layers reads ../results/grads/<celeb>_<model>_<ckpt>/ from the working directory
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    ns = _public_nested_functions(root / "src/clip/unlearn_slug.py", ("identify_pareto", "get_important_layers"))
    public_layers, _ = ns["get_important_layers"]("circle", "mm-micro-clip easy", model)  # type: ignore[operator]
    params = {n: p.detach() for n, p in model.named_parameters()}
    ours_layers = pareto_layers(layer_scores(params, g_f, g_r))
    assert {t: sorted(v) for t, v in ours_layers.items()} == {t: sorted(public_layers.get(t, [])) for t in ours_layers}
    assert sum(map(len, ours_layers.values())) >= 2
