"""The real data path at growing sizes: webdataset shards of real JPEG files, evaluated and unlearned as
streams, with peak memory and throughput per size, and clip_benchmark's own evaluation on the same shards.

For each size the benchmark writes ``N`` shapes-world samples (256x256 JPEG, quality 90, caption, class)
as img2dataset-style shards of 500 under ``WORK/N/test/{0..k}.tar`` (clip_benchmark's layout, with
``nshards.txt``, ``classnames.txt`` and the templates), then runs, each in a subprocess under
``/usr/bin/time -v`` (peak RSS = the largest resident set of the command's process tree members; DataLoader
workers are separate processes and counted apart, not summed):

- ``mm clip eval --dataset wds`` (zero-shot + retrieval, one pass over the shards);
- clip_benchmark's zero-shot classification and retrieval evaluation (its ``build_wds_dataset`` and
  ``DataLoader`` with the same number of workers, the same transform, the same batch size; two passes, as
  its CLI runs the two tasks; where its dense [n x n] retrieval matrices would take more than half the
  RAM, its classification task alone);
- ``mm unlearn run --dataset wds --forget-keyword circle`` (shard hold-out, caption pass, evaluation
  samples, D_f and D_r streamed from the shards for the unlearning steps, the before / after evaluation).

Throughput is each command's own timing of its data pass (start-up and model loading excluded: they do
not grow with the data); wall-time rates are recorded as well.

Model: the tiny CLIP cached at ~/.cache/mm/tiny-clip-seed0 (``mm demo``). Workers: ``--workers`` for both
(``MM_NUM_WORKERS`` for ours).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, parse_args, png_path, write_result

MODEL = Path.home() / ".cache" / "mm" / "tiny-clip-seed0"
PER_SHARD = 500
# unlearning as measured here: default CLIPErase settings but 20 steps and no relearn protocol (time budget)
UNLEARN_SET = ["--set", "steps=20", "--set", "relearn.enabled=false"]


def _records(n: int, seed: int):
    """Shapes samples drawn 500 at a time (a generator: at 256 px the whole set would not fit in memory)."""
    from mmcore.data.shapes import make_shapes

    made = 0
    chunk = 0
    while made < n:
        k = min(500, n - made)
        data = make_shapes(k, seed * 100_003 + chunk, image_size=256)
        yield from data.records
        made += k
        chunk += 1


def write_dataset(root: Path, n: int, seed: int = 0) -> dict[str, Any]:
    from mmcore.data.shapes import make_shapes
    from mmcore.data.wds.records import write_shards

    test = root / "test"
    if (test / "nshards.txt").is_file():
        return {"reused": True}
    t0 = time.perf_counter()
    proto = make_shapes(1, 0, image_size=32)
    shards = write_shards(_records(n, seed), test, per_shard=PER_SHARD, image_format="jpg", quality=90,
                          classnames=proto.classnames, templates=proto.templates)
    for i, s in enumerate(shards):  # clip_benchmark reads {0..k}.tar
        s.rename(test / f"{i}.tar")
    for f in ("classnames.txt", "zeroshot_classification_templates.txt"):
        (root / f).write_text((test / f).read_text())
    (test / "nshards.txt").write_text(str(len(shards)))
    return {"reused": False, "write_seconds": round(time.perf_counter() - t0, 1), "shards": len(shards),
            "bytes": sum((test / f"{i}.tar").stat().st_size for i in range(len(shards)))}


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall seconds and peak RSS (MB, /usr/bin/time -v) of a command; its stdout's last JSON line if any."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    out: dict[str, Any] = {"wall_s": round(wall, 2), "peak_rss_mb": round(int(m.group(1)) / 1024, 1) if m else None,
                           "rc": p.returncode}
    if p.returncode != 0:
        out["stderr_tail"] = p.stderr[-1500:]
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                out["result"] = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    return out


CB_SCRIPT = r"""
import json, sys, time
import torch
from clip_benchmark.datasets.builder import build_wds_dataset, image_captions_collate_fn
from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval
sys.path.insert(0, sys.argv[4])
from benchmarks.clip_eval_peers import _patch_clip_benchmark
from mmcore.encoders.clip import load_clip
_patch_clip_benchmark()
root, workers, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = load_clip(sys.argv[5]); b.model.eval()
t0 = time.perf_counter()
ds = build_wds_dataset("wds/shapes", b.preprocess_eval, split="test", data_dir=root)
dl = torch.utils.data.DataLoader(ds.batched(bs), batch_size=None, shuffle=False, num_workers=workers)
templates = [t.replace("{}", "{c}") for t in ds.templates]
cls = zeroshot_classification.evaluate(b.model, dl, b.tokenizer, ds.classes, templates, "cpu", amp=False)
t1 = time.perf_counter()
if sys.argv[6] == "cls_only":
    print(json.dumps({"acc1": float(cls["acc1"]), "retrieval": None, "cls_seconds": t1 - t0, "retrieval_seconds": None}))
    sys.exit(0)
open(root + "/dataset_type.txt", "w").write("retrieval")
try:
    rds = build_wds_dataset("wds/shapes", b.preprocess_eval, split="test", data_dir=root)
finally:
    import os; os.remove(root + "/dataset_type.txt")
rdl = torch.utils.data.DataLoader(rds.batched(bs, collation_fn=image_captions_collate_fn), batch_size=None,
                                  shuffle=False, num_workers=workers)
ret = zeroshot_retrieval.evaluate(b.model, rdl, b.tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
t2 = time.perf_counter()
print(json.dumps({"acc1": float(cls["acc1"]), "retrieval": {k: float(v) for k, v in ret.items()},
                  "cls_seconds": t1 - t0, "retrieval_seconds": t2 - t1}))
"""


def clip_benchmark_retrieval_bytes(n: int) -> int:
    """What clip_benchmark's retrieval holds at once for n images with one caption each: the dense float32
    [n_texts x n_images] score matrix and the bool positive-pair matrix of the same shape."""
    return n * n * (4 + 1)


def _ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_size(work: Path, n: int, workers: int, bs: int) -> dict[str, Any]:
    """One size: our eval, clip_benchmark's, our unlearning run; images/s from each command's own timing of
    its data pass (start-up, imports and model loading excluded: they do not grow with the data), and from
    wall time too."""
    root = work / str(n)
    data = write_dataset(root, n)
    env = {**os.environ, "MM_NUM_WORKERS": str(workers), "MM_NO_PROGRESS": "1"}
    mm = [sys.executable, "-m", "mm_cli.main"]
    ev_out = root / "eval"
    ours = timed([*mm, "clip", "eval", "--model", str(MODEL), "--dataset", "wds", "--data-root", str(root),
                  "--split", "test", "--batch-size", str(bs), "--out", str(ev_out), "--overwrite"], env)
    if ours["rc"] == 0:
        ours["metrics"] = {k: v for k, v in json.loads((ev_out / "metrics.json").read_text()).items()
                           if k != "per_class"}
        ours["images_per_s"] = round(n / ours["metrics"]["eval_seconds"], 1)
        ours["images_per_s_wall"] = round(n / ours["wall_s"], 1)
    # clip_benchmark's retrieval needs dense n x n matrices; where they would take more than half the RAM
    # only its classification task runs (and the comparison uses that pass alone)
    cb_retrieval = clip_benchmark_retrieval_bytes(n) <= _ram_bytes() // 2
    cb = timed([sys.executable, "-c", CB_SCRIPT, str(root / ""), str(workers), str(bs),
                str(Path(__file__).resolve().parents[1]), str(MODEL), "both" if cb_retrieval else "cls_only"], env)
    cb["retrieval_run"] = cb_retrieval
    if not cb_retrieval:
        cb["retrieval_skipped_because"] = (f"its dense score + positive-pair matrices would take "
                                           f"{clip_benchmark_retrieval_bytes(n) / 2**30:.1f} GiB of "
                                           f"{_ram_bytes() / 2**30:.0f} GiB RAM")
    un_out = root / "unlearn"
    unl = timed([*mm, "unlearn", "run", "--model", str(MODEL), "--dataset", "wds", "--data-root", str(root / "test"),
                 "--forget-keyword", "circle", "--out", str(un_out), "--overwrite", *UNLEARN_SET], env)
    if unl["rc"] == 0:
        met = json.loads((un_out / "metrics.json").read_text())
        unl["sizes"] = met.get("sizes")
        unl["timing"] = met.get("timing")
        st = met["settings"]
        passes = [json.loads(ln) for ln in (un_out / "forget_pass" / "shards.jsonl").read_text().splitlines()]
        unl["forget_pass"] = {"shards": len(passes), "n": sum(p["n"] for p in passes),
                              "n_match": sum(p["n_match"] for p in passes)}
        t = unl["timing"]
        # training images per second of the unlearning loop (both streams), and training samples per second
        # of the split (the caption pass plus the evaluation samples' header pass)
        unl["images_per_s"] = round(st["steps"] * (st["batch_size"] + st["forget_batch_size"]) / t["unlearn_s"], 1)
        unl["split_samples_per_s"] = round(unl["forget_pass"]["n"] / t["split_s"], 1)
        unl["images_per_s_wall"] = round(n / unl["wall_s"], 1)
        unl["eval_after"] = {k: met["after"].get(k) for k in ("forget_accuracy", "forget_train_accuracy",
                                                              "retain_accuracy", "test_accuracy")}
    row: dict[str, Any] = {"n": n, "data": data, "mm_clip_eval": ours, "clip_benchmark": cb, "mm_unlearn_run": unl}
    if cb["rc"] == 0:
        r = cb.get("result", {})
        cb["images_per_s"] = round(n / (r["cls_seconds"] + (r["retrieval_seconds"] or 0.0)), 1)
        cb["images_per_s_wall"] = round(n / cb["wall_s"], 1)
        if ours["rc"] == 0 and "acc1" in r:
            row["zero_shot_accuracy"] = {"ours": ours["metrics"].get("zero_shot_accuracy"), "clip_benchmark": r["acc1"],
                                         "equal": abs(ours["metrics"].get("zero_shot_accuracy", -1) - r["acc1"]) < 1e-9}
    return row


def _spread(values: list[float]) -> float:
    return round(max(abs(x / values[0] - 1) for x in values), 3)


def _bars(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["mm_clip_eval"]["rc"] == 0 and r["mm_unlearn_run"]["rc"] == 0]
    if len(ok) < 2:
        return {"complete": False}
    lo, hi = ok[0], ok[-1]
    out: dict[str, Any] = {"complete": len(ok) == len(rows)}
    for cmd in ("mm_clip_eval", "mm_unlearn_run"):
        ratio = hi[cmd]["peak_rss_mb"] / lo[cmd]["peak_rss_mb"]
        ips = [r[cmd]["images_per_s"] for r in ok]
        out[cmd] = {"peak_rss_ratio_largest_smallest": round(ratio, 3), "rss_bar_1.25": ratio <= 1.25,
                    "images_per_s": ips, "max_rel_dev_from_smallest": _spread(ips),
                    "throughput_bar_20pct": _spread(ips) <= 0.2}
    sps = [r["mm_unlearn_run"]["split_samples_per_s"] for r in ok]
    out["mm_unlearn_run"].update(split_samples_per_s=sps, split_max_rel_dev_from_smallest=_spread(sps))
    pairs = [(r["n"], r["mm_clip_eval"]["images_per_s"] / r["clip_benchmark"]["images_per_s"],
              r["clip_benchmark"]["retrieval_run"]) for r in ok if r["clip_benchmark"]["rc"] == 0]
    out["eval_vs_clip_benchmark"] = {"images_per_s_ratio": [round(x, 3) for _, x, _ in pairs],
                                     "clip_benchmark_retrieval_run": [rr for *_, rr in pairs],
                                     "bar_1.2x": bool(pairs) and min(x for _, x, _ in pairs) >= 1.2}
    out["zero_shot_equal"] = [r.get("zero_shot_accuracy", {}).get("equal") for r in ok]
    return out


def _cc12m(rows: list[dict[str, Any]], gpus: int = 8) -> dict[str, Any]:
    """A full CC12M pass from the largest size's measured per-sample costs on this machine's CPU."""
    big = rows[-1]
    n_cc = 12_000_000
    out: dict[str, Any] = {"from_size": big["n"], "samples": n_cc}
    unl, ev = big["mm_unlearn_run"], big["mm_clip_eval"]
    if unl["rc"] == 0:
        out["forget_set_selection"] = {
            "hours_one_process": round(n_cc / unl["split_samples_per_s"] / 3600, 1),
            "from": "mm unlearn run's split time (caption pass + evaluation-sample header pass) per training sample"}
    if ev["rc"] == 0:
        # one decoding worker's rate bounds an epoch from below when the GPUs are faster than the decoding:
        # each GPU process has its workers; model compute is not measured here (no GPU)
        per_worker = ev["images_per_s"]
        out["decode_bound_unlearning_epoch_8_gpus"] = {
            "hours": round(n_cc / (per_worker * gpus * 8) / 3600, 2), "workers_per_gpu": 8,
            "from": f"mm clip eval's {per_worker} images/s with 1 decoding worker (decode + tiny-CLIP forward on 1 CPU "
                    "core), times 8 workers per GPU"}
    return out


def caption_pass_cost(work: Path, n: int) -> dict[str, Any]:
    from cliperase.forget_sets import keyword_pattern
    from mmcore.data.wds.caption_pass import caption_pass
    from mmcore.data.wds.layout import shard_paths

    shards = shard_paths(work / str(n) / "test")
    pat = keyword_pattern("circle")
    out = work / f"pass-{n}-{time.time_ns()}"
    t0 = time.perf_counter()
    res = caption_pass(shards, lambda c: pat.search(c) is not None, out, rule={"keyword": "circle"})
    sec = time.perf_counter() - t0
    return {"n": res.n, "seconds": round(sec, 3), "samples_per_s": round(res.n / sec, 1), "from": sorted(set(res.sources.values()))}


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ns = [r["n"] for r in rows]
    for cmd, label in (("mm_clip_eval", "mm clip eval"), ("clip_benchmark", "clip_benchmark"),
                       ("mm_unlearn_run", "mm unlearn run (unlearning loop)")):
        for ax, key in ((a, "peak_rss_mb"), (b, "images_per_s")):
            line, = ax.plot(ns, [r[cmd].get(key) for r in rows], "o-", label=label)
            # clip_benchmark without its retrieval task (dense matrices over half the RAM): a hollow marker
            cls_only = [r for r in rows if r[cmd].get("retrieval_run") is False]
            if cls_only:
                ax.plot([r["n"] for r in cls_only], [r[cmd].get(key) for r in cls_only], "o", ms=11, mfc="white",
                        color=line.get_color(), label=f"{label}: classification only" if ax is a else None)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xticks(ns, [f"{n // 1000}k" if n >= 1000 else str(n) for n in ns])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
    a.set(xlabel="samples", ylabel="peak RSS (MB)", title="memory (largest process of each command)")
    b.set(xlabel="samples", ylabel="images / s", title="throughput of each data pass")
    a.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m benchmarks data_scale`: the keys of its --config YAML."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks data_scale")
    ap.add_argument("--sizes", default="5000,20000,80000")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--work", default="/tmp/mm_data_scale")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--remeasure", default="",
                    help="sizes to measure again in the finished result under --out (other rows kept; the "
                         "replaced rows stay in the JSON under superseded_rows)")
    ap.add_argument("--why", default="", help="with --remeasure: the reason, recorded in the JSON")
    return ap


def _measured_row(work: Path, n: int, workers: int, batch_size: int) -> dict[str, Any]:
    before = [round(x, 2) for x in os.getloadavg()]
    row = run_size(work, n, workers, batch_size)
    row["load_average_before"] = before
    row["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return row


def remeasure(args: argparse.Namespace, work: Path, sizes: list[int]) -> dict[str, Any]:
    """Measure ``sizes`` again with the settings of the finished result under ``--out`` and replace their rows
    (e.g. a row taken while the machine was busy); the replaced rows are kept, with the reason."""
    path = Path(args.out) / "data_scale.json"
    old = json.loads(path.read_text())
    if old.get("partial"):
        raise SystemExit(f"{path}: a partial result; run the whole benchmark instead")
    if (old["workers"], old["batch_size"]) != (args.workers, args.batch_size):
        raise SystemExit(f"{path}: measured with workers={old['workers']} batch_size={old['batch_size']}; "
                         f"--remeasure must use the same")
    rows = list(old["rows"])
    index = {r["n"]: i for i, r in enumerate(rows)}
    if missing := [n for n in sizes if n not in index]:
        raise SystemExit(f"{path}: no row for sizes {missing}")
    superseded = list(old.get("superseded_rows", []))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for n in sizes:
        superseded.append({**rows[index[n]], "superseded_because": args.why or "not given",
                           "superseded_on": stamp})
        rows[index[n]] = _measured_row(work, n, args.workers, args.batch_size)
        rows[index[n]]["remeasured_on"] = stamp
    result = {k: v for k, v in old.items() if k not in ("benchmark", "machine")}
    result.update(rows=rows, bars=_bars(rows), cc12m_estimate=_cc12m(rows), superseded_rows=superseded)
    _plot(rows, png_path("data_scale", args.out))
    write_result("data_scale", result, args.out)
    return result


def main(argv: list[str]) -> dict[str, Any]:
    args = parse_args(build_parser(), argv)
    if not (MODEL / "model.safetensors").is_file():
        raise SystemExit(f"{MODEL}/model.safetensors not found: run `mm demo` first")
    work = Path(args.work)
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    if args.remeasure:
        return remeasure(args, work, [int(s) for s in args.remeasure.split(",")])
    rows = []
    for n in sizes:
        rows.append(_measured_row(work, n, args.workers, args.batch_size))
        print(json.dumps({k: rows[-1][k] for k in ("n", "mm_clip_eval", "clip_benchmark")}, default=str)[:600])
        # written after every size, so an interrupted run keeps what it measured
        write_result("data_scale", {"sizes": sizes, "sizes_measured": [r["n"] for r in rows], "partial": True,
                                    "workers": args.workers, "rows": rows, "bars": _bars(rows),
                                    "unlearn_settings": " ".join(UNLEARN_SET)}, args.out)
    cost = caption_pass_cost(work, sizes[-1])
    result = {
        "sizes": sizes, "sizes_measured": [r["n"] for r in rows],
        "throughput_note": ("images/s of each command's own data pass: mm clip eval's eval_seconds (one pass for "
                            "zero-shot and retrieval), clip_benchmark's classification + retrieval seconds (two "
                            "passes, as its CLI runs the two tasks), mm unlearn run's training images of the "
                            "unlearning loop over unlearn_s; the *_wall figures divide by the whole command"),
        "unlearn_settings": " ".join(UNLEARN_SET),
        "workers": args.workers, "batch_size": args.batch_size, "model": str(MODEL), "image": "256x256 JPEG q90",
        "rss_note": "peak RSS from /usr/bin/time -v: the largest process of the command's tree (workers counted apart)",
        "rows": rows, "bars": _bars(rows), "caption_pass": cost, "cc12m_estimate": _cc12m(rows),
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    _plot(rows, png_path("data_scale", args.out))
    write_result("data_scale", result, args.out)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
