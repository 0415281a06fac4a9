"""Training / evaluation: outputs, per-type metrics, determinism, exact resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmcore.errors import DataError, MMError
from sasrnet.metrics import REPORT_KEYS, type_accuracies
from sasrnet.recipes.evaluate import evaluate, load_trained
from sasrnet.recipes.train import train
from sasrnet_testdata import make_avqa_dir, tiny_config


def _scores(m: dict) -> dict:
    """Everything in metrics.json that depends on the weights (not on wall time)."""
    return {"val": m["val"], "test": m["test"], "best_epoch": m["best_epoch"], "steps": m["steps"],
            "history": m["history"]}


@pytest.fixture(scope="module")
def trained(avqa_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "sasrnet"
    return out, train(tiny_config(model="sasrnet"), avqa_dir, out)


def test_type_accuracies_groups_are_question_weighted():
    keys = ["A-Count"] * 3 + ["A-Comp"] + ["V-Loc"] * 2 + ["AV-Temp"]
    correct = [True, True, False, False, True, False, True]
    m = type_accuracies(keys, correct)
    assert m["A-Count"] == pytest.approx(200 / 3, abs=1e-3) and m["A-Comp"] == 0.0
    assert m["A-Avg"] == 50.0  # 2 of 4 audio questions, not the mean (33.3) of the two type columns
    assert m["V-Avg"] == 50.0 and m["AV-Avg"] == 100.0 and m["V-Count"] is None
    assert m["overall"] == pytest.approx(400 / 7, abs=1e-3) and m["n_questions"] == 7


def test_train_writes_model_vocab_metrics(trained, avqa_dir):
    out, m = trained
    for f in ("config.json", "model.json", "question_vocab.json", "answer_vocab.json", "model.safetensors",
              "metrics.json", "log.jsonl", "accuracy.png", "checkpoint/state.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "metrics.json").read_text())["test"] == m["test"]
    # every batch of every epoch is visited (the public code broke after one batch per epoch)
    n_train = len(json.loads((avqa_dir / "annotations/avqa-train.json").read_text()))
    assert m["steps"] == 2 * (n_train // 8)
    assert set(REPORT_KEYS) <= set(m["test"]) and set(REPORT_KEYS) <= set(m["val"])
    assert m["train_samples_per_s"] > 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "epoch_end" for r in log) and any("loss" in r for r in log)
    model, info, qv, av = load_trained(out)
    assert info["kind"] == "sasrnet" and len(av) == info["model_config"]["n_answers"]


def test_evaluate_batched_equals_batch_one(trained, avqa_dir, tmp_path):
    out, m = trained
    e64 = evaluate(out, avqa_dir, tmp_path / "e64", batch_size=64)
    e1 = evaluate(out, avqa_dir, tmp_path / "e1", batch_size=1)
    for k in REPORT_KEYS:
        assert e64[k] == e1[k] == m["test"][k]
    assert (tmp_path / "e64" / "accuracy.png").stat().st_size > 1000
    preds = (tmp_path / "e64" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == e64["n_questions"]


def test_same_seed_gives_identical_metrics(trained, avqa_dir, tmp_path):
    _, first = trained
    second = train(tiny_config(model="sasrnet"), avqa_dir, tmp_path / "again")
    assert _scores(second) == _scores(first)


def test_interrupted_and_resumed_run_equals_straight_run(trained, avqa_dir, tmp_path):
    _, straight = trained
    out = tmp_path / "resumed"
    # stop mid-epoch 0 (step 4 of 6), then again inside epoch 1, resuming each time
    part = train(tiny_config(model="sasrnet"), avqa_dir, out, max_steps=4)
    assert part["interrupted"] and not (out / "metrics.json").exists()
    with pytest.raises(MMError, match="not empty"):
        train(tiny_config(model="sasrnet"), avqa_dir, out)  # never overwritten without --overwrite/--resume
    with pytest.raises(MMError, match="different config.*lr"):
        train(tiny_config(model="sasrnet", lr=0.1), avqa_dir, out, resume=True)
    train(tiny_config(model="sasrnet"), avqa_dir, out, resume=True, max_steps=8)
    resumed = train(tiny_config(model="sasrnet"), avqa_dir, out, resume=True)
    assert _scores(resumed) == _scores(straight)


def test_bad_inputs_fail_clearly(trained, avqa_dir, tmp_path):
    out, _ = trained
    # an answer unseen in training at evaluation time
    ann = json.loads((avqa_dir / "annotations/avqa-test.json").read_text())
    ann[0]["anser"] = "seventeen"
    bad_ann = tmp_path / "bad-test.json"
    bad_ann.write_text(json.dumps(ann))
    # it is answered wrongly and stays in the denominator (counted), never dropped
    good = evaluate(out, avqa_dir, tmp_path / "e1")
    m = evaluate(out, avqa_dir, tmp_path / "e2", annotations=bad_ann)
    assert m["unseen_answers"] == 1 and good["unseen_answers"] == 0
    assert m["n_questions"] == good["n_questions"] == len(ann)
    first_good = json.loads((tmp_path / "e1/predictions.jsonl").read_text().splitlines()[0])
    first_bad = json.loads((tmp_path / "e2/predictions.jsonl").read_text().splitlines()[0])
    assert first_bad["answer"] == "seventeen" and first_bad["question"] and first_bad["video_id"] == ann[0]["video_id"]
    was_right = first_good["prediction"] == first_good["answer"]
    assert m["overall"] == pytest.approx(good["overall"] - (100.0 / len(ann) if was_right else 0.0), abs=1e-3)
    # a checkpoint of another architecture
    other = tmp_path / "other"
    shutil.copytree(out, other)
    info = json.loads((other / "model.json").read_text())
    info["model_config"]["dim"] = 48
    (other / "model.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="does not match the model architecture"):
        load_trained(other)
    with pytest.raises(DataError, match="not an AVQA checkpoint"):
        load_trained(avqa_dir)
    # a missing data root / malformed annotation JSON
    with pytest.raises(DataError, match="not found"):
        train(tiny_config(), tmp_path / "nowhere", tmp_path / "o1")
    broken = make_avqa_dir(tmp_path / "broken", n_videos=15, seed=3)
    (broken / "annotations/avqa-val.json").write_text('[{"video_id": ')
    with pytest.raises(DataError, match="avqa-val.json.*malformed JSON"):
        train(tiny_config(), broken, tmp_path / "o2")


def test_bad_feature_file_raises_or_is_skipped_and_counted(tmp_path):
    data = make_avqa_dir(tmp_path / "d", n_videos=15, seed=1)
    np.save(data / "features/visual/00000000.npy", np.zeros((6, 8), np.float32))  # wrong shape
    with pytest.raises(DataError, match="00000000.npy"):
        train(tiny_config(model="blind", epochs=1), data, tmp_path / "o1")
    m = train(tiny_config(model="blind", epochs=1, skip_bad=True), data, tmp_path / "o2")
    assert m["skipped"]["train_features"] == 4  # the 4 questions of that video
    assert json.loads((tmp_path / "o2/metrics.json").read_text())["skipped"]["train_features"] == 4


def test_multiple_choice_training_on_avqa_yang_format(tmp_path):
    from sasrnet.data import data_paths

    rng = np.random.default_rng(0)
    (tmp_path / "features/audio").mkdir(parents=True)
    (tmp_path / "features/visual").mkdir(parents=True)
    splits: dict[str, list] = {"train": [], "test": []}
    for v in range(12):
        name = f"clip{v}"
        np.save(tmp_path / f"features/audio/{name}.npy", rng.normal(size=(4, 128)).astype(np.float32))
        np.save(tmp_path / f"features/visual/{name}.npy", rng.normal(size=(4, 8, 2, 2)).astype(np.float32))
        splits["train" if v < 8 else "test"].append({
            "id": v, "video_name": name, "video_id": v, "question_text": "What makes the sound?",
            "multi_choice": ["dog", "car", "piano", "rain"], "answer": int(v % 4), "question_type": "Come From",
        })
    for k, qs in splits.items():
        (tmp_path / f"{k}.json").write_text(json.dumps(qs))
    paths = data_paths(train_ann=tmp_path / "train.json", test_ann=tmp_path / "test.json",
                       features=tmp_path / "features")
    m = train(tiny_config(model="sasrnet", multiple_choice=True, batch_size=4, n_segments=4), paths, tmp_path / "run")
    assert m["test"]["n_questions"] == 4 and m["test"]["Come From"] is not None
    e = evaluate(tmp_path / "run", paths, tmp_path / "eval")
    assert e["overall"] == m["test"]["overall"]


def test_init_from_loads_shared_weights_and_never_ignores_a_missing_file(trained, avqa_dir, tmp_path):
    from mmcore.io import load_safetensors

    out, _ = trained
    with pytest.raises(DataError, match="not found"):
        train(tiny_config(model="avst", epochs=1, init_from=str(tmp_path / "missing.safetensors")), avqa_dir,
              tmp_path / "a")
    # start AVST from the SaSR-Net run: every AVST parameter has a same-named SaSR-Net counterpart
    m = train(tiny_config(model="avst", epochs=1, init_from=str(out / "model.safetensors")), avqa_dir,
              tmp_path / "b", max_steps=0)
    assert m["interrupted"]
    src, dst = load_safetensors(out / "model.safetensors"), load_safetensors(tmp_path / "b/checkpoint/model.safetensors")
    assert all(np.array_equal(src[k].numpy(), v.numpy()) for k, v in dst.items())


def test_answer_prior_init_sets_the_bias_to_log_training_frequencies(avqa_dir, tmp_path):
    import torch
    from mmcore.io import load_safetensors

    m = train(tiny_config(model="blind", epochs=1, answer_bias_init="prior"), avqa_dir, tmp_path / "p", max_steps=0)
    assert m["interrupted"]
    bias = load_safetensors(tmp_path / "p/checkpoint/model.safetensors")["answer.bias"]
    av = json.loads((tmp_path / "p/answer_vocab.json").read_text())
    tokens = av["tokens"] if isinstance(av, dict) else av
    answers = [q["anser"] for q in json.loads((avqa_dir / "annotations/avqa-train.json").read_text())]
    freq = torch.tensor([answers.count(t) / len(answers) for t in tokens])
    assert torch.allclose(bias, freq.log(), atol=1e-6)  # softmax(bias) = the training answer frequencies
    with pytest.raises(MMError, match="answer_bias_init"):
        train(tiny_config(model="blind", epochs=1, answer_bias_init="uniform"), avqa_dir, tmp_path / "q")


def test_grounding_pretraining_learns_the_match_and_feeds_init_from(tmp_path):
    """The match loss falls (on 32 videos the head learns to tell a video's own frames from another's), and
    the file holds only the grounding weights, which init_from loads into SaSR-Net."""
    import torch
    from mmcore.io import load_safetensors
    from sasrnet.config import GroundingConfig
    from sasrnet.recipes.grounding import pretrain_grounding

    data = make_avqa_dir(tmp_path / "d", n_videos=48, c=4, hw=2)
    for f in (data / "features/audio").glob("*.npy"):  # the frames carry the audio's cue
        a = np.load(f)
        v = np.random.default_rng(int(f.stem)).normal(size=(a.shape[0], 4, 2, 2)).astype(np.float32) * 0.3
        v[:, int(a[0].argmax()) % 3] += 2.0
        np.save(data / "features/visual" / f.name, v)
    cfg = GroundingConfig(size="cpu-tiny", epochs=60, batch_size=8, lr=3e-3, step_size=1000, cache_features=True)
    m = pretrain_grounding(cfg, data, tmp_path / "g")
    assert m["train_videos"] == 32 and m["steps"] == 240
    losses = [h["train_match_loss"] for h in m["history"]]
    assert losses[0] > 0.65 and sum(losses[-10:]) / 10 < 0.55, losses  # ln 2 = 0.693: chance
    assert 0 <= m["val_match_accuracy"] <= 100
    w = load_safetensors(tmp_path / "g/model.safetensors")
    assert {k.split(".")[0] for k in w} == {"audio", "audio_mean", "audio_std", "visual_mean", "visual_std",
                                             "visual_proj", "ground", "match"}
    r = train(tiny_config(model="sasrnet", epochs=1, init_from=str(tmp_path / "g/model.safetensors")), data,
              tmp_path / "s", max_steps=0)
    assert r["interrupted"]
    s = load_safetensors(tmp_path / "s/checkpoint/model.safetensors")
    assert all(torch.equal(s[k], v) for k, v in w.items())


def test_worker_count_does_not_change_a_run_with_dropout(avqa_dir, tmp_path):
    # Batches are built in DataLoader workers from seeded plans; the loader must not draw from the global RNG
    # either, or the dropout masks after it (and so the run) would depend on the worker count.
    runs = [train(tiny_config(model="sasrnet", arch={"dropout": 0.3}, epochs=1, num_workers=w), avqa_dir,
                  tmp_path / f"w{w}") for w in (0, 2)]
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / f"w{w}" / "log.jsonl").read_text().splitlines())
               if "loss" in r] for w in (0, 2)]
    assert losses[0] and losses[0] == losses[1]
    assert _scores(runs[0]) == _scores(runs[1])
