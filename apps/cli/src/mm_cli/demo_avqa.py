"""The AVQA part of `mm demo`: SaSR-Net and the question-only model on a small synthetic Music-AVQA world.

Synthesise the world (mp4 + AAC clips, Music-AVQA JSON), extract ST-AVQA-layout features, train both models
briefly with the CPU benchmark's recipe at a smaller size, print their test accuracies next to the
majority-answer chance level, and answer one test question with its temporal attention. Everything it
trains is cached under the demo cache dir, keyed by seed and sizes.
"""

from __future__ import annotations

import dataclasses
import shutil
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


def _world(root: Path, sz: AvqaDemoSize, seed: int, console: Any) -> Path:
    from mmcore.avqa.feature_extraction import extract_features
    from mmcore.avqa.synth import synthesize
    from mmcore.io import prepare_output_dir

    world = root / "world"
    if (world / "features" / "features.json").is_file() and (world / "annotations" / "avqa-test.json").is_file():
        console.print(f"    reusing the cached AVQA world in {world}")
        return world
    console.print(f"    synthesising {sz.videos} Music-AVQA-style clips and extracting features → {world}")
    prepare_output_dir(world, overwrite=True)
    synthesize(world, sz.videos, seed)
    extract_features(world / "videos", world / "features")
    return world


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


def run_avqa_demo(cache: Path, out: Path, seed: int, tiny: bool, console: Any) -> dict:
    """Build (or reuse) the miniature, print the accuracy table and one answer; returns the summary."""
    import torch
    from mmcore.avqa.music_avqa import load_music_avqa
    from mmcore.io import read_json, write_json
    from sasrnet import predict
    from sasrnet.metrics import majority_answer_accuracy

    sz = TINY if tiny else AvqaDemoSize()
    root = cache / f"avqa-{'micro' if tiny else 'mini'}-seed{seed}-{sz.key}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are small: extra intra-op threads only spin on a shared CPU
    try:
        world = _world(root, sz, seed, console)
        cached = all((root / kind / "metrics.json").is_file() for _, kind in MODELS)
        console.print(("    reusing the cached SaSR-Net and question-only models in " if cached else
                       "    training SaSR-Net and the question-only model → ") + str(root))
        metrics = {kind: _train(world, root / kind, kind, sz, seed, tiny) for _, kind in MODELS}
        test = load_music_avqa(world / "annotations" / "avqa-test.json")
        majority = read_json(root / "sasrnet" / "model.json")["majority_answers"]
        chance = majority_answer_accuracy(majority, [(q.type_key, q.answer) for q in test])
        cols = ("A-Avg", "V-Avg", "AV-Avg", "overall")

        def row(name: str, m: dict, params: str) -> dict:
            return {"model": name, **{c: round(m[c], 1) if m.get(c) is not None else "-" for c in cols},
                    "params": params}

        rows = [row(name, metrics[kind]["test"], f"{metrics[kind]['params']:,}") for name, kind in MODELS]
        rows.append(row("majority answer", chance, "-"))  # the chance level: the type's commonest training answer
        n_train = len(load_music_avqa(world / "annotations" / "avqa-train.json"))
        print_table(f"AVQA test accuracy (%): {sz.videos} synthetic clips, {n_train} training / {len(test)} test "
                    f"questions, {sz.epochs} epoch(s) at size {sz.size}", rows)

        gap = metrics["sasrnet"]["test"]["overall"] - metrics["blind"]["test"]["overall"]
        if abs(gap) < 0.5:
            console.print(f"    SaSR-Net - question-only: {gap:+.1f} points: at this size and training time SaSR-Net "
                          "has learned no more than the question prior; the README's AVQA benchmark "
                          "(configs/avqa/*-cpu-benchmark.yaml) trains on 10x the clips")
        q = test[0]  # the first test question: a fixed pick, whatever the model answers
        res = predict(root / "sasrnet", world / "videos" / f"{q.video_id}.mp4", q.text)
        verdict = "right" if res["answer"] == q.answer else "wrong"
        console.print(f"    predict ({q.video_id}.mp4): {q.text}  →  SaSR-Net: {res['answer']!r} "
                      f"(true: {q.answer!r}, {verdict})")
        ta = res.get("temporal_attention", {})
        for branch in ("audio", "visual"):
            if branch in ta:
                w = ta[branch]
                console.print(f"    temporal attention, {branch:<6} {sparkline(w)}  (segments 0-{len(w) - 1}; "
                              f"weights {min(w):.3f}-{max(w):.3f}, peak at {max(range(len(w)), key=w.__getitem__)})")
    finally:
        torch.set_num_threads(threads)
    summary = {"sizes": dataclasses.asdict(sz), "cache": str(root), "chance": chance,
               **{kind: {"test": metrics[kind]["test"], "params": metrics[kind]["params"]} for _, kind in MODELS},
               "predict": {"video_id": q.video_id, "question": q.text, "answer": q.answer, **res}}
    write_json(out / "avqa.json", summary)
    return summary
