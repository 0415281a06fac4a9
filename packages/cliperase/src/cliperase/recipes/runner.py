"""End-to-end runs: load model and data, split D_f / D_r, evaluate before, unlearn (or retrain),
evaluate after, write the results. Used by `mm unlearn run|eval|compare` and `mm demo`.

Output directory of :func:`run_unlearning`::

    config.json         resolved UnlearnConfig
    before.json         metrics of the original model (reused by --resume; across runs: cliperase.before_cache)
    metrics.json        {"before", "after" (each with "n" and "se" of every percentage), "sizes", "wall_seconds",
                        "timing" (seconds per stage), "relearn", "templates", "settings", ...}
    relearn.png         the relearn curve (with relearning enabled)
    model.safetensors   unlearned weights + clip_config.json (mmcore.encoders.clip.load_clip)
    report.md           human-readable summary
    log.jsonl           training log
    checkpoint/         resumable state while running (removed when the run completes)
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.config import config_to_dict
from mmcore.data.records import ImageTextData
from mmcore.encoders.clip import random_init_marks
from mmcore.errors import ConfigError
from mmcore.io import atomic_write_text, read_json, write_json
from mmcore.run import TrainingRun

from cliperase.config import UnlearnConfig
from cliperase.forget_sets import ForgetSplit, run_forget_ids, split_forget_retain
from cliperase.methods import get_method, parse_method, reference_method
from cliperase.recipes.provenance import pretrain_config, retrain_error, retrain_unavailable
from cliperase.recipes.report import SUMMARY_KEYS, comparison_markdown, plot_comparison, run_report
from cliperase.streamed_split import load_streamed_split, streams_apply

# --------------------------------------------------------------------------- data


def load_data(cfg: UnlearnConfig, image_size: int | None = None) -> tuple[ImageTextData, ImageTextData]:
    """Training and held-out data for ``cfg.dataset`` (see ``test_split`` / ``holdout_fraction``).

    A synthetic dataset (shapes) is drawn at ``image_size`` with the pretraining run's seed and size unless the
    config sets ``data_seed`` / ``n_train``, so the training split is the data the model was trained on."""
    from mmcore.data.registry import dataset_spec, load_image_text

    spec = dataset_spec(cfg.dataset)
    kw: dict[str, Any] = {"caption_file": cfg.caption_file}
    n_kw: dict[str, dict[str, Any]] = {"train": {}, "test": {}}
    if spec.synthetic:
        pre = pretrain_config(cfg.model) or {}
        # a recorded name the registry no longer knows (an unregistered plugin's) is simply not the same data
        same = str(pre.get("dataset", "")).lower() == spec.name.lower()
        seed = cfg.data_seed if cfg.data_seed is not None else int(pre.get("seed", cfg.seed)) if same else cfg.seed
        kw["seed"] = seed
        kw["classes"] = cfg.shapes_classes or (str(pre.get("shapes_classes") or "shape") if same else "shape")
        if image_size:
            kw["image_size"] = image_size
        n_train = cfg.n_train or (int(pre["n_train"]) if same and pre.get("n_train") else 0)
        n_test = cfg.n_test or (int(pre["n_test"]) if same and pre.get("n_test") else 0)
        n_kw = {"train": {"n": n_train} if n_train else {}, "test": {"n": n_test} if n_test else {}}
    elif cfg.limit:
        kw["limit"] = cfg.limit
    if cfg.skip_bad:
        kw["skip_bad"] = True  # the registry ignores it for datasets held in memory
    test_split = cfg.test_split if cfg.test_split != "auto" else spec.test_split
    if test_split == "none" and spec.holdout is not None and 0.0 < cfg.holdout_fraction < 1.0:
        # held out by file names (reproducible), not by sampling the loaded records
        return spec.holdout(cfg.data_root, cfg.holdout_fraction, cfg.seed, skip_bad=cfg.skip_bad,
                            limit=cfg.limit or None)
    train = load_image_text(cfg.dataset, cfg.data_root, split="train", **kw, **n_kw["train"])
    if test_split != "none":
        test = load_image_text(cfg.dataset, cfg.data_root, split=test_split, **kw, **n_kw["test"])
        return train, test
    if not 0.0 < cfg.holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in (0, 1) when there is no test split; got {cfg.holdout_fraction}")
    idx = list(range(len(train)))
    random.Random(cfg.seed).shuffle(idx)
    k = max(1, round(cfg.holdout_fraction * len(idx)))
    held, kept = sorted(idx[:k]), sorted(idx[k:])
    return train.subset(kept, name=train.name), train.subset(held, name=f"{train.name}-holdout")


def load_split(cfg: UnlearnConfig, image_size: int | None, out_dir: str | Path | None) -> tuple[ForgetSplit, int]:
    """The forget / retain split of ``cfg`` and the number of unreadable items skipped: streamed from the shards
    (:mod:`cliperase.streamed_split`, the caption pass written to ``out_dir``) where that applies, else records."""
    if streams_apply(cfg) and out_dir is not None:
        split = load_streamed_split(cfg, out_dir)
        return split, split.forget.skipped + split.test_forget.skipped
    train, test = load_data(cfg, image_size)
    split = split_forget_retain(train, test, cfg.forget, run_forget_ids(cfg.dataset, cfg.forget, train, out_dir))
    return split, train.skipped + test.skipped


@dataclass
class Prepared:
    """What every method of one comparison shares: the data split and the original model's metrics."""

    split: ForgetSplit
    before: dict[str, Any]
    skipped: int
    before_cached: bool = False  # reused from the cache (before_cache)
    eval_before_s: float = 0.0
    split_s: float = 0.0  # reading the data and splitting it (a streamed split: the caption pass and the samples)


# --------------------------------------------------------------------------- helpers


def _accelerator(cfg: UnlearnConfig, accelerator: Any = None):
    if accelerator is not None:
        return accelerator
    from mmcore.distributed import build_accelerator

    return build_accelerator(cfg.accelerator)


def _load_model(cfg: UnlearnConfig, device: Any):
    """The model of ``cfg`` in any registered family (a saved CLIP or BLIP directory, or a CLIP name)."""
    from mmcore.encoders.family import load_image_text_model

    return load_image_text_model(cfg.model, pretrained=cfg.pretrained, device=str(device))


def _is_main(acc: Any) -> bool:
    return bool(acc.is_main_process)


def _prepare(cfg: UnlearnConfig, bundle: Any, out_dir: Path | None, resume: bool, acc: Any,
             cache_dir: str | Path | None = None) -> Prepared:
    """The split and the original model's metrics: from ``out_dir/before.json`` on --resume, else from the
    cache under ``cache_dir`` (:mod:`cliperase.before_cache`; None: no cache), else computed (and cached)."""
    from cliperase.before_cache import before_cache, before_key
    from cliperase.metrics import evaluate_split, forget_score, probe_set
    from cliperase.progress import stage

    t_split = time.perf_counter()
    split, skipped = load_split(cfg, bundle.image_size, out_dir)
    t0 = time.perf_counter()
    saved = out_dir / "before.json" if out_dir is not None else None
    cache = before_cache(cache_dir)
    key = before_key(cfg, split, acc.device) if cache.root is not None else None
    before, hit = None, False
    if resume and saved is not None and saved.is_file():
        before = read_json(saved)
    elif key is not None and (before := cache.get(key)) is not None:
        hit = True
    if before is None:
        before = evaluate_split(bundle.model, bundle, split, cfg, label="eval before")
        if cfg.relearn.enabled:
            probe, where = probe_set(split, cfg)
            with stage(f"relearn probe before · {len(probe)} {where} forget images", None):
                before["relearn_probe_score"] = forget_score(bundle.model, bundle, probe, split, cfg)
        if key is not None and _is_main(acc):
            cache.put(key, before)
    if saved is not None and _is_main(acc):
        write_json(saved, before)
    return Prepared(split, before, skipped, hit, time.perf_counter() - t0, t0 - t_split)


# --------------------------------------------------------------------------- public API


def run_unlearning(
    cfg: UnlearnConfig,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    *,
    accelerator: Any = None,
    prepared: Prepared | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Unlearn ``cfg.forget`` from ``cfg.model`` with ``cfg.method`` and write the results to ``out_dir``
    (see the module doc). Returns the metrics dict (on every process; only the main one writes).
    ``cache_dir``: reuse the original model's metrics from there (:mod:`cliperase.before_cache`)."""
    from mmcore.checkpoint import unwrap
    from mmcore.distributed import seed_everything

    from cliperase.metrics import evaluate_split
    from cliperase.relearn import plot_relearn, relearn_steps
    from cliperase.templates import config_templates

    cfg.validate()
    method = get_method(cfg.method)
    method.check(cfg)  # before the output directory is touched or any weights are loaded
    out = Path(out_dir)
    acc = _accelerator(cfg, accelerator)
    run = TrainingRun.create(out, acc, overwrite=overwrite, resume=resume)
    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    bundle = _load_model(cfg, acc.device)
    t_load = time.perf_counter() - t_start
    prep = prepared or _prepare(cfg, bundle, out, resume, acc, cache_dir)
    t_unlearn = time.perf_counter()
    run.save_config(cfg)
    split = prep.split

    res = method.unlearn(bundle, split, cfg, acc, run)
    model, train_seconds, last_log = res.model, res.train_seconds, res.last_log
    model = unwrap(model).eval()
    t_after = time.perf_counter()
    after = evaluate_split(model, bundle, split, cfg, label=f"eval after {cfg.method}")
    t_relearn = time.perf_counter()
    relearn = None
    if cfg.relearn.enabled and "relearn_probe_score" in prep.before:
        relearn = relearn_steps(model, bundle, split, cfg, prep.before["relearn_probe_score"])
    t_end = time.perf_counter()
    timing = {  # seconds; eval_before_s 0 where a comparison or the cache supplied the original's metrics
        "load_s": t_load, "split_s": 0.0 if prepared is not None else prep.split_s,
        "eval_before_s": 0.0 if prepared is not None else prep.eval_before_s,
        "unlearn_s": t_after - t_unlearn, "eval_after_s": t_relearn - t_after, "relearn_s": t_end - t_relearn,
        "total_s": t_end - t_start, "before_cached": prep.before_cached, "before_shared": prepared is not None}

    metrics: dict[str, Any] = {
        "method": cfg.method,
        "model": cfg.model,
        **random_init_marks(cfg.model, cfg.pretrained),
        "dataset": cfg.dataset,
        "forget": split.description,
        "forget_classes": split.forget_classes,
        "sizes": split.sizes(),
        "skipped_bad": prep.skipped,
        "before": prep.before,
        "after": after,
        "wall_seconds": train_seconds,
        "total_seconds": t_end - t_start,
        "timing": timing,
        "settings": {k: getattr(cfg, k) for k in ("lr", "steps", "batch_size", "forget_batch_size", "optimizer",
                                                  "eval_max_samples", "retrieval_max_pairs", "mia_max_samples")},
        "time_ratio_to_retrain": None,
        "relearn": relearn,
        "final_losses": last_log,
        "world_size": acc.num_processes,
        "steps": res.steps,
        "templates": config_templates(split.retain, cfg).to_dict(),
        **method.result_metrics(res),
    }
    if run.writes:  # CLIP: OUT/clip_config.json + model.safetensors; BLIP: OUT/model/ (transformers' format)
        dataclasses.replace(bundle, model=model).save_run_model(out)
    run.write_metrics(metrics)
    if run.writes:
        if relearn is not None:
            plot_relearn({cfg.method: relearn["curve"]}, relearn["target_score"], out / "relearn.png",
                         title=f"relearn after {cfg.method} — forget {split.description}")
        atomic_write_text(out / "report.md", run_report(metrics))
    run.finish()
    return metrics


def evaluate_model(cfg: UnlearnConfig, out_dir: str | Path | None = None, overwrite: bool = False) -> dict[str, Any]:
    """The same metrics as a run's ``after`` for any model (``cfg.model`` / ``cfg.pretrained``) on the
    split ``cfg.forget`` of ``cfg.dataset``; writes ``metrics.json`` + ``config.json`` to ``out_dir``."""
    from mmcore.distributed import seed_everything

    from cliperase.metrics import evaluate_split

    given = [bool(cfg.forget.classes), cfg.forget.keyword is not None, cfg.forget.ratio is not None,
             cfg.forget.ids_file is not None]
    if sum(given) != 1:
        raise ConfigError("give exactly one forget set: --forget-classes, --forget-keyword, --forget-ratio or --forget-ids")
    run = TrainingRun.create(out_dir, overwrite=overwrite)
    seed_everything(cfg.seed)
    bundle = _load_model(cfg, "cpu" if cfg.accelerator.cpu else _default_device())
    split, skipped = load_split(cfg, bundle.image_size, out_dir)
    metrics = {
        "model": cfg.model,
        **random_init_marks(cfg.model, cfg.pretrained),
        "dataset": cfg.dataset,
        "forget": split.description,
        "forget_classes": split.forget_classes,
        "sizes": split.sizes(),
        "skipped_bad": skipped,
        "metrics": evaluate_split(bundle.model, bundle, split, cfg, label="eval"),
    }
    run.save_config(cfg)
    run.write_metrics(metrics)
    return metrics


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compare_methods(
    methods: list[str],
    cfg: UnlearnConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    include_retrain: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run each method on identical data and seeds (``out_dir/<method>/``), Retrain included so every
    wall time gets its ratio to Retrain's; write comparison.json, comparison.md and comparison.png. The
    original model's metrics are computed once (or reused from ``cache_dir``) and shared by every method."""
    names = list(dict.fromkeys(methods))
    if not names:
        raise ConfigError("compare: give at least one method")
    updates = {n: parse_method(n) for n in names}
    ref = reference_method()  # Retrain: every wall time gets its ratio to the reference's
    ref_missing = retrain_unavailable(cfg) if ref is not None else "no reference method is registered"
    if ref_missing and any(u["method"] == ref for u in updates.values()):
        raise retrain_error(ref_missing)
    if include_retrain and ref is not None and ref not in names and not ref_missing:
        names.append(ref)  # added for the time ratios; left out (and said so) where it cannot run
        updates[ref] = {"method": ref}
    out = Path(out_dir)
    acc = _accelerator(cfg)
    TrainingRun.create(out, acc, overwrite=overwrite, resume=resume)  # each method's run goes in out/<method>/
    for n in names:
        mcfg = dataclasses.replace(cfg, **updates[n])
        mcfg.validate()
        get_method(mcfg.method).check(mcfg)
    bundle = _load_model(cfg, acc.device)
    prep = _prepare(cfg, bundle, out, resume, acc, cache_dir)
    del bundle
    results: dict[str, dict[str, Any]] = {}
    for n in names:
        mcfg = dataclasses.replace(cfg, **updates[n])
        done = out / n / "metrics.json"
        if resume and done.is_file():
            results[n] = read_json(done)
            continue
        results[n] = run_unlearning(mcfg, out / n, resume=resume, overwrite=True, accelerator=acc, prepared=prep)
    retrain_s = results.get(ref, {}).get("wall_seconds") if ref is not None else None
    rows = []
    for n, m in results.items():
        row: dict[str, Any] = {"method": n}
        row.update({k: m["after"].get(k) for k in SUMMARY_KEYS})
        row["mia_informative"] = m["after"].get("mia_informative")
        row["wall_seconds"] = m["wall_seconds"]
        row["time_ratio_to_retrain"] = m["wall_seconds"] / retrain_s if retrain_s else None
        rl = m.get("relearn")
        row["relearn_steps"] = None if not rl else rl["steps"]
        row["relearn_cap_hit"] = None if not rl else rl["cap_hit"]
        rows.append(row)
    original = {"method": "original", **{k: prep.before.get(k) for k in SUMMARY_KEYS}}
    curves = {n: m["relearn"]["curve"] for n, m in results.items() if m.get("relearn")}
    if curves:
        original["relearn_steps"] = 0  # its score is the original score: at or above half of it at step 0
    rl_retrain = results.get(ref, {}).get("relearn") if ref is not None else None
    comparison = {
        "methods": names,
        "original": original,
        "rows": rows,
        "sizes": prep.split.sizes(),
        "forget": prep.split.description,
        "retrain_seconds": retrain_s,
        "retrain_unavailable": retrain_error(ref_missing).args[0] if ref_missing else None,
        # Retrain never saw D_f: its relearn steps are the reference for "never learned" (cap hit: None steps).
        "relearn_reference": None if not rl_retrain else {
            "method": ref, "steps": rl_retrain["steps"], "cap_hit": rl_retrain["cap_hit"],
            "max_steps": rl_retrain["max_steps"], "target_score": rl_retrain["target_score"]},
        "relearn_plot": "relearn.png" if curves else None,  # every method's relearn curve
        "config": config_to_dict(cfg),
        "before_cached": prep.before_cached,
        **random_init_marks(cfg.model, cfg.pretrained),
    }
    if _is_main(acc):
        write_json(out / "comparison.json", comparison)
        atomic_write_text(out / "comparison.md", comparison_markdown(comparison))
        plot_comparison(comparison, out / "comparison.png")
        if curves:
            from cliperase.relearn import plot_relearn

            target = results[next(iter(curves))]["relearn"]["target_score"]  # the same original score for all
            plot_relearn(curves, target, out / "relearn.png", title=f"relearn — forget {prep.split.description}")
    return comparison


def run_demo_unlearning(clip_dir: str | Path, out_dir: str | Path, forget: str = "circle", *,
                        overwrite: bool = True, **overrides: Any) -> dict[str, Any]:
    """`mm demo`: forget one shape from a tiny CLIP with CLIPErase; returns before/after accuracies."""
    from cliperase.config import ForgetSpec, RelearnConfig

    cfg = UnlearnConfig(model=str(clip_dir), dataset="shapes", forget=ForgetSpec(classes=[forget]),
                        relearn=RelearnConfig(enabled=False), n_train=2000, n_test=1000, retrieval_max_pairs=200)
    cfg = dataclasses.replace(cfg, **overrides)
    m = run_unlearning(cfg, out_dir, overwrite=overwrite)
    keys = ("forget_accuracy", "retain_accuracy", "test_accuracy")
    return {
        "forget": forget,
        "before": {k: m["before"][k] for k in keys},
        "after": {k: m["after"][k] for k in keys},
        "wall_seconds": m["wall_seconds"],
        "out_dir": str(out_dir),
    }
