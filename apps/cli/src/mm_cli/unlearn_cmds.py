"""`mm unlearn ...`: CLIPErase and baseline unlearning runs, evaluation and comparisons.

Nothing heavy is imported at module level (`mm --help` stays fast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from cliperase.methods import get_method, method_names, method_variants

from mm_cli.common import (
    check_image_text_dataset,
    choose_clip_model,
    config_option,
    dataset_help,
    preset_file,
    preset_option,
    print_config_option,
    print_table,
    run_config,
    set_option,
    user_errors,
)

app = typer.Typer(help="CLIP unlearning (CLIPErase and the baselines of `mm unlearn methods`): run, evaluate, compare.",
                  no_args_is_help=True)
# The method registry (cliperase.methods, torch-free): the choices and help texts below come from it.
_COMPARE_DEFAULT = [n for n in method_names() if get_method(n).in_compare_default]

# forget_accuracy: held-out forget images (zero-shot templates unlearning never used); forget_train_accuracy: D_f.
# Recalls: forget / retain queries against the whole held-out gallery.
# mia_efficacy is None (printed "–") where the attack is uninformative: held-out accuracy mia_attack_accuracy < 55 %
SUMMARY = ("forget_accuracy", "forget_train_accuracy", "retain_accuracy", "test_accuracy", "forget_i2t_R@1",
           "forget_t2i_R@1", "retain_i2t_R@1", "retain_t2i_R@1", "mia_efficacy", "mia_attack_accuracy")

# Shared options (typer reads the defaults as option declarations).
_MODEL = typer.Option(None, "--model", help="Saved model dir (mm clip pretrain), or an open_clip name with --pretrained "
                      "(or --random-init).", show_default="the tiny CLIP cached by `mm demo`")
_PRETRAINED = typer.Option(None, "--pretrained", help="open_clip pretrained tag or local checkpoint file.")
_DATASET = typer.Option(None, "--dataset", help=dataset_help(), show_default="shapes")
_DATA_ROOT = typer.Option(None, "--data-root", help="Dataset root folder (real datasets).")
_CLASSES = typer.Option(None, "--forget-classes", help="Comma-separated class names to forget.")
_KEYWORD = typer.Option(None, "--forget-keyword", help="Forget images with a caption containing this word (commas: alternatives).")
_RATIO = typer.Option(None, "--forget-ratio", help="Forget a seeded random fraction of the classes.")
_IDS = typer.Option(None, "--forget-ids", help="File of record ids to forget, one per line.")
_CONFIG = config_option("cliperase.config.UnlearnConfig")
# committed recipes, cliperase/configs/unlearn/<preset>.yaml (tests/cli/test_presets.py checks names and files agree)
PRESETS = {"default": "the UnlearnConfig defaults written out",
           "paper": "the paper's setting (both encoders, forget captions; cliperase.config.PAPER_SETTING)",
           "cpu-benchmark": "the CLIPErase row of benchmarks/unlearn_shapes (forget circle, lr 1e-4, 60 steps)"}
_PRESET = preset_option("unlearn", PRESETS)
_SET = set_option()
_PRINT = print_config_option()
_SEED = typer.Option(None, "--seed", help="Random seed (also the forget ratio's class draw).", show_default="0")
_SKIP_BAD = typer.Option(False, "--skip-bad", help="Skip (and count) unreadable data items instead of failing.")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace a non-empty output directory.")
_RESUME = typer.Option(False, "--resume", help="Continue from the checkpoint in the output directory.")
# Evaluation knobs: their defaults are UnlearnConfig's (spelt out here: importing cliperase.config at module
# level would be fine, but `mm --help` must not pay for more than typer; tests/cli/test_first_hour.py checks they agree).
_EVAL_MAX = typer.Option(None, "--eval-max-samples", help="Zero-shot accuracy on a seeded subsample of at most N images "
                         "per split (0 = all; 2000 gives a standard error <= 1.1 points; n and SE are recorded).", show_default="2000")
_RETRIEVAL_MAX = typer.Option(None, "--retrieval-max-pairs", help="Recall@K gallery: at most N held-out forget and N "
                              "held-out retain images (it sets the gallery, so the recalls' scale).", show_default="500")
_MIA_MAX = typer.Option(None, "--mia-max-samples", help="Membership-inference attack: at most N samples per split.",
                        show_default="1000")
_RELEARN = typer.Option(None, "--relearn/--no-relearn", help="Measure relearn time (fine-tuning steps until half "
                        "the original forget accuracy is back).", show_default="--relearn")
_RELEARN_STEPS = typer.Option(None, "--relearn-steps", help="Relearn cap in steps (cap_hit reported).", show_default="200")
_NO_CACHE = typer.Option(False, "--no-cache", help="Compute the original model's metrics again instead of reusing "
                         "them from the cache ($MM_CACHE or ~/.cache/mm/unlearn-before; keyed by weights, data, "
                         "forget set, evaluation settings and seed).")
_RANDOM_INIT = typer.Option(False, "--random-init",
                            help="Run on an architecture name's untrained weights on purpose (marked in metrics.json).")


def _overrides(
    *,
    model: str | None,
    pretrained: str | None,
    dataset: str | None,
    data_root: Path | None,
    forget_classes: str | None,
    forget_keyword: str | None,
    forget_ratio: float | None,
    forget_ids: Path | None,
    seed: int | None,
    skip_bad: bool,
    **extra: Any,
) -> dict[str, Any]:
    """Command-line options as dotted config keys (None = not given)."""
    ov: dict[str, Any] = {
        "model": model,
        "pretrained": pretrained,
        "dataset": dataset,
        "data_root": None if data_root is None else str(data_root),
        "seed": seed,
        **extra,
    }
    if skip_bad:
        ov["skip_bad"] = True
    forget = {
        "forget.classes": forget_classes,
        "forget.keyword": forget_keyword,
        "forget.ratio": forget_ratio,
        "forget.ids_file": None if forget_ids is None else str(forget_ids),
    }
    if any(v is not None for v in forget.values()):
        # A forget set on the command line replaces any forget set from the config file.
        ov.update({"forget.classes": [], "forget.keyword": "none", "forget.ratio": "none", "forget.ids_file": "none"})
        ov.update({k: v for k, v in forget.items() if v is not None})
    if seed is not None:
        ov["forget.seed"] = seed
    return ov


def _config(config: Path | None, options: dict[str, Any], set_: list[str] | None, random_init: bool,
            print_config: bool, preset: str | None = None):
    """The resolved UnlearnConfig; a misspelt dataset, a wrong model path or untrained weights without
    --random-init are errors here, before torch is imported. A model named nowhere (option, file, --set) is
    the tiny CLIP cached by `mm demo`."""
    import dataclasses

    from cliperase.config import UnlearnConfig

    presets = [preset_file("unlearn", preset, PRESETS)] if preset is not None else []
    cfg, sources = run_config(UnlearnConfig, config=config, set_=set_, options=options, print_config=print_config,
                              preset_files=presets,
                              option_names={"data_root": "data-root", "forget.classes": "forget-classes",
                                            "forget.keyword": "forget-keyword", "forget.ratio": "forget-ratio",
                                            "forget.ids_file": "forget-ids", "forget.seed": "seed"})
    check_image_text_dataset(cfg.dataset)
    named = cfg.model if "model" in sources else None
    return dataclasses.replace(cfg, model=choose_clip_model(named, cfg.pretrained, random_init, default_arch=cfg.model))


def _eval_overrides(eval_max_samples: int | None, retrieval_max_pairs: int | None, mia_max_samples: int | None,
                    relearn: bool | None = None, relearn_steps: int | None = None) -> dict[str, Any]:
    return {"eval_max_samples": eval_max_samples, "retrieval_max_pairs": retrieval_max_pairs,
            "mia_max_samples": mia_max_samples, "relearn.enabled": relearn, "relearn.max_steps": relearn_steps}


def _pm(m: dict[str, Any], k: str) -> str:
    """A percentage and its standard error ("93.10 ± 0.57"); "–" when missing."""
    v, se = m.get(k), (m.get("se") or {}).get(k)
    if v is None:
        return "–"
    return f"{v:.2f}" + ("" if se is None else f" ± {se:.2f}")


def _summary_rows(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k in SUMMARY:
        row: dict[str, Any] = {"metric (%, ± SE)": k}
        if before is not None:
            row["before"] = _pm(before, k)
        row["after" if before is not None else "value"] = _pm(after, k)
        row["n"] = str((after.get("n") or {}).get(k, "–"))
        rows.append(row)
    return rows


def _cache(no_cache: bool) -> Path | None:
    from mmcore.io import default_cache_dir

    return None if no_cache else default_cache_dir().expanduser()


@app.command("methods")
@user_errors
def methods_cmd() -> None:
    """List the registered unlearning methods and `compare` variants (cliperase.methods)."""
    rows = []
    for name in method_names():
        m = get_method(name)
        rows.append({"method": name, "towers (auto)": m.towers, "steps": "yes" if m.uses_steps else "no",
                     "variants": ", ".join(m.variants) or "-", "what": m.help})
    print_table("unlearning methods (`--method`, `compare --methods`)", rows)


@app.command("run")
@user_errors
def run(
    out: Path = typer.Option(..., "--out", help="Output directory."),
    method: str = typer.Option(None, "--method", help=f"{' | '.join(method_names())} (`mm unlearn methods`).",
                               show_default="cliperase"),
    model: str = _MODEL,
    pretrained: str = _PRETRAINED,
    dataset: str = _DATASET,
    data_root: Path = _DATA_ROOT,
    forget_classes: str = _CLASSES,
    forget_keyword: str = _KEYWORD,
    forget_ratio: float = _RATIO,
    forget_ids: Path = _IDS,
    steps: int = typer.Option(None, "--steps", help="Unlearning steps.", show_default="50"),
    eval_max_samples: int = _EVAL_MAX,
    retrieval_max_pairs: int = _RETRIEVAL_MAX,
    mia_max_samples: int = _MIA_MAX,
    relearn: bool = _RELEARN,
    relearn_steps: int = _RELEARN_STEPS,
    no_cache: bool = _NO_CACHE,
    preset: str = _PRESET,
    config: Path = _CONFIG,
    set_: list[str] = _SET,
    seed: int = _SEED,
    skip_bad: bool = _SKIP_BAD,
    overwrite: bool = _OVERWRITE,
    resume: bool = _RESUME,
    random_init: bool = _RANDOM_INIT,
    print_config: bool = _PRINT,
) -> None:
    """Unlearn a forget set from a CLIP model; writes metrics.json, model.safetensors, config.json, report.md."""
    cfg = _config(config, _overrides(model=model, pretrained=pretrained, dataset=dataset, data_root=data_root,
                                     forget_classes=forget_classes, forget_keyword=forget_keyword,
                                     forget_ratio=forget_ratio, forget_ids=forget_ids, seed=seed, skip_bad=skip_bad,
                                     method=method, steps=steps,
                                     **_eval_overrides(eval_max_samples, retrieval_max_pairs, mia_max_samples,
                                                       relearn, relearn_steps)), set_, random_init, print_config,
                   preset)
    from cliperase.recipes.runner import run_unlearning
    m = run_unlearning(cfg, out, resume=resume, overwrite=overwrite, cache_dir=_cache(no_cache))
    from mmcore.distributed import is_main_process

    if is_main_process():
        t = m["timing"]
        print_table(f"{cfg.method}: forget {m['forget']} (D_f {m['sizes']['forget']}, D_r {m['sizes']['retain']}, "
                    f"test {m['sizes']['test']})", _summary_rows(m["before"], m["after"]))
        typer.echo(f"time: unlearning {t['unlearn_s']:.1f} s, evaluation {t['eval_before_s'] + t['eval_after_s']:.1f} s"
                   + (" (original model's metrics reused from the cache)" if t["before_cached"] else "")
                   + (f", relearn {t['relearn_s']:.1f} s" if m.get("relearn") else "") + f", total {t['total_s']:.1f} s")
        typer.echo(f"wrote {out}/metrics.json, the unlearned model, report.md")


@app.command("eval")
@user_errors
def evaluate(
    model: str = typer.Option(..., "--model", help="Saved model dir or open_clip name."),
    pretrained: str = _PRETRAINED,
    dataset: str = _DATASET,
    data_root: Path = _DATA_ROOT,
    forget_classes: str = _CLASSES,
    forget_keyword: str = _KEYWORD,
    forget_ratio: float = _RATIO,
    forget_ids: Path = _IDS,
    out: Path = typer.Option(None, "--out", help="Write metrics.json and config.json here."),
    preset: str = _PRESET,
    config: Path = _CONFIG,
    set_: list[str] = _SET,
    seed: int = _SEED,
    skip_bad: bool = _SKIP_BAD,
    overwrite: bool = _OVERWRITE,
    random_init: bool = _RANDOM_INIT,
    eval_max_samples: int = _EVAL_MAX,
    retrieval_max_pairs: int = _RETRIEVAL_MAX,
    mia_max_samples: int = _MIA_MAX,
    print_config: bool = _PRINT,
) -> None:
    """Unlearning metrics (forget/retain/test accuracy, retrieval, MIA) of any CLIP model."""
    cfg = _config(config, _overrides(model=model, pretrained=pretrained, dataset=dataset, data_root=data_root,
                                     forget_classes=forget_classes, forget_keyword=forget_keyword,
                                     forget_ratio=forget_ratio, forget_ids=forget_ids, seed=seed, skip_bad=skip_bad,
                                     **_eval_overrides(eval_max_samples, retrieval_max_pairs, mia_max_samples)),
                   set_, random_init, print_config, preset)
    from cliperase.recipes.runner import evaluate_model
    m = evaluate_model(cfg, out, overwrite=overwrite)
    print_table(f"{model}: forget {m['forget']} (D_f {m['sizes']['forget']}, D_r {m['sizes']['retain']}, "
                f"test {m['sizes']['test']})", _summary_rows(None, m["metrics"]))
    if out is not None:
        typer.echo(f"wrote {out}/metrics.json")


@app.command("compare")
@user_errors
def compare(
    out: Path = typer.Option(..., "--out", help="Output directory (one sub-directory per method)."),
    methods: str = typer.Option(
        ",".join(_COMPARE_DEFAULT), "--methods",
        help=f"Comma-separated methods ({', '.join(method_names())}) and variants ({', '.join(method_variants())}; "
        "cliperase-paper: the paper's setting, both encoders trained, forget pairs with captions); "
        "`mm unlearn methods` lists them. Retrain is added (time ratios) where it can run: not for weights "
        "pretrained elsewhere (--pretrained).",
    ),
    model: str = _MODEL,
    pretrained: str = _PRETRAINED,
    dataset: str = _DATASET,
    data_root: Path = _DATA_ROOT,
    forget_classes: str = _CLASSES,
    forget_keyword: str = _KEYWORD,
    forget_ratio: float = _RATIO,
    forget_ids: Path = _IDS,
    steps: int = typer.Option(None, "--steps", help="Unlearning steps per method.", show_default="50"),
    eval_max_samples: int = _EVAL_MAX,
    retrieval_max_pairs: int = _RETRIEVAL_MAX,
    mia_max_samples: int = _MIA_MAX,
    relearn: bool = _RELEARN,
    relearn_steps: int = _RELEARN_STEPS,
    no_cache: bool = _NO_CACHE,
    preset: str = _PRESET,
    config: Path = _CONFIG,
    set_: list[str] = _SET,
    seed: int = _SEED,
    skip_bad: bool = _SKIP_BAD,
    overwrite: bool = _OVERWRITE,
    resume: bool = _RESUME,
    random_init: bool = _RANDOM_INIT,
    print_config: bool = _PRINT,
) -> None:
    """Run several methods on identical data and seeds; writes comparison.json/.md/.png."""
    cfg = _config(config, _overrides(model=model, pretrained=pretrained, dataset=dataset, data_root=data_root,
                                     forget_classes=forget_classes, forget_keyword=forget_keyword,
                                     forget_ratio=forget_ratio, forget_ids=forget_ids, seed=seed, skip_bad=skip_bad,
                                     steps=steps,
                                     **_eval_overrides(eval_max_samples, retrieval_max_pairs, mia_max_samples,
                                                       relearn, relearn_steps)), set_, random_init, print_config,
                   preset)
    from cliperase.recipes.report import comparison_rows, sizes_text
    from cliperase.recipes.runner import compare_methods
    names = [m.strip() for m in methods.split(",") if m.strip()]
    comp = compare_methods(names, cfg, out, overwrite=overwrite, resume=resume, cache_dir=_cache(no_cache))
    # the same cells as comparison.md ("–" for missing), one column per method: 14 metric columns would not
    # fit a 120-column terminal without cutting their names
    rows = comparison_rows(comp)
    table = [{"metric": h, **{r["method"]: r[h] for r in rows}} for h in list(rows[0])[1:]]
    print_table(f"forget {comp['forget']} — {sizes_text(comp['sizes'])}", table)
    ref = comp.get("relearn_reference")
    if ref:
        typer.echo("relearn reference (Retrain, never learned D_f): "
                   + (f"cap of {ref['max_steps']} steps hit" if ref["cap_hit"] else f"{ref['steps']} steps"))
    typer.echo(f"wrote {out}/comparison.json, comparison.md, comparison.png"
               + (f", {comp['relearn_plot']}" if comp.get("relearn_plot") else ""))
