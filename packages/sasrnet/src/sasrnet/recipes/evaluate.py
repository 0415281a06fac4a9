"""Evaluation and single-video prediction of trained AVQA models (SaSR-Net, AVST, question-only).

A model directory (the output of :func:`sasrnet.recipes.train.train`, or of ``mm avqa import-official``):
    model.json  model.safetensors  question_vocab.json  answer_vocab.json
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmcore.checkpoint import load_model_weights, unwrap
from mmcore.distributed import (
    progress_bar,
    shard_indices,
    world_size,
)
from mmcore.errors import DataError, MMError
from mmcore.io import prepare_output_dir, read_json, write_json

from sasrnet.config import TrainConfig, model_config_from_dict
from sasrnet.data import (
    DataPaths,
    collate,
    data_paths,
    feature_dataset,
    load_questions,
    to_device,
)
from sasrnet.metrics import majority_answer_accuracy, plot_type_accuracies, type_accuracies
from sasrnet.model import AVQAModel, build_model
from sasrnet.registry import avqa_model_spec

MODEL_FILE = "model.safetensors"


def gather_objects(obj: list) -> list:
    """Concatenate per-process lists on every process (identity on one process)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return [x for p in parts for x in p]


def _collated(ds: Any, local: list[int]) -> dict:
    return collate([ds[i] for i in local])


def predict_split(model: AVQAModel, ds: Any, batch_size: int, description: str = "eval",
                  num_workers: int = 0) -> list[dict]:
    """Batched inference over a dataset (sharded over processes, gathered); one record per question,
    in dataset order: question_id, video_id, question, type_key, answer index (-1: unseen in training),
    answer_text, prediction index. Batches are built in ``num_workers`` DataLoader workers (0: here)."""
    import torch
    from mmcore.avqa.feature_data import planned_batches

    model = unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    recs: list[dict] = []
    chunks = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
    with torch.no_grad(), progress_bar(len(chunks), description) as advance:
        locals_ = [shard_indices(chunk) for chunk in chunks]
        plans = [(ds, local) for local in locals_ if local]
        built = iter(planned_batches(_collated, plans, num_workers=num_workers, pin_memory=device.type == "cuda"))
        for local in locals_:
            if local:
                batch = next(built)
                pred = model(to_device(batch, device))["logits"].argmax(-1).cpu()
                for j, i in enumerate(local):
                    q = ds.questions[i]
                    recs.append({"index": i, "question_id": int(batch["question_id"][j]), "video_id": batch["video_id"][j],
                                 "question": " ".join(q.words), "template": getattr(q, "template", None),
                                 "type_key": batch["type_key"][j],
                                 "answer": int(batch["answer"][j]), "answer_text": str(q.answer),
                                 "prediction": int(pred[j])})
            advance()
    model.train(was_training)
    return sorted(gather_objects(recs), key=lambda r: r["index"])


def accuracies(recs: list[dict]) -> dict:
    return type_accuracies([r["type_key"] for r in recs], [r["answer"] == r["prediction"] for r in recs])


def evaluate_split(model: AVQAModel, paths: DataPaths, ann: Path, qv: Any, av: Any, n_segments: int,
                    max_question_len: int, batch_size: int, multiple_choice: bool, skip_bad: bool,
                    num_workers: int = 0) -> tuple[dict, list[dict]]:
    """Accuracies over EVERY question of ``ann``: one whose answer never occurs in training is answered
    wrongly (counted in ``unseen_answers``), never dropped from the denominator."""
    qs = load_questions(ann, multiple_choice=multiple_choice, skip_bad=skip_bad)
    n_bad_ann = getattr(qs, "skipped", 0)
    if not qs:
        raise DataError(ann, "no questions to evaluate")
    ds = feature_dataset(qs, paths.features, qv, av, n_segments=n_segments, max_question_len=max_question_len,
                         skip_bad=skip_bad, multiple_choice=multiple_choice, unseen_answers="wrong")
    recs = predict_split(model, ds, batch_size, "eval", num_workers=num_workers)
    m = accuracies(recs)
    m["unseen_answers"] = ds.n_unseen_answers
    m["skipped"] = {"annotations": n_bad_ann, "features": getattr(ds, "skipped", 0)}
    return m, recs


def write_predictions(path: Path, recs: list[dict], av: Any) -> None:
    """One JSON line per question: ids, text, template, type, true answer, predicted answer."""
    import json

    from mmcore.io import atomic_write_text

    lines = [json.dumps({"question_id": r["question_id"], "video_id": r["video_id"], "question": r["question"],
                         "template": r["template"], "type": r["type_key"], "answer": r["answer_text"],
                         "prediction": av.tokens[r["prediction"]]}) for r in recs]
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_trained(checkpoint_dir: str | Path) -> tuple[AVQAModel, dict, Any, Any]:
    """Model (eval mode), model.json, question and answer vocabularies of a training output dir."""
    from mmcore.avqa.music_avqa import Vocab

    d = Path(checkpoint_dir)
    if not d.is_dir():
        raise DataError(d, "checkpoint directory not found")
    if not (d / "model.json").is_file():
        raise DataError(d, "not an AVQA checkpoint directory (model.json missing; expected the --out of `mm avqa train`)")
    info = read_json(d / "model.json")
    if not isinstance(info, dict) or "model_config" not in info:
        raise DataError(d / "model.json", "missing key 'model_config'")
    mcfg = model_config_from_dict(info["model_config"])
    model = build_model(mcfg)
    if not (d / MODEL_FILE).is_file():
        raise DataError(d / MODEL_FILE, "weights not found (training did not finish an epoch?)")
    load_model_weights(model, d / MODEL_FILE)
    model.eval()
    return model, info, Vocab.load(d / "question_vocab.json"), Vocab.load(d / "answer_vocab.json")


def evaluate(
    checkpoint_dir: str | Path,
    data: str | Path | DataPaths,
    out_dir: str | Path,
    *,
    annotations: str | Path | None = None,
    batch_size: int = 64,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> dict:
    """Batched evaluation of a trained model on ``annotations`` (default: the data dir's test split).

    Writes ``config.json`` (what was evaluated, on what), ``metrics.json`` (per-type accuracies in the
    paper's keys, see :mod:`sasrnet.metrics`; every question counts, one whose answer never occurs in
    training as wrong, their number in ``unseen_answers``), ``predictions.jsonl`` and ``accuracy.png``.
    ``skip_bad`` skips and counts malformed annotations and bad feature files."""
    model, info, qv, av = load_trained(checkpoint_dir)
    paths = data_paths(data)
    ann = Path(annotations) if annotations is not None else paths.test_ann
    if ann is None:
        raise MMError("no evaluation annotations: the data dir has no annotations/avqa-test.json; pass --ann FILE")
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    write_json(out / "config.json", {"checkpoint": str(checkpoint_dir), "features": str(paths.features),
                                     "annotations": str(ann), "batch_size": batch_size, "skip_bad": skip_bad})
    t0 = time.perf_counter()
    m, recs = evaluate_split(model, paths, ann, qv, av, info["n_segments"], info["max_question_len"], batch_size,
                              info.get("multiple_choice", False), skip_bad,
                              num_workers=TrainConfig.num_workers)
    elapsed = time.perf_counter() - t0
    metrics = {"model": info["kind"], "checkpoint": str(checkpoint_dir), "annotations": str(ann), **m,
               "eval_s_per_question": round(elapsed / max(len(recs), 1), 6)}
    write_json(out / "metrics.json", metrics)
    write_predictions(out / "predictions.jsonl", recs, av)
    plot_split(out / "accuracy.png", info["kind"], m, Path(ann).name, recs, info.get("majority_answers"))
    return metrics


def plot_split(path: Path, kind: str, m: dict, split: str, recs: list[dict], majority: dict[str, str] | None) -> None:
    """accuracy.png of one evaluated split, with the majority-answer chance level when it is known."""
    chance = majority_answer_accuracy(majority, [(r["type_key"], r["answer_text"]) for r in recs]) if majority else None
    plot_type_accuracies({kind: m}, path, title=f"{kind}: {split} ({m['n_questions']} questions)", chance=chance)


def predict(checkpoint_dir: str | Path, video: str | Path, question: str, *, top_k: int = 5) -> dict:
    """Answer one question about one video: features are extracted on the fly with the encoders
    recorded in the training features' features.json."""
    import torch

    from sasrnet.video import video_item

    model, info, qv, av = load_trained(checkpoint_dir)
    if info.get("multiple_choice"):
        raise MMError(f"{checkpoint_dir}: a multiple-choice model needs answer choices; predict supports "
                      "Music-AVQA style models")
    words = [w for w in question.strip().rstrip("?？").split() if w]
    if not words:
        raise MMError("the question is empty")
    item = video_item(video, info, needs_av=avqa_model_spec(info["kind"]).uses_video)
    unknown = [w for w in words if w not in qv]
    batch = {"question": torch.tensor([qv.encode(words, info["max_question_len"])])}
    if "audio" in item:
        batch["audio"], batch["visual"] = item["audio"][None], item["visual"][None]
    with torch.no_grad():
        out = model(batch)
    probs = torch.softmax(out["logits"][0], -1)
    top = torch.topk(probs, min(top_k, len(probs)))
    res: dict[str, Any] = {
        "question": question,
        "video": str(video),
        "answer": av.tokens[int(top.indices[0])],
        "top": [{"answer": av.tokens[int(i)], "prob": round(float(p), 6)} for p, i in zip(top.values, top.indices, strict=True)],
        "unknown_words": unknown,
    }
    if "temporal_a" in out:
        res["temporal_attention"] = {"audio": [round(float(x), 6) for x in out["temporal_a"][0]],
                                     "visual": [round(float(x), 6) for x in out["temporal_v"][0]]}
    return res
