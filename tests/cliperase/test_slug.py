"""SLUG: per-layer importance and alignment, the Pareto fronts, the published binary search, and the one
single-layer update, on hand-made inputs and end to end on the easy world."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from cliperase.slug import (
    choose_step,
    layer_scores,
    pareto_front,
    pareto_layers,
    search_step,
    slug_gradients,
    slug_unlearn,
)
from cliperase.templates import config_templates
from cliperase_testutil import easy_config, tiny_config
from mmcore.distributed import AcceleratorConfig, build_accelerator
from mmcore.encoders.clip import load_clip


def test_layer_scores_by_hand():
    t = torch.tensor
    params = {"visual.a.weight": t([[3.0, 4.0]]), "transformer.b.weight": t([1.0, 0.0, 0.0]),
              "visual.a.bias": t([1.0]), "token_embedding.weight": t([[1.0]]), "positional_embedding": t([1.0]),
              "logit_scale": t(2.0), "ln_final.weight": t([2.0, 2.0]), "text_projection": t([[1.0]])}
    g_f = {"visual.a.weight": t([[0.3, 0.4]]), "transformer.b.weight": t([0.0, 2.0, 0.0]), "visual.a.bias": t([1.0]),
           "token_embedding.weight": t([[1.0]]), "positional_embedding": t([1.0]), "logit_scale": t(1.0),
           "ln_final.weight": t([1.0, -1.0]), "text_projection": t([[0.0]])}
    g_r = {"visual.a.weight": t([[-0.6, -0.8]]), "transformer.b.weight": t([0.0, 1.0, 1.0]), "visual.a.bias": t([1.0]),
           "token_embedding.weight": t([[1.0]]), "positional_embedding": t([1.0]), "logit_scale": t(1.0),
           "ln_final.weight": t([1.0, 1.0]), "text_projection": t([[1.0]])}
    s = layer_scores(params, g_f, g_r)
    # biases, embeddings, the logit scale and a zero forget gradient are no candidates
    assert set(s) == {"visual.a.weight", "transformer.b.weight", "ln_final.weight"}
    assert s["visual.a.weight"] == {"importance": pytest.approx(0.1), "alignment": pytest.approx(1.0), "tower": "vision"}
    assert s["transformer.b.weight"]["importance"] == pytest.approx(2.0)
    assert s["transformer.b.weight"]["alignment"] == pytest.approx(1 / math.sqrt(2))
    assert s["ln_final.weight"]["alignment"] == pytest.approx(0.0, abs=1e-12)
    assert s["ln_final.weight"]["tower"] == "language"
    assert pareto_layers(s) == {"vision": ["visual.a.weight"], "language": ["transformer.b.weight", "ln_final.weight"]}


def test_pareto_front_keeps_the_undominated_points():
    pts = [(0.1, 1.0), (0.2, 2.0), (0.3, 0.5), (0.05, 0.2), (0.2, 2.0)]
    # (0.3, 0.5) loses to (0.1, 1.0) on both; equal points do not dominate each other
    assert pareto_front(pts) == [0, 1, 3, 4]
    assert pareto_front([(0.5, 1.0), (0.5, 2.0)]) == [0, 1]  # not strictly lower alignment: both kept


def test_binary_search_follows_the_published_rule():
    # forget accuracy 0 from step 0.37 on; retain accuracy falls with the step
    trace = search_step(lambda s: (0.0 if s >= 0.37 else 100.0, 100.0 - s), 1.0, 0.0, 10)
    steps = [t["step_size"] for t in trace]
    assert steps[:5] == [1.0, 0.5, 0.25, 0.375, 0.3125]
    assert len(steps) == 10 and abs(steps[-1] - 0.37) < 0.01
    best = choose_step(trace, 0.0)
    assert best["meets_target"] and 0.37 <= best["step_size"] < 0.375 + 1e-12
    # too small a first step: doubled until the target is met, then bisected
    trace = search_step(lambda s: (0.0 if s >= 5 else 50.0, 90.0), 1.0, 0.0, 6)
    assert [t["step_size"] for t in trace] == [1.0, 2.0, 4.0, 8.0, 6.0, 5.0]
    # never met: the lowest forget accuracy
    trace = search_step(lambda s: (100.0 / (1 + s), 90.0), 1.0, 0.0, 3)
    assert not choose_step(trace, 0.0)["meets_target"] and choose_step(trace, 0.0)["step_size"] == 4.0


@pytest.fixture(scope="module")
def slug_run(easy_world):
    model_dir, split = easy_world
    cfg = easy_config(model_dir, method="slug")
    bundle = load_clip(model_dir)
    res = slug_unlearn(bundle, split, cfg, build_accelerator(AcceleratorConfig(log_with="none")))
    return model_dir, split, cfg, res


def test_slug_updates_one_pareto_layer_along_the_forget_gradient(slug_run):
    from cliperase.metrics import evaluate_split

    model_dir, split, cfg, res = slug_run
    info = res.info
    original = load_clip(model_dir)
    before, after = original.model.state_dict(), res.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [info["layer"]]
    assert info["layer"] in {n for front in info["pareto_layers"].values() for n in front}
    assert set(info["pareto_layers"]) == {"vision", "language"} and set(info["searched"]) >= {info["layer"]}
    # the update is -step * g_f of that layer, g_f the gradient of the forget pairs' mean cosine
    g_f, _g_r, seen = slug_gradients(original.model, original, split, cfg, config_templates(split.retain, cfg), "cpu")
    assert seen == {"forget": len(split.forget), "retain": len(split.retain)}
    delta = after[info["layer"]] - before[info["layer"]]
    assert torch.allclose(delta, -info["step_size"] * g_f[info["layer"]], atol=1e-6)
    assert info["step_size"] > 0 and len(info["searched"][info["layer"]]["trace"]) == cfg.slug.search_iters
    # the validation search lowered D_f accuracy; the held-out forget accuracy follows, retain stays
    assert info["validation_after"]["forget"] < info["validation_before"]["forget"]
    m0 = evaluate_split(original.model, original, split, cfg)
    m1 = evaluate_split(res.model, original, split, cfg)
    assert m0["forget_accuracy"] >= 90 and m1["forget_accuracy"] <= 30
    assert m1["retain_accuracy"] >= 85


def test_slug_search_uses_no_held_out_data(slug_run):
    from mmcore.data.records import ImageTextData

    model_dir, split, cfg, res = slug_run
    empty = ImageTextData("empty", [], classnames=split.retain.classnames, templates=list(split.retain.templates))
    blind = dataclasses.replace(split, test_forget=empty, test_retain=empty)
    again = slug_unlearn(load_clip(model_dir), blind, cfg, build_accelerator(AcceleratorConfig(log_with="none")))
    assert again.info["layer"] == res.info["layer"] and again.info["step_size"] == res.info["step_size"]
    assert res.info["validation"]["data"] == "D_f / D_r training subsamples"


def test_slug_text_tower_only_searches_language_layers(easy_world):
    model_dir, split = easy_world
    cfg = easy_config(model_dir, method="slug", towers="text", slug=dataclasses.replace(
        easy_config(model_dir).slug, max_layers=1, search_iters=2))
    from cliperase.methods import unlearn

    res = unlearn(load_clip(model_dir), split, cfg, build_accelerator(AcceleratorConfig(log_with="none")))
    assert res.info["towers"] == ["language"] and res.info["tower"] == "language"
    assert len(res.info["searched"]) == 1


def test_slug_is_a_method_of_run_unlearning(tmp_path):
    from cliperase.methods import get_method, parse_method
    from cliperase.recipes.runner import run_unlearning

    assert parse_method("slug") == {"method": "slug"}
    cfg = tiny_config(method="slug", slug=dataclasses.replace(tiny_config().slug, search_iters=2, max_layers=2))
    assert get_method(cfg.method).towers_for(cfg) == "both"
    m = run_unlearning(cfg, tmp_path / "slug")
    saved = json.loads((tmp_path / "slug" / "metrics.json").read_text())
    assert saved["steps"] == 1 and saved["slug"]["layer"] == m["slug"]["layer"]
    assert len(saved["slug"]["searched"]) == 2
    n_front = sum(map(len, saved["slug"]["pareto_layers"].values()))
    assert f"SLUG: layer `{m['slug']['layer']}`" in (tmp_path / "slug" / "report.md").read_text()
    assert f"({n_front} layers on the Pareto fronts, 2 searched)" in (tmp_path / "slug" / "report.md").read_text()
    logs = [json.loads(x) for x in (tmp_path / "slug" / "log.jsonl").read_text().splitlines()]
    assert sum(x["phase"] == "slug_search" for x in logs) == 4
