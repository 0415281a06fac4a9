"""The workloads of ``benchmarks.gpu_check``: CLIPErase steps on a ViT-B/32-sized CLIP and SaSR-Net at paper
size, training and evaluation, each timed on one device at one precision (peak memory beside it)."""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import time
from typing import Any

PRECISIONS = {"fp32": "no", "bf16": "bf16"}  # our name -> accelerate's mixed_precision


# ------------------------------------------------------------------------------------------ helpers


def _fresh_accelerator(precision: str, device: str) -> Any:
    """An Accelerator of ``precision`` on ``device``: accelerate keeps one process-wide state, so each
    measurement drops it first (a bf16 Accelerator cannot follow an fp32 one otherwise)."""
    from accelerate.state import AcceleratorState
    from mmcore.distributed import AcceleratorConfig, build_accelerator

    AcceleratorState._reset_state(True)
    return build_accelerator(AcceleratorConfig(mixed_precision=PRECISIONS[precision], cpu=device == "cpu",
                                               log_with="none"))


def _reset_peak(dev: Any) -> None:
    import gc

    import torch

    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev: Any) -> dict[str, Any]:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(dev) / 2**20,
                "peak_reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20,
                "memory_measure": "torch.cuda.max_memory_allocated (reset before this measurement)"}
    return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "memory_measure": "process peak RSS (ru_maxrss): cumulative over the whole run, not this measurement"}


def _stats(t: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "repeats": len(t)}


def gpu_info(device: str) -> dict[str, Any] | None:
    import torch

    if device != "cuda":
        return None
    p = torch.cuda.get_device_properties(0)
    return {"name": p.name, "count": torch.cuda.device_count(), "capability": f"{p.major}.{p.minor}",
            "total_memory_gb": round(p.total_memory / 2**30, 2), "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "bf16_supported": torch.cuda.is_bf16_supported(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


# ------------------------------------------------------------------------------------------ CLIPErase


def clip_setup(tiny: bool, batch: int, seed: int) -> tuple[Any, Any]:
    """The CLIP (random init, on the CPU; each run takes a copy) and the shapes records at its image size."""
    import torch
    from mmcore.data.shapes import make_shapes
    from mmcore.encoders.clip import create_clip

    torch.manual_seed(seed)
    bundle = create_clip("mm-micro-clip" if tiny else "ViT-B-32", None)
    # ten classes: one is D_f, so about twice a batch per class keeps both batches drawn from distinct images
    data = make_shapes(max(100, 20 * batch), seed=seed, image_size=bundle.image_size)
    return bundle, data


def cliperase_steps(bundle: Any, data: Any, *, towers: str, precision: str, device: str, batch: int, steps: int,
                    warmup: int, seed: int, time_input: bool = False) -> dict[str, Any]:
    """Unlearning steps of ``cliperase.methods.unlearn`` timed one by one (see the module docstring)."""
    import copy

    from cliperase.config import ForgetSpec, UnlearnConfig
    from cliperase.forget_sets import split_forget_retain
    from cliperase.methods import get_method, unlearn
    from mmcore.distributed import AcceleratorConfig, StepBatches
    from mmcore.run import TrainingRun

    from benchmarks._common import timed_median

    class StepClock(TrainingRun):
        """A run without files whose log (called after every step with log_every=1) notes the time."""

        def __init__(self, accelerator: Any):
            super().__init__(None, accelerator)
            self.ends: list[float] = []

        def log(self, record: dict[str, Any], step: int | None = None) -> None:
            self.ends.append(time.perf_counter())

    acc = _fresh_accelerator(precision, device)
    cfg = UnlearnConfig(steps=1 + warmup + steps, batch_size=batch, forget_batch_size=batch, towers=towers, seed=seed,
                        checkpoint_every=0, log_every=1, forget=ForgetSpec(classes=[data.classnames[0]]),
                        accelerator=AcceleratorConfig(mixed_precision=PRECISIONS[precision], cpu=device == "cpu",
                                                      log_with="none"))
    cfg.validate()
    split = split_forget_retain(data, None, cfg.forget)
    world = acc.num_processes
    per_step = {key: len(StepBatches.for_processes(len(d), batch, s, world, key).at(0))
                for key, d, s in (("forget", split.forget, cfg.seed), ("retain", split.retain, cfg.seed + 1))}
    images = sum(per_step.values())
    run_bundle = dataclasses.replace(bundle, model=copy.deepcopy(bundle.model))
    clock = StepClock(acc)
    dev = acc.device
    _reset_peak(dev)
    t0 = time.perf_counter()
    res = unlearn(run_bundle, split, cfg, acc, run=clock, desc=f"unlearn {towers} {precision}")
    total = time.perf_counter() - t0
    mem = _peak(dev)
    ends = clock.ends
    if len(ends) != cfg.steps:
        raise RuntimeError(f"expected {cfg.steps} step ends from the unlearning loop, got {len(ends)}")
    durations = [b - a for a, b in zip(ends, ends[1:], strict=False)][warmup:]  # the first end only starts the clock
    st = _stats(durations)
    out: dict[str, Any] = {
        "towers": get_method(cfg.method).towers_for(cfg), "precision": precision, "mixed_precision": PRECISIONS[precision],
        "processes": world, "device": str(dev), "forget_batch": per_step["forget"], "retain_batch": per_step["retain"],
        "images_per_step": images, "steps_run": cfg.steps, "warmup_steps": warmup + 1, "timing": st,
        "steps_per_s": 1.0 / st["median_s"], "images_per_s": images / st["median_s"],
        "unlearn_call_s": total, "last_loss": res.last_log.get("loss"), **mem,
        "forget_set": f"class {data.classnames[0]!r}: {len(split.forget)} forget / {len(split.retain)} retain records",
    }
    if time_input:  # the loop's input path alone: one step's images through the eval transform, in this process
        from mmcore.data.loading import image_batches

        recs = split.forget.records + split.retain.records
        idx = [list(range(images))]
        t = timed_median(lambda: next(iter(image_batches(recs, bundle.preprocess_eval, idx,
                                                         pin_memory=dev.type == "cuda"))),
                         repeats=steps, warmup=1)
        out["input_ms_per_step"] = 1000 * t["median_s"]
        out["input_share_of_step"] = t["median_s"] / st["median_s"]
    del res, run_bundle
    acc.free_memory()
    return out


# ------------------------------------------------------------------------------------------ SaSR-Net


class SyntheticFeatures:
    """``n`` videos of random ST-AVQA-shaped features (audio [T, A], visual [T, C, H, W]), one question each, read
    as :class:`mmcore.avqa.feature_data.AVQAFeatureDataset` is read by the training loop's batch builder
    (``ds[i]`` items, ``ds.video_features(key)`` for the negatives)."""

    def __init__(self, n: int, cfg: Any, t: int, qlen: int, seed: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.keys = [f"video{i:05d}" for i in range(n)]
        self.audio = rng.standard_normal((n, t, cfg.audio_dim), dtype=np.float32)
        # ResNet-18 maps are post-ReLU, non-negative
        self.visual = rng.random((n, t, cfg.visual_channels, cfg.grid_h, cfg.grid_w), dtype=np.float32)
        self.question = rng.integers(1, cfg.word_vocab, (n, qlen))
        self.answer = rng.integers(0, cfg.n_answers, n)
        self.sources = (rng.random((n, cfg.n_sources)) < 0.15).astype(np.float32)

    def __len__(self) -> int:
        return len(self.keys)

    def video_features(self, key: str) -> tuple[Any, Any]:
        i = self.keys.index(key)
        return self.audio[i], self.visual[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {"audio": torch.from_numpy(self.audio[i]), "visual": torch.from_numpy(self.visual[i]),
                "question": torch.from_numpy(self.question[i]).long(),
                "answer": torch.tensor(int(self.answer[i]), dtype=torch.long), "type_key": "synthetic",
                "video_id": self.keys[i], "question_id": i, "sources": torch.from_numpy(self.sources[i])}


def _pinned(batch: dict[str, Any], dev: Any) -> dict[str, Any]:
    if dev.type != "cuda":
        return batch
    return {k: (v.pin_memory() if hasattr(v, "pin_memory") else v) for k, v in batch.items()}


def sasrnet_setup(tiny: bool, train_batch: int, eval_batch: int, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    from sasrnet.config import TrainConfig, model_config

    tcfg = TrainConfig()
    over = {"visual_channels": 6} if tiny else {}  # --tiny: the synthetic world's pixel-statistics grid
    mcfg = model_config("sasrnet", "cpu-tiny" if tiny else "paper",
                        {**over, "n_segments": tcfg.n_segments})
    ds = SyntheticFeatures(max(train_batch, eval_batch, 2), mcfg, tcfg.n_segments, tcfg.max_question_len, seed)
    shapes = {"audio": [tcfg.n_segments, mcfg.audio_dim],
              "visual": [tcfg.n_segments, mcfg.visual_channels, mcfg.grid_h, mcfg.grid_w],
              "question_len": tcfg.max_question_len}
    return mcfg, ds, shapes


def sasrnet_measure(mcfg: Any, ds: Any, *, precision: str, device: str, train_batch: int, eval_batch: int,
                    steps: int, warmup: int, seed: int) -> dict[str, dict[str, Any]]:
    """Evaluation forwards, then training steps, each of a freshly built SaSR-Net under ``precision``."""
    acc = _fresh_accelerator(precision, device)
    timing = {"steps": steps, "warmup": warmup, "seed": seed}
    results = {"eval": _sasrnet_eval(acc, mcfg, ds, eval_batch, **timing)}
    acc.free_memory()  # the evaluated model's references: the training measurement starts from an empty device
    results["train"] = _sasrnet_train(acc, mcfg, ds, train_batch, **timing)
    acc.free_memory()
    for r in results.values():
        r["precision"] = precision
    return results


def _sasrnet_eval(acc: Any, mcfg: Any, ds: Any, batch_size: int, *, steps: int, warmup: int,
                  seed: int) -> dict[str, Any]:
    """Evaluation forwards as ``sasrnet.recipes.evaluate.predict_split`` does them (no optimizer on the device)."""
    import torch
    from sasrnet.data import collate, to_device
    from sasrnet.model import build_model, count_parameters

    from benchmarks._common import timed_median

    dev = acc.device
    torch.manual_seed(seed)
    model = acc.prepare(build_model(mcfg))
    model.eval()
    batch = _pinned(collate([ds[i] for i in range(batch_size)]), dev)

    def forward() -> None:
        with torch.no_grad():
            model(to_device(batch, dev))["logits"].argmax(-1).cpu()

    _reset_peak(dev)
    t = timed_median(forward, repeats=steps, warmup=warmup)
    return {"batch": batch_size, "params": count_parameters(model), "timing": t, "steps_per_s": 1.0 / t["median_s"],
            "samples_per_s": batch_size / t["median_s"], **_peak(dev)}


def _sasrnet_train(acc: Any, mcfg: Any, ds: Any, batch_size: int, *, steps: int, warmup: int,
                   seed: int) -> dict[str, Any]:
    """Training steps as ``sasrnet.recipes.train.train`` does them (its Adam groups, negatives and backward)."""
    import torch
    from mmcore.optim import adam
    from sasrnet.config import TrainConfig
    from sasrnet.data import to_device
    from sasrnet.model import build_model, compute_loss, count_parameters
    from sasrnet.recipes.train import batch_with_negatives

    from benchmarks._common import timed_median

    dev = acc.device
    torch.manual_seed(seed)
    net = build_model(mcfg)
    sasr = [p for n, p in net.named_parameters() if n.startswith("sasr.")]
    rest = [p for n, p in net.named_parameters() if not n.startswith("sasr.")]
    opt = adam([{"params": rest}] + ([{"params": sasr}] if sasr else []), lr=TrainConfig().lr)
    model, opt = acc.prepare(net, opt)
    model.train()
    local = list(range(batch_size))
    seeds = [(seed * 1_000_003 + 0) * 1_000_003 + i for i in local]  # the loop's per-video seeds of step 0
    host = _pinned(batch_with_negatives(ds, local, ds.keys, seeds), dev)
    last: list[float] = []

    def step() -> None:
        batch = to_device(host, dev)
        terms = compute_loss(mcfg, model(batch), batch)
        opt.zero_grad(set_to_none=True)
        acc.backward(terms["loss"])
        opt.step()
        last[:] = [float(terms["loss"].detach())]

    _reset_peak(dev)
    t = timed_median(step, repeats=steps, warmup=warmup)
    return {"batch": batch_size, "params": count_parameters(model), "timing": t, "steps_per_s": 1.0 / t["median_s"],
            "samples_per_s": batch_size / t["median_s"], "negatives": list(host["visual_neg"].shape),
            "negative_pass": mcfg.negative_pass, "last_loss": last[0], **_peak(dev)}


# ------------------------------------------------------------------------------------------ 2 processes
