"""`mm avqa train | eval | predict` end to end on a tiny synthetic world (real mp4 + AAC files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmcore.presets import preset_path
from typer.testing import CliRunner

runner = CliRunner()


def _app():
    from mm_cli.avqa_cmds import app

    return app


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    import torch
    from mmcore.avqa.feature_extraction import extract_features
    from mmcore.avqa.synth import synthesize

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("world")
    synthesize(d, 10, 0, progress=False)
    extract_features(d / "videos", d / "features", progress=False)
    return d


def test_model_commands_do_not_import_torch_at_module_level():
    code = "import sys, mm_cli.avqa_model_cmds; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_train_eval_predict(world, tmp_path):
    app = _app()
    run = tmp_path / "avst"
    args = ["train", "--model", "avst", "--data", str(world), "--out", str(run), "--size", "cpu-tiny",
            "--epochs", "1", "--seed", "3", "--set", "batch_size=4", "--set", "checkpoint_every_steps=5"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["model"], cfg["size"], cfg["batch_size"], cfg["seed"]) == ("avst", "cpu-tiny", 4, 3)
    assert "overall" in json.loads((run / "metrics.json").read_text())["test"]
    assert "AV-Temp" in r.output  # the per-type table

    # an existing run is never overwritten silently; --resume of a finished run changes nothing
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "not empty" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.output
    # typo in a config key: one clear line
    r = runner.invoke(app, [*args[:-4], "--out", str(tmp_path / "x"), "--set", "arch.dimm=8"])
    assert r.exit_code == 2 and "dimm" in r.output

    ev = tmp_path / "eval"
    r = runner.invoke(app, ["eval", "--checkpoint", str(run), "--data", str(world), "--out", str(ev)])
    assert r.exit_code == 0, r.output
    m = json.loads((ev / "metrics.json").read_text())
    for k in ("A-Count", "A-Comp", "A-Avg", "V-Count", "V-Loc", "V-Avg", "AV-Ext", "AV-Count", "AV-Loc",
              "AV-Comp", "AV-Temp", "AV-Avg", "overall"):
        assert k in m
    assert (ev / "accuracy.png").is_file()

    video = sorted((world / "videos").glob("*.mp4"))[0]
    r = runner.invoke(app, ["predict", "--checkpoint", str(run), "--video", str(video), "--question",
                            "How many instruments are sounding in the video?", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    vocab = json.loads((run / "answer_vocab.json").read_text())["tokens"]
    assert res["answer"] in vocab and res["answer"] == res["top"][0]["answer"]
    assert len(res["top"]) == min(5, len(vocab)) and sum(t["prob"] for t in res["top"]) <= 1 + 1e-6
    assert len(res["temporal_attention"]["visual"]) == 10
    assert abs(sum(res["temporal_attention"]["audio"]) - 1) < 1e-4

    # bad inputs: one line naming the file, exit code 2
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(video.read_bytes()[:2000])
    r = runner.invoke(app, ["predict", "--checkpoint", str(run), "--video", str(bad_video), "--question", "Is it?"])
    assert r.exit_code == 2 and "broken.mp4" in r.output, r.output
    ann = json.loads((world / "annotations/avqa-test.json").read_text())
    ann[0]["anser"] = "seventeen"
    (tmp_path / "unseen.json").write_text(json.dumps(ann))
    r = runner.invoke(app, ["eval", "--checkpoint", str(run), "--data", str(world), "--out", str(tmp_path / "e2"),
                            "--ann", str(tmp_path / "unseen.json")])
    # an answer never seen in training is answered wrongly and counted, not dropped or fatal
    assert r.exit_code == 0, r.output
    assert "counted as wrong" in r.output
    assert json.loads((tmp_path / "e2/metrics.json").read_text())["unseen_answers"] == 1
    r = runner.invoke(app, ["eval", "--checkpoint", str(world), "--data", str(world), "--out", str(tmp_path / "e3")])
    assert r.exit_code == 2 and "not an AVQA checkpoint" in r.output


def test_pretrain_grounding_then_train_from_it(world, tmp_path):
    app = _app()
    pre = tmp_path / "pre"
    r = runner.invoke(app, ["pretrain-grounding", "--data", str(world), "--out", str(pre), "--size", "cpu-tiny",
                            "--epochs", "2", "--set", "batch_size=2"])
    assert r.exit_code == 0, r.output
    assert (pre / "model.safetensors").is_file() and "match accuracy" in r.output
    assert json.loads((pre / "config.json").read_text())["batch_size"] == 2
    r = runner.invoke(app, ["train", "--model", "sasrnet", "--data", str(world), "--out", str(tmp_path / "s"),
                            "--size", "cpu-tiny", "--epochs", "1", "--set", "batch_size=4",
                            "--set", f"init_from={pre / 'model.safetensors'}"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pretrain-grounding", "--data", str(world), "--out", str(pre), "--size", "cpu-tiny"])
    assert r.exit_code == 2 and "not empty" in r.output  # never overwritten silently


def test_import_official_then_eval_on_features_in_the_st_avqa_layout(tmp_path):
    """A public SaSR_Net state dict (random weights in the public layout, vocabulary sizes of the given
    training annotations) becomes a model dir that `mm avqa eval` reads; its predictions are the argmax of
    what the public forward returns (official_outputs), question for question."""
    import os

    import numpy as np
    import torch
    from sasrnet.official import load_official, official_outputs, public_vocabularies

    real = Path(os.environ["MM_MUSIC_AVQA_DIR"])
    train_ann = real / "avqa-val.json"  # stands in for avqa-train.json: the same format
    qv, av = public_vocabularies(train_ann)
    shapes = json.loads((Path(__file__).parents[1] / "sasrnet/data/public_sasr_net_state_dict_shapes.json").read_text())
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.05 if s else torch.tensor(0) for k, s in shapes["state_dict"].items()}
    sd["question_encoder.word2vec.weight"] = torch.randn(len(qv), 512, generator=g) * 0.05
    sd["fc_ans.weight"], sd["fc_ans.bias"] = torch.randn(len(av), 512, generator=g) * 0.05, torch.zeros(len(av))
    ckpt = tmp_path / "sasr_net.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, ckpt)  # as saved from nn.DataParallel

    qs = json.loads(train_ann.read_text())
    vids = list(dict.fromkeys(q["video_id"] for q in qs))[:2]
    test = [q for q in qs if q["video_id"] in vids]
    (tmp_path / "test.json").write_text(json.dumps(test))
    feats = tmp_path / "features"
    for sub in ("audio", "visual"):
        (feats / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for v in vids:  # the ST-AVQA layout: VGGish [60, 128], ResNet-18 maps [60, 512, 14, 14] (subsampled to 10)
        np.save(feats / "audio" / f"{v}.npy", rng.standard_normal((60, 128)).astype(np.float32))
        np.save(feats / "visual" / f"{v}.npy", np.abs(rng.standard_normal((60, 512, 14, 14))).astype(np.float16))

    app = _app()
    model_dir = tmp_path / "imported"
    r = runner.invoke(app, ["import-official", str(ckpt), "--train-ann", str(train_ann), "--out", str(model_dir)])
    assert r.exit_code == 0, r.output
    assert {"model.safetensors", "model.json", "question_vocab.json", "answer_vocab.json"} <= {p.name for p in model_dir.iterdir()}
    r = runner.invoke(app, ["eval", "--checkpoint", str(model_dir), "--features", str(feats), "--ann",
                            str(tmp_path / "test.json"), "--out", str(tmp_path / "eval"), "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    from mmcore.avqa.music_avqa import load_music_avqa

    loaded = load_music_avqa(tmp_path / "test.json")
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert metrics["n_questions"] == len(loaded) > 0 and metrics["model"] == "sasrnet"
    preds = [json.loads(x) for x in (tmp_path / "eval/predictions.jsonl").read_text().splitlines()]
    model = load_official(ckpt)
    for q, pred in zip(loaded, preds, strict=True):
        assert pred["question_id"] == q.question_id
        a = torch.from_numpy(np.load(feats / "audio" / f"{q.video_id}.npy")[::6].copy())[None]
        v = torch.from_numpy(np.load(feats / "visual" / f"{q.video_id}.npy")[::6].astype(np.float32))[None]
        with torch.no_grad():
            out = official_outputs(model, a, v, v, torch.tensor([qv.encode(q.words, 14)]))
        assert av.tokens[int(out["qa"].argmax())] == pred["prediction"]

    # a checkpoint trained on other annotations: the vocabulary sizes disagree, named in the error
    other = tmp_path / "other.json"
    other.write_text(json.dumps(qs[:50]))
    r = runner.invoke(app, ["import-official", str(ckpt), "--train-ann", str(other), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not the annotations it was trained on" in r.output


def test_train_preset_selects_the_committed_recipe(world, tmp_path):
    import yaml

    app = _app()
    r = runner.invoke(app, ["train", "--help"])
    assert "--preset" in r.output and "cpu-benchmark" in r.output and "paper" in r.output
    out = tmp_path / "avst"
    r = runner.invoke(app, ["train", "--model", "avst", "--preset", "cpu-benchmark", "--data", str(world), "--out", str(out),
                            "--size", "cpu-tiny", "--epochs", "1", "--set", "batch_size=8", "--set", "warmup_steps=2"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    recipe = yaml.safe_load((preset_path("sasrnet", "avqa", "avst-cpu-benchmark")).read_text())
    for k in ("lr", "step_size", "gamma", "grad_clip", "questions_per_video", "standardize_inputs"):
        assert cfg[k] == recipe[k], k
    # explicit options and --set win over the preset
    assert (cfg["epochs"], cfg["batch_size"], cfg["size"], cfg["warmup_steps"]) == (1, 8, "cpu-tiny", 2)
    # defaults < --preset < --config FILE: the file's keys win over the preset's, the rest stays the preset's
    (tmp_path / "x.yaml").write_text("lr: 0.5\n")
    r = runner.invoke(app, ["train", "--preset", "cpu-benchmark", "--config", str(tmp_path / "x.yaml"),
                            "--data", str(world), "--out", str(tmp_path / "o2"), "--print-config"])
    assert r.exit_code == 0, r.output
    layered = json.loads(r.output)
    sasr_recipe = yaml.safe_load((preset_path("sasrnet", "avqa", "sasrnet-cpu-benchmark")).read_text())
    assert layered["lr"] == 0.5 and layered["step_size"] == sasr_recipe["step_size"] != 16
    r = runner.invoke(app, ["train", "--preset", "fast", "--data", str(world), "--out", str(tmp_path / "o3")])
    assert r.exit_code == 2 and "cpu-benchmark" in r.output
