"""The AVQA part of `mm demo`: SaSR-Net and the question-only model on a small synthetic Music-AVQA world.

Synthesise the world (mp4 + AAC clips, Music-AVQA JSON), extract ST-AVQA-layout features, train both models
briefly with the CPU benchmark's recipe at a smaller size, then answer one test question with its temporal
attention. Everything it trains is cached under the demo cache dir, keyed by seed and sizes.

Every model in this part runs on one thread, as does the demo's diffusion training, so `mm demo` runs this
part in a child process (``python -m mm_cli.demo_avqa``) on the otherwise idle second core while the CLIP part
goes on; the child writes ``avqa.json`` and a log, and the parent prints the tables once both are done.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mm_cli.common import print_table

RECIPE = Path(__file__).resolve().parents[4] / "configs" / "avqa" / "sasrnet-cpu-benchmark.yaml"
SPARKS = "▁▂▃▄▅▆▇█"


@dataclasses.dataclass(frozen=True)
class AvqaDemoSize:
    """Sizes of the miniature (the cache key). The training recipe is sasrnet-cpu-benchmark.yaml with these
    fields replaced: a shorter run needs a shorter warm-up and an earlier learning-rate step."""

    videos: int = 160
    size: str = "cpu-small"
    epochs: int = 10
    warmup_steps: int = 40
    step_size: int = 4

    @property
    def key(self) -> str:
        return f"v{self.videos}-{self.size}-e{self.epochs}"


TINY = AvqaDemoSize(videos=12, size="cpu-tiny", epochs=1, warmup_steps=0, step_size=1)
MODELS = (("SaSR-Net", "sasrnet"), ("question-only", "blind"))


def sparkline(weights: list[float]) -> str:
    """One block character per segment, scaled to the largest weight (a flat row means uniform attention)."""
    top = max(weights) if weights else 0.0
    if top <= 0:
        return SPARKS[0] * len(weights)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(w / top * (len(SPARKS) - 1) + 0.5))] for w in weights)


def _world(root: Path, sz: AvqaDemoSize, seed: int) -> tuple[Path, bool]:
    """The synthetic world's directory and whether it was reused from the cache."""
    from mmcore.avqa.feature_extraction import extract_features
    from mmcore.avqa.synth import synthesize
    from mmcore.io import prepare_output_dir

    world = root / "world"
    if (world / "features" / "features.json").is_file() and (world / "annotations" / "avqa-test.json").is_file():
        return world, True
    prepare_output_dir(world, overwrite=True)
    synthesize(world, sz.videos, seed)
    extract_features(world / "videos", world / "features")
    return world, False


def _train(world: Path, run: Path, kind: str, sz: AvqaDemoSize, seed: int, tiny: bool) -> dict:
    from mmcore.config import resolve_config
    from mmcore.io import read_json
    from sasrnet import TrainConfig, train

    if (run / "metrics.json").is_file() and (run / "model.safetensors").is_file():
        return read_json(run / "metrics.json")
    over: dict[str, Any] = {"model": kind, "size": sz.size, "epochs": sz.epochs, "warmup_steps": sz.warmup_steps,
                            "step_size": sz.step_size, "seed": seed + 1}
    if tiny:
        over["batch_size"] = 8
    cfg = resolve_config(TrainConfig, RECIPE, over)
    metrics = train(cfg, world, run, overwrite=True)
    shutil.rmtree(run / "checkpoint", ignore_errors=True)  # resumable state: the cache keeps only the model
    return metrics


def build_avqa_demo(cache: Path, out: Path, seed: int, tiny: bool) -> dict:
    """Build (or reuse) the miniature and answer one test question; writes and returns ``out/avqa.json``."""
    import torch
    from mmcore.avqa.music_avqa import load_music_avqa
    from mmcore.io import read_json, write_json
    from sasrnet import predict
    from sasrnet.metrics import majority_answer_accuracy

    t0 = time.perf_counter()
    sz = TINY if tiny else AvqaDemoSize()
    root = cache / f"avqa-{'micro' if tiny else 'mini'}-seed{seed}-{sz.key}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are small: extra intra-op threads only spin on a shared CPU
    try:
        world, world_cached = _world(root, sz, seed)
        models_cached = all((root / kind / "metrics.json").is_file() for _, kind in MODELS)
        metrics = {kind: _train(world, root / kind, kind, sz, seed, tiny) for _, kind in MODELS}
        test = load_music_avqa(world / "annotations" / "avqa-test.json")
        majority = read_json(root / "sasrnet" / "model.json")["majority_answers"]
        chance = majority_answer_accuracy(majority, [(q.type_key, q.answer) for q in test])
        q = test[0]  # the first test question: a fixed pick, whatever the model answers
        res = predict(root / "sasrnet", world / "videos" / f"{q.video_id}.mp4", q.text)
        n_train = len(load_music_avqa(world / "annotations" / "avqa-train.json"))
    finally:
        torch.set_num_threads(threads)
    summary = {"sizes": dataclasses.asdict(sz), "cache": str(root), "world_cached": world_cached,
               "models_cached": models_cached, "n_train": n_train, "n_test": len(test), "chance": chance,
               **{kind: {"test": metrics[kind]["test"], "params": metrics[kind]["params"]} for _, kind in MODELS},
               # predict's "answer" is the model's; the question's own answer is "true_answer".
               "predict": {**res, "video_id": q.video_id, "question": q.text, "true_answer": q.answer},
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "avqa.json", summary)
    return summary


def print_avqa_demo(summary: dict, console: Any) -> None:
    """The accuracy table next to the majority-answer chance level, and the one answer with its attention."""
    sz, root = AvqaDemoSize(**summary["sizes"]), summary["cache"]
    world = f"{root}/world"
    console.print(f"    reusing the cached AVQA world in {world}" if summary["world_cached"] else
                  f"    synthesised {sz.videos} Music-AVQA-style clips and extracted their features → {world}")
    console.print(("    reusing the cached SaSR-Net and question-only models in " if summary["models_cached"] else
                   "    trained SaSR-Net and the question-only model → ") + root)
    cols = ("A-Avg", "V-Avg", "AV-Avg", "overall")

    def row(name: str, m: dict, params: str) -> dict:
        return {"model": name, **{c: round(m[c], 1) if m.get(c) is not None else "-" for c in cols}, "params": params}

    rows = [row(name, summary[kind]["test"], f"{summary[kind]['params']:,}") for name, kind in MODELS]
    rows.append(row("majority answer", summary["chance"], "-"))  # the type's commonest training answer
    print_table(f"AVQA test accuracy (%): {sz.videos} synthetic clips, {summary['n_train']} training / "
                f"{summary['n_test']} test questions, {sz.epochs} epoch(s) at size {sz.size}", rows)
    gap = summary["sasrnet"]["test"]["overall"] - summary["blind"]["test"]["overall"]
    if abs(gap) < 0.5:
        console.print(f"    SaSR-Net - question-only: {gap:+.1f} points: at this size and training time SaSR-Net "
                      "has learned no more than the question prior; the README's AVQA benchmark "
                      "(configs/avqa/*-cpu-benchmark.yaml) trains on 10x the clips")
    res = summary["predict"]
    verdict = "right" if res["answer"] == res["true_answer"] else "wrong"
    console.print(f"    predict ({res['video_id']}.mp4): {res['question']}  →  SaSR-Net: {res['answer']!r} "
                  f"(true: {res['true_answer']!r}, {verdict})")
    ta = res.get("temporal_attention", {})
    for branch in ("audio", "visual"):
        if branch in ta:
            w = ta[branch]
            console.print(f"    temporal attention, {branch:<6} {sparkline(w)}  (segments 0-{len(w) - 1}; "
                          f"weights {min(w):.3f}-{max(w):.3f}, peak at {max(range(len(w)), key=w.__getitem__)})")


class BackgroundAvqaDemo:
    """``build_avqa_demo`` in a child process, its output in ``out/log.txt``. ``result()`` waits for it;
    ``stop()`` ends it if still running (the parent failed or was interrupted: nothing is left running)."""

    def __init__(self, cache: Path, out: Path, seed: int, tiny: bool) -> None:
        self.out, self.log = out, out / "log.txt"
        out.mkdir(parents=True, exist_ok=True)
        (out / "avqa.json").unlink(missing_ok=True)
        args = [sys.executable, "-m", "mm_cli.demo_avqa", str(cache), str(out), "--seed", str(seed)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([*args, *(["--tiny"] if tiny else [])], stdout=log,
                                         stderr=subprocess.STDOUT, env=env)

    def result(self) -> dict:
        from mmcore.errors import MMError
        from mmcore.io import read_json

        if self.proc.wait() != 0 or not (self.out / "avqa.json").is_file():
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise MMError(f"the AVQA part failed (exit code {self.proc.returncode}); its log {self.log} ends:\n{tail}")
        return read_json(self.out / "avqa.json")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def main(argv: list[str] | None = None) -> None:
    """Entry of the child process `mm demo` starts: ``python -m mm_cli.demo_avqa CACHE OUT [--seed S] [--tiny]``."""
    from mmcore.distributed import quiet_third_party_progress

    p = argparse.ArgumentParser(prog="python -m mm_cli.demo_avqa", description=main.__doc__)
    p.add_argument("cache", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args(argv)
    quiet_third_party_progress()
    build_avqa_demo(a.cache, a.out, a.seed, a.tiny)


if __name__ == "__main__":
    main()
