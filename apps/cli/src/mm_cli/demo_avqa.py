"""The AVQA part of `mm demo`: SaSR-Net, AVST and the question-only model on a small synthetic Music-AVQA world.

Synthesise the lit world (mp4 + AAC clips whose instrument plates light up while they sound, Music-AVQA
JSON), extract ST-AVQA-layout features, train the three models briefly with the CPU benchmark's recipe at a
smaller size, then report their test accuracy overall and on the templates that need vision (with its
standard error), how flat each one's visual temporal attention is, and their answers to one temporal test
question with that attention. Everything it trains is cached under the demo cache dir, keyed by seed and sizes.

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

RECIPE = ("sasrnet", "avqa", "sasrnet-cpu-benchmark")  # the committed preset (mmcore.presets)
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
    frames: str = "lit"  # the world's frames (mmcore.avqa.synth): plates light up while their instrument sounds

    @property
    def key(self) -> str:
        return f"v{self.videos}-{self.size}-e{self.epochs}-{self.frames}"


TINY = AvqaDemoSize(videos=12, size="cpu-tiny", epochs=1, warmup_steps=0, step_size=1)
MODELS = (("SaSR-Net", "sasrnet"), ("AVST", "avst"), ("question-only", "blind"))
VIDEO_MODELS = tuple(m for m in MODELS if m[1] != "blind")
NOT_FLAT = 0.15  # mean largest visual temporal weight; uniform over the 10 segments is 0.10


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
    synthesize(world, sz.videos, seed, frames=sz.frames)
    extract_features(world / "videos", world / "features")
    return world, False


def _train(world: Path, run: Path, kind: str, sz: AvqaDemoSize, seed: int, tiny: bool) -> dict:
    from mmcore.config import resolve_config
    from mmcore.io import read_json
    from mmcore.presets import preset_path
    from sasrnet import TrainConfig, train

    if (run / "metrics.json").is_file() and (run / "model.safetensors").is_file():
        return read_json(run / "metrics.json")
    over: dict[str, Any] = {"model": kind, "size": sz.size, "epochs": sz.epochs, "warmup_steps": sz.warmup_steps,
                            "step_size": sz.step_size, "seed": seed + 1}
    if tiny:
        over["batch_size"] = 8
    cfg = resolve_config(TrainConfig, preset_path(*RECIPE), over)
    metrics = train(cfg, world, run, overwrite=True)
    shutil.rmtree(run / "checkpoint", ignore_errors=True)  # resumable state: the cache keeps only the model
    return metrics


def _vision_accuracy(run: Path) -> dict[str, float | int]:
    """Accuracy (%) on the test questions whose template needs vision, with its binomial standard error."""
    import json
    import math

    from mmcore.avqa.synth.questions import template_needs

    needs = template_needs("lit")
    recs = [json.loads(x) for x in (run / "test_predictions.jsonl").read_text().splitlines() if x]
    ok = [r["prediction"] == r["answer"] for r in recs if needs.get(r["template"]) == "vision"]
    p = sum(ok) / max(len(ok), 1)
    return {"accuracy": round(100 * p, 2), "se": round(100 * math.sqrt(p * (1 - p) / max(len(ok), 1)), 2),
            "questions": len(ok)}


def _best_temporal_max(metrics: dict) -> float | None:
    """The best epoch's mean largest visual temporal weight on the validation diagnostics batch."""
    for rec in metrics.get("history", []):
        if rec.get("epoch") == metrics.get("best_epoch") and "diagnostics" in rec:
            return rec["diagnostics"].get("temporal_max_v")
    return None


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
        # a fixed pick, whatever the models answer: the first temporal test question (it needs the video)
        q = next((x for x in test if x.type_key == "AV-Temp"), test[0])
        video = world / "videos" / f"{q.video_id}.mp4"
        answers = {kind: predict(root / kind, video, q.text) for _, kind in VIDEO_MODELS}
        n_train = len(load_music_avqa(world / "annotations" / "avqa-train.json"))
    finally:
        torch.set_num_threads(threads)
    summary = {"sizes": dataclasses.asdict(sz), "cache": str(root), "world_cached": world_cached,
               "models_cached": models_cached, "n_train": n_train, "n_test": len(test), "chance": chance,
               **{kind: {"test": metrics[kind]["test"], "params": metrics[kind]["params"],
                         "vision_templates": _vision_accuracy(root / kind),
                         "temporal_max_v": _best_temporal_max(metrics[kind])} for _, kind in MODELS},
               # predict's "answer" is each model's; the question's own answer is "true_answer".
               "predict": {"video_id": q.video_id, "question": q.text, "true_answer": q.answer, "type": q.type_key,
                           "models": answers},
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "avqa.json", summary)
    return summary


def print_avqa_demo(summary: dict, console: Any) -> None:
    """The accuracy table next to the majority-answer chance level, and the answers with their attention."""
    sz, root = AvqaDemoSize(**summary["sizes"]), summary["cache"]
    world = f"{root}/world"
    console.print(f"    reusing the cached AVQA world in {world}" if summary["world_cached"] else
                  f"    synthesised {sz.videos} Music-AVQA-style clips (plates light up while their instrument "
                  f"sounds) and extracted their features → {world}")
    console.print(("    reusing the cached SaSR-Net, AVST and question-only models in " if summary["models_cached"]
                   else "    trained SaSR-Net, AVST and the question-only model → ") + root)
    cols = ("A-Avg", "V-Avg", "AV-Avg", "overall")

    def row(name: str, m: dict, extra: dict) -> dict:
        return {"model": name, **{c: round(m[c], 1) if m.get(c) is not None else "-" for c in cols}, **extra}

    rows = []
    for name, kind in MODELS:
        r = summary[kind]
        vis = r["vision_templates"]
        flat = r["temporal_max_v"]
        rows.append(row(name, r["test"], {"vision ± SE": f"{vis['accuracy']:.1f} ± {vis['se']:.1f}",
                                          "attn peak": "-" if flat is None else f"{flat:.3f}"}))
    rows.append(row("majority answer", summary["chance"], {"vision ± SE": "-", "attn peak": "-"}))
    n_vis = summary["blind"]["vision_templates"]["questions"]
    print_table(f"AVQA test accuracy (%): {sz.videos} synthetic clips, {summary['n_train']} training / "
                f"{summary['n_test']} test questions ({n_vis} on templates that need vision), {sz.epochs} epoch(s) "
                f"at size {sz.size}", rows)
    console.print("    vision: the templates that need vision; attn peak: the mean largest weight of the question-guided "
                  f"visual temporal attention on validation questions (flat = 0.100 over 10 segments; 'not flat' from "
                  f"{NOT_FLAT}); params: " + ", ".join(f"{n} {summary[k]['params']:,}" for n, k in MODELS))
    blind = summary["blind"]["vision_templates"]
    for name, kind in VIDEO_MODELS:
        vis, peak = summary[kind]["vision_templates"], summary[kind]["temporal_max_v"]
        gap, se = vis["accuracy"] - blind["accuracy"], (vis["se"] ** 2 + blind["se"] ** 2) ** 0.5
        uses = peak is not None and peak >= NOT_FLAT and gap > se
        console.print(f"    {name}: vision templates {gap:+.1f} points against question-only (SE {se:.1f}), "
                      f"visual attention {'not flat' if peak is not None and peak >= NOT_FLAT else 'flat'}"
                      f" → {'uses the video' if uses else 'does not show that it uses the video'}")
    res = summary["predict"]
    console.print(f"    predict ({res['video_id']}.mp4, {res['type']}): {res['question']}  (true: {res['true_answer']!r})")
    for name, kind in VIDEO_MODELS:
        ans = res["models"][kind]
        verdict = "right" if ans["answer"] == res["true_answer"] else "wrong"
        w = ans.get("temporal_attention", {}).get("visual", [])
        console.print(f"      {name:<8} {ans['answer']!r} ({verdict}); temporal attention, visual {sparkline(w)} "
                      f"(segments 0-{len(w) - 1}; weights {min(w):.3f}-{max(w):.3f})")


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
