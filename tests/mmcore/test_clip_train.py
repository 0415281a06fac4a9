"""mmcore.clip_train: multi-positive loss, exact resume; mmcore.recipes.clip_pretrain: the pretrain recipe's outputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from mmcore.clip_train import ClipTrainConfig, clip_loss, train_clip
from mmcore.data.shapes import make_shapes
from mmcore.encoders.clip import create_clip, load_clip
from mmcore.errors import MMError
from mmcore.recipes.clip_eval import evaluate_clip
from mmcore.recipes.clip_pretrain import pretrain
from mmcore.run import TrainingRun


def _feats(n, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1), F.normalize(torch.randn(n, d, generator=g), dim=-1)


def test_clip_loss_distinct_texts_equals_standard_infonce():
    img, txt = _feats(6)
    texts = [f"caption {i}" for i in range(6)]
    standard = clip_loss(img, txt, torch.tensor(10.0))
    logits = 10.0 * img @ txt.T
    by_hand = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
    assert torch.allclose(standard, by_hand)
    assert torch.allclose(clip_loss(img, txt, torch.tensor(10.0), texts), standard)


def test_clip_loss_identical_captions_are_positives():
    img, txt = _feats(4)
    texts = ["a red circle", "a blue star", "a red circle", "a green cross"]
    loss = clip_loss(img, txt, torch.tensor(5.0), texts)
    logits = 5.0 * img @ txt.T
    target = torch.tensor([[0.5, 0, 0.5, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1.0]])
    expected = (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.T.log_softmax(1)).sum(1).mean()) / 2
    assert torch.allclose(loss, expected)
    # duplicates no longer act as negatives: swapping the two duplicate texts' features changes nothing
    perm = torch.tensor([2, 1, 0, 3])
    assert torch.allclose(clip_loss(img, txt[perm], torch.tensor(5.0), texts), loss, atol=1e-6)
    # perfectly aligned features with a large scale give a loss near the multi-positive minimum (log 2 for the pair)
    aligned = F.normalize(torch.eye(4)[[0, 1, 0, 3]] + 0.0, dim=-1)
    low = clip_loss(aligned, aligned, torch.tensor(100.0), texts)
    assert abs(low.item() - 0.5 * math.log(2)) < 1e-3


def _records(n=64, seed=0):
    return make_shapes(n, seed, image_size=16).records


def _cfg(**kw):
    base = dict(model="mm-micro-clip", steps=6, batch_size=16, lr=1e-3, warmup=2, seed=3, checkpoint_every=3,
                eval_every=0, log_every=1)
    base.update(kw)
    return ClipTrainConfig(**base)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_is_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    recs = _records()
    torch.manual_seed(0)
    straight = train_clip(create_clip("mm-micro-clip"), recs, _cfg(), run=TrainingRun(tmp_path / "a"))

    def stop_at_3(model, step):
        if step == 3:
            raise _Interrupt
        return {}

    torch.manual_seed(0)
    with pytest.raises(_Interrupt):
        train_clip(create_clip("mm-micro-clip"), recs, _cfg(eval_every=3), TrainingRun(tmp_path / "b"), on_eval=stop_at_3)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    resumed = train_clip(create_clip("mm-micro-clip"), recs, _cfg(), TrainingRun(tmp_path / "b", resume=True))

    sd_a, sd_b = straight.state_dict(), resumed.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    init = create_clip("mm-micro-clip").model.state_dict()
    assert not torch.equal(init["visual.conv1.weight"], sd_a["visual.conv1.weight"])  # it did train
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and all(math.isfinite(r["loss"]) for r in log)
    assert log[-1]["lr"] < log[2]["lr"]  # cosine decay after warm-up


def test_train_clip_rejects_tiny_data():
    with pytest.raises(MMError, match="fewer than one batch"):
        train_clip(create_clip("mm-micro-clip"), _records(8), _cfg(batch_size=16))


def test_pretrain_writes_outputs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    cfg = _cfg(n_train=96, n_test=40, steps=4, batch_size=32, eval_every=2, checkpoint_every=2)
    m = pretrain(cfg, tmp_path)
    for f in ("model.safetensors", "clip_config.json", "config.json", "metrics.json", "log.jsonl"):
        assert (tmp_path / f).is_file(), f
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["zero_shot_accuracy"] <= 1.0 and metrics["wall_seconds"] > 0
    assert metrics["zero_shot_accuracy"] == m["zero_shot_accuracy"] and metrics["n_test"] == 40
    assert json.loads((tmp_path / "config.json").read_text())["model"] == "mm-micro-clip"
    evals = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [0, 2, 4]
    # the saved model reproduces the reported accuracy
    again = evaluate_clip(tmp_path, None, "shapes", split="test", n=40, seed=cfg.seed, templates=cfg.templates)
    assert again["zero_shot_accuracy"] == pytest.approx(metrics["zero_shot_accuracy"])
    assert "i2t_R@1" in again and load_clip(tmp_path).model_name == "mm-micro-clip"
    with pytest.raises(MMError, match="not empty"):
        pretrain(cfg, tmp_path)
    resumed = pretrain(cfg, tmp_path, resume=True)  # already complete: nothing left to train
    assert resumed["zero_shot_accuracy"] == pytest.approx(metrics["zero_shot_accuracy"])


def _two_process_worker(out: str) -> None:
    from accelerate.state import AcceleratorState
    from mmcore.checkpoint import save_model
    from mmcore.distributed import is_main_process

    AcceleratorState._reset_state(True)  # never reuse a single-process accelerate state
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = train_clip(create_clip("mm-micro-clip"), _records(), _cfg(checkpoint_every=0), run=TrainingRun(out))
    if is_main_process():
        save_model(model, f"{out}/model.safetensors")


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path, monkeypatch):
    from mmcore.distributed import launch_cpu_processes

    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    two = tmp_path / "two"
    launch_cpu_processes(_two_process_worker, (str(two),), num_processes=2)
    from mmcore.io import load_safetensors

    torch.manual_seed(0)
    single = train_clip(create_clip("mm-micro-clip"), _records(), _cfg(checkpoint_every=0), TrainingRun(tmp_path / "one"))
    got = load_safetensors(two / "model.safetensors")
    ref = single.state_dict()
    init = create_clip("mm-micro-clip").model.state_dict()
    # Same global batches, augmentation, gathered features and averaged gradients: equal up to float
    # summation order, which Adam's m/sqrt(v) can amplify in near-zero gradient entries to a fraction
    # of one step (lr per element).
    diff = max((got[k] - ref[k]).abs().max().item() for k in got)
    moved = max((ref[k] - init[k]).abs().max().item() for k in got)
    assert diff < 0.5 * _cfg().lr and moved > 10 * diff
    one_log = (tmp_path / "one" / "log.jsonl").read_text().splitlines()
    two_log = (two / "log.jsonl").read_text().splitlines()
    assert len(one_log) == len(two_log)  # only the main process logs
    for a, b in zip(one_log, two_log, strict=True):
        assert json.loads(a)["loss"] == pytest.approx(json.loads(b)["loss"], abs=1e-4)
