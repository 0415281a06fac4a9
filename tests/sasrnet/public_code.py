"""Helpers of the tests that compare this package with the authors' public code (a checkout named by an
environment variable; the suite never contains that code): import its modules without leaving them in
``sys.modules`` (SaSR-Net and ST-AVQA both have a ``visual_net``), switch dropout and drop-path off, record
the public Gumbel draws to replay them in ours, and measure the differences."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]


def import_public(dirs: list[Path], *names: str) -> list:
    """Import ``names`` with ``dirs`` first on ``sys.path``; afterwards ``sys.path`` and ``sys.modules`` are
    as before (modules of those folders are removed again; same-named ones that were there come back)."""
    local = {p.stem for d in dirs for p in d.glob("*.py")} | {p.name for d in dirs for p in d.iterdir() if p.is_dir()}
    saved_path, stashed = list(sys.path), {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in local}
    sys.path[:0] = [str(d) for d in dirs]
    try:
        return [importlib.import_module(n) for n in names]
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if k.split(".")[0] in local]:
            del sys.modules[k]
        sys.modules.update(stashed)


def no_dropout(model: nn.Module) -> nn.Module:
    """Dropout, attention dropout and drop-path (ours: ``p``; timm's: ``drop_prob``) off, in place."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
        for attr in ("drop_prob", "p"):
            if type(m).__name__ == "DropPath" and hasattr(m, attr):
                setattr(m, attr, 0.0)
    return model


class GumbelTape:
    """Records every ``torch.distributions.Gumbel.sample`` (the public grouping's noise draw) and replays
    the draws, in order, as ``sasrnet.sasr.gumbel_noise`` (ours). A context manager: both patches go at exit."""

    def __enter__(self) -> GumbelTape:
        import pytest

        self.mp, self.draws, self.left = pytest.MonkeyPatch(), [], []
        return self

    def __exit__(self, *exc) -> None:
        self.mp.undo()

    def record(self) -> None:
        orig = torch.distributions.gumbel.Gumbel.sample

        def sample(dist, sample_shape=torch.Size()):
            x = orig(dist, sample_shape)
            self.draws.append(x)
            return x

        self.mp.setattr(torch.distributions.gumbel.Gumbel, "sample", sample)

    def replay(self) -> None:
        import sasrnet.sasr

        self.mp.undo()
        self.left = list(self.draws)

        def noise(shape, seeds, like):
            x = self.left.pop(0)  # public [B, heads=1, groups, segments], ours [B, groups, segments]
            assert x.shape[1] == 1 and x.shape[:1] + x.shape[2:] == shape, (x.shape, shape)
            return x[:, 0].to(like.dtype)

        self.mp.setattr(sasrnet.sasr, "gumbel_noise", noise)


@contextlib.contextmanager
def public_losses_at(dtype: torch.dtype, *modules):
    """At float64, the public training losses' float32 casts stay float64: ``Tensor.float()``, the
    ``torch.float32`` of each of ``modules`` (e.g. a ``dtype=torch.float32`` buffer) and the default dtype
    of ``torch.zeros``; a float64 comparison then measures the models, not the casts. At float32: no change."""
    if dtype is not torch.float64:
        yield
        return

    class _Torch:  # a module's ``torch`` whose float32 is float64
        float32 = torch.float64
        FloatTensor = torch.DoubleTensor

        def __getattr__(self, name):
            return getattr(torch, name)

    import pytest

    mp, default = pytest.MonkeyPatch(), torch.get_default_dtype()
    try:
        mp.setattr(torch.Tensor, "float", torch.Tensor.double)
        for m in modules:
            mp.setattr(m, "torch", _Torch())
        torch.set_default_dtype(torch.float64)
        yield
    finally:
        torch.set_default_dtype(default)
        mp.undo()


def diffs(pairs: Iterable[tuple[str, torch.Tensor, torch.Tensor]]) -> dict[str, tuple[float, float]]:
    """Per name: (max |ours - public|, that / max |public|)."""
    out = {}
    for name, ours, ref in pairs:
        assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
        d = float((ours.double() - ref.double()).abs().max())
        out[name] = (d, d / max(float(ref.double().abs().max()), 1e-300))
    return out


def worst(d: dict[str, tuple[float, float]]) -> tuple[float, float, str]:
    """The largest abs and relative difference of :func:`diffs` and the name with the largest relative one."""
    name = max(d, key=lambda k: d[k][1])
    return max(v[0] for v in d.values()), d[name][1], name


def recipe(name: str):
    """The TrainConfig of the committed preset sasrnet/configs/avqa/NAME.yaml."""
    from mmcore.config import resolve_config
    from mmcore.presets import preset_path
    from sasrnet.config import TrainConfig

    return resolve_config(TrainConfig, preset_path("sasrnet", "avqa", name), {})


def one_public_and_one_own_step(ref, ours, public_loss, public_inputs, batch, cfg, lr: float, key=None,
                                tape=None) -> dict:
    """One training step on each side. Public: ``public_loss(ref(*public_inputs)) -> (loss, {term: value})``
    and the published ``optim.Adam(model.parameters(), lr)`` step. Ours: ``compute_loss`` and the recipe's
    optimizer (:func:`sasrnet.recipes.train.build_optimizer`, learning rate as the training loop sets it).
    ``key`` maps a public parameter name to ours (default :func:`sasrnet.official.official_key`; None: a
    layer the public forward never calls, whose gradient must be None). Returns what :func:`training_step_report` reads."""
    from sasrnet.model import compute_loss
    from sasrnet.official import official_key
    from sasrnet.recipes.train import build_optimizer, set_lr

    key = key or official_key

    before = {k: p.detach().clone() for k, p in ref.named_parameters()}
    ref_opt = torch.optim.Adam(ref.parameters(), lr=lr)
    ref_opt.zero_grad()
    if tape is not None:
        tape.record()
    with torch.random.fork_rng():
        torch.manual_seed(2)
        loss, ref_terms = public_loss(ref(*public_inputs))
    loss.backward()
    ref_opt.step()
    if tape is not None:
        tape.replay()
    terms = compute_loss(ours.cfg, ours(batch), batch)
    if tape is not None:
        assert tape.draws and not tape.left, "our model drew a different number of Gumbel samples"
    opt, sched = build_optimizer(ours, cfg)
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    set_lr(opt, sched, 0, cfg.warmup_steps)
    assert opt.param_groups[0]["lr"] == lr
    opt.step()
    own = dict(ours.named_parameters())
    out = {"terms": [], "grads": [], "params": []}
    for name, v in ref_terms.items():
        out["terms"].append((name, terms[name].detach().reshape(1), v.detach().reshape(1)))
    for k, p in ref.named_parameters():
        mine = key(k)
        if mine is None:
            assert p.grad is None, k
            continue
        out["grads"].append((k, own[mine].grad, p.grad))
        out["params"].append((k, own[mine].detach(), p.detach(), before[k]))
    assert len(out["grads"]) == len(own) and all(p.grad is not None for p in own.values())
    return out


def training_step_report(label: str, dtype, step: dict, lr: float) -> dict:
    """The measured differences, printed on one line (pytest -s) and returned:
    terms: max |ours - public| over the loss and its terms, and that relative to |public|;
    grads: max |dg| over every parameter relative to the largest gradient entry G of the model (some
    gradients are zero analytically, e.g. attention key biases under a softmax over the keys, or biases
    followed by a LayerNorm: both sides give rounding noise there), and the largest per-tensor max |dg| /
    max |g| over the tensors whose gradient reaches 1e-4 G;
    step: the parameters after the step, max |dp| over all coordinates (abs); over the coordinates whose
    gradient is at least 1e-4 G, max |dp| / max(max |p| of the tensor, lr) (rel) and max |dp| / lr
    (``step_over_lr``); ``step_over_lr_all``: over all coordinates (Adam's first step moves each coordinate
    by about lr * sign(g), so where the gradient is rounding noise alone it moves +-lr at random)."""
    r = {}
    t = diffs(step["terms"])
    r["terms_abs"], r["terms_rel"] = max(a for a, _ in t.values()), max(b for _, b in t.values())
    big = max(float(g.abs().max()) for _, _, g in step["grads"])
    r["grads_abs_over_G"] = max(float((o.double() - g.double()).abs().max()) for _, o, g in step["grads"]) / big
    real = [(k, o, g) for k, o, g in step["grads"] if float(g.abs().max()) >= 1e-4 * big]
    r["grads_rel"], r["grads_rel_worst"] = worst(diffs(real))[1:]
    r["grads_below_1e-4_G"] = len(step["grads"]) - len(real)
    grads = {k: g for k, _, g in step["grads"]}
    dp_abs = dp_rel = over_lr = over_lr_all = 0.0
    for k, o, p, _ in step["params"]:
        d = (o.double() - p.double()).abs()
        dp_abs, over_lr_all = max(dp_abs, float(d.max())), max(over_lr_all, float(d.max()) / lr)
        ok = grads[k].abs() >= 1e-4 * big
        if ok.any():
            over_lr = max(over_lr, float(d[ok].max()) / lr)
            dp_rel = max(dp_rel, float(d[ok].max()) / max(float(p.abs().max()), lr))
    r.update(params_abs=dp_abs, params_rel=dp_rel, step_over_lr=over_lr, step_over_lr_all=over_lr_all)
    print(f"\n{label} {str(dtype).removeprefix('torch.')}: " + ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    return r


def assert_training_step_bounds(r: dict, dtype) -> None:
    """float64: every difference within 1e-5 (relative); float32: the bounds the rounding allows."""
    if dtype is torch.float64:
        assert max(r["terms_rel"], r["grads_abs_over_G"], r["grads_rel"], r["params_rel"], r["step_over_lr_all"]) <= 1e-5, r
    else:
        assert r["terms_rel"] <= 1e-6 and r["grads_abs_over_G"] <= 1e-5 and r["grads_rel"] <= 1e-4, r
        assert r["step_over_lr"] <= 1e-3 and r["params_rel"] <= 1e-5 and r["step_over_lr_all"] <= 2.5, r
