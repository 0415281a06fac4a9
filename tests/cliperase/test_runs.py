"""Every method runs end to end on a tiny model and writes its files; resume and determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from cliperase.recipes.runner import compare_methods, evaluate_model, run_unlearning
from cliperase_testutil import tiny_config
from mmcore.encoders.clip import load_clip
from mmcore.errors import MMError
from mmcore.io import load_safetensors

RUN_KEYS = {"forget_accuracy", "forget_train_accuracy", "retain_accuracy", "test_accuracy", "per_class_accuracy",
            "retrieval", "forget_i2t_R@1", "forget_t2i_R@5", "retain_t2i_R@10", "mia", "mia_efficacy",
            "mia_informative", "mia_attack_accuracy", "zero_shot_templates"}


@pytest.fixture(scope="module")
def cliperase_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    return out, run_unlearning(tiny_config(), out)


def test_run_writes_files_and_metrics(cliperase_run):
    out, m = cliperase_run
    for f in ("metrics.json", "model.safetensors", "clip_config.json", "config.json", "report.md", "log.jsonl"):
        assert (out / f).is_file(), f
    assert not (out / "checkpoint").exists()  # removed after a complete run
    saved = json.loads((out / "metrics.json").read_text())
    assert RUN_KEYS <= set(saved["before"]) and RUN_KEYS <= set(saved["after"])
    assert saved["sizes"]["forget"] == 8 and saved["sizes"]["retain"] == 72 and saved["sizes"]["test"] == 40
    mia = saved["after"]["mia"]
    assert mia["features"] == ["loss", "confidence", "entropy"] and 0 <= mia["efficacy"] <= 100
    assert saved["after"]["mia_attack_accuracy"] == mia["attack_balanced_accuracy"]
    assert saved["after"]["mia_informative"] is (mia["attack_balanced_accuracy"] >= 55.0)
    assert saved["after"]["mia_efficacy"] == (mia["efficacy"] if saved["after"]["mia_informative"] else None)
    assert saved["wall_seconds"] > 0 and saved["relearn"]["max_steps"] == 4
    assert set(saved["after"]["per_class_accuracy"]["forget"]) == {"circle"}  # held-out forget images
    assert set(saved["after"]["per_class_accuracy"]["forget_train"]) == {"circle"}  # D_f
    assert saved["after"]["zero_shot_n"]["forget"] == saved["sizes"]["test_forget"]
    assert saved["after"]["zero_shot_n"]["forget_train"] == saved["sizes"]["forget"]
    assert saved["templates"]["evaluation"] == ["a photo of a {}"] and saved["templates"]["unlearning"] == ["a {}"]
    assert saved["after"]["zero_shot_templates"] == ["a photo of a {}"]
    gallery = saved["after"]["retrieval"]["gallery"]
    assert gallery["forget_part"] == gallery["retain_part"] == "held-out"
    assert gallery["n_images"] == saved["sizes"]["test_forget"] + min(saved["sizes"]["test_retain"], 16)
    rl = saved["relearn"]
    assert rl["curve"][0]["step"] == 0 and rl["probe"]["from"] == "held-out" and (out / "relearn.png").stat().st_size
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "cliperase" and cfg["lambda_forget"] == 3.0
    assert "| forget_accuracy |" in (out / "report.md").read_text()
    # the unlearned model loads with mmcore and differs from the original
    bundle = load_clip(out)
    orig = load_clip("mm-micro-clip")
    assert bundle.model_name == orig.model_name
    logs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["step"] == 4 and {"fm", "rm", "cm"} <= set(logs[-1])


def test_eval_matches_run_after(cliperase_run, tmp_path):
    out, m = cliperase_run
    ev = evaluate_model(tiny_config(model=str(out)), tmp_path / "ev")
    assert ev["metrics"]["forget_accuracy"] == pytest.approx(m["after"]["forget_accuracy"])
    assert ev["metrics"]["retain_i2t_R@1"] == pytest.approx(m["after"]["retain_i2t_R@1"])
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_refuses_non_empty_out_dir(cliperase_run):
    out, _ = cliperase_run
    with pytest.raises(MMError, match="--overwrite"):
        run_unlearning(tiny_config(), out)


@pytest.mark.slow
def test_compare_runs_every_method(tmp_path):
    methods = ["cliperase", "ga", "graddiff", "ft", "multidelete", "cliperase-fm"]
    comp = compare_methods(methods, tiny_config(relearn=tiny_config().relearn.__class__(enabled=False)), tmp_path / "c")
    names = [r["method"] for r in comp["rows"]]
    assert names == methods + ["retrain"]
    for n in names:
        m = json.loads((tmp_path / "c" / n / "metrics.json").read_text())
        assert {"forget_accuracy", "retain_accuracy", "test_accuracy"} <= set(m["after"])
        assert (tmp_path / "c" / n / "model.safetensors").is_file()
    for f in ("comparison.json", "comparison.md", "comparison.png"):
        assert (tmp_path / "c" / f).stat().st_size > 0
    retrain = next(r for r in comp["rows"] if r["method"] == "retrain")
    assert retrain["time_ratio_to_retrain"] == pytest.approx(1.0)
    assert all(r["time_ratio_to_retrain"] > 0 for r in comp["rows"])
    # the same "before" for every method: identical data and seeds
    befores = {json.dumps(json.loads((tmp_path / "c" / n / "metrics.json").read_text())["before"]["retain_accuracy"])
               for n in names}
    assert len(befores) == 1


def test_unlearning_is_deterministic(tmp_path):
    from cliperase.forget_sets import split_forget_retain
    from cliperase.methods import unlearn
    from cliperase.recipes.runner import load_data
    from mmcore.distributed import AcceleratorConfig, build_accelerator, seed_everything

    cfg = tiny_config(steps=3)
    acc = build_accelerator(AcceleratorConfig(log_with="none"))
    weights = []
    for _ in range(2):
        seed_everything(0)
        bundle = load_clip("mm-micro-clip")
        train, test = load_data(cfg, bundle.image_size)
        res = unlearn(bundle, split_forget_retain(train, test, cfg.forget), cfg, acc)
        weights.append({k: v.clone() for k, v in res.model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    orig = load_clip("mm-micro-clip").model.state_dict()
    assert not torch.equal(orig["visual.conv1.weight"], weights[0]["visual.conv1.weight"])


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import mmcore.checkpoint as ck
    from cliperase_testutil import tiny_config
    from cliperase.recipes.runner import run_unlearning
    real = ck.save_training_state
    def save_then_die(*a, **k):
        real(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)  # a hard kill right after the first checkpoint
    ck.save_training_state = save_then_die
    run_unlearning(tiny_config(steps=4, checkpoint_every=2), {out!r})
""")


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, cliperase_run):
    ref_out, ref = cliperase_run  # same config: steps=4, checkpoint_every=2
    out = tmp_path / "killed"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          # the same thread count as the reference run: float reductions then match bit for bit
                          env={**os.environ, "MM_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert proc.returncode == -9, proc.stderr[-2000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and not (out / "metrics.json").exists()
    with pytest.raises(MMError):
        run_unlearning(tiny_config(), out)  # no silent overwrite of the interrupted run
    m = run_unlearning(tiny_config(), out, resume=True)
    for k in ("forget_accuracy", "retain_accuracy", "test_accuracy", "retain_i2t_R@1", "mia_efficacy"):
        assert m["after"][k] == pytest.approx(ref["after"][k], abs=1e-9), k
    a, b = load_safetensors(out / "model.safetensors"), load_safetensors(ref_out / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
