"""Issue 19, "a new user's first hour": each command run the way a newcomer would, with their mistakes.

- untrained weights only on purpose: an architecture name (or no --model and no cached tiny CLIP) is an
  error unless --random-init, which warns and marks metrics.json; no --model uses the tiny CLIP `mm demo` cached;
- every hint of the "output directory is not empty" error names only options the command has;
- a mistyped config key names its file and line (or the --set item), its full dotted name and the closest key;
- a failed run leaves no empty output directory behind (one that existed before stays);
- a misspelt dataset or a wrong model path is reported before torch is imported.

Everything is tiny: a micro CLIP saved once, random AVQA features, a 1-epoch question-only AVQA model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()

UNLEARN_TINY = ["--steps", "1", "--set", "n_train=40", "--set", "n_test=20", "--set", "batch_size=8",
                "--set", "forget_batch_size=4", "--set", "retrieval_max_pairs=16", "--set", "mia_max_samples=16",
                "--set", "relearn.enabled=false", "--set", "checkpoint_every=0"]
CLIP_TINY = ["--set", "model=mm-micro-clip", "--set", "n_train=48", "--set", "n_test=20", "--set", "steps=1",
             "--set", "batch_size=16", "--set", "eval_every=0", "--set", "warmup=1"]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("MM_DEBUG", "0")  # `mm --debug` elsewhere sets it in os.environ
    monkeypatch.setenv("MM_CACHE", str(tmp_path / "empty-cache"))  # no cached tiny CLIP unless a test makes one


def _invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> dict[str, Path]:
    """A saved micro CLIP (also as a `mm demo` cache), a video folder, AVQA features and a trained blind model."""
    import torch
    from mmcore.encoders.clip import create_clip, save_clip
    from mmcore.io import write_json
    from mmcore.media import write_video

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("first_hour")
    torch.manual_seed(0)
    b = create_clip("mm-micro-clip")
    save_clip(b.model, root / "clip", b.model_name, b.model_cfg)
    cached = root / "cache" / "tiny-clip-seed0"  # what `mm demo` leaves in $MM_CACHE
    save_clip(b.model, cached, b.model_name, b.model_cfg)
    write_json(cached / "metrics.json", {"zero_shot_accuracy": 0.25})
    write_video(root / "videos" / "v0.mp4", np.zeros((4, 32, 32, 3), np.uint8), 4, audio=np.zeros(16000, np.float32))

    rng = np.random.default_rng(0)
    avqa = root / "avqa"
    for sub in ("features/audio", "features/visual", "annotations"):
        (avqa / sub).mkdir(parents=True)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    for v in range(6):
        vid = f"{v:08d}"
        np.save(avqa / "features/audio" / f"{vid}.npy", rng.normal(size=(4, 128)).astype(np.float32))
        np.save(avqa / "features/visual" / f"{vid}.npy", rng.normal(size=(4, 8, 2, 2)).astype(np.float32))
        split = "train" if v < 4 else ("val" if v == 4 else "test")
        splits[split].append({"video_id": vid, "question_id": v, "type": '["Audio", "Counting"]',
                              "question_content": "How many instruments are sounding in the video?",
                              "templ_values": "[]", "question_deleted": 0, "anser": ["one", "two"][v % 2]})
    for name, qs in splits.items():
        (avqa / "annotations" / f"avqa-{name}.json").write_text(json.dumps(qs))
    r = _invoke("avqa", "train", "--data", avqa, "--out", root / "avqa_run", "--model", "blind", "--size", "cpu-tiny",
                "--epochs", "1", "--batch-size", "4")
    assert r.exit_code == 0, r.output
    return {"root": root, "clip": root / "clip", "cache": root / "cache", "videos": root / "videos", "avqa": avqa,
            "avqa_run": root / "avqa_run"}


# ---------------------------------------------------------------- 1. random weights only on purpose


def test_unlearn_without_model_and_without_cache_says_how_to_get_one(tmp_path):
    out = tmp_path / "runs" / "forget"
    r = _invoke("unlearn", "run", "--forget-classes", "circle", "--steps", "2", "--out", out)
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert "no --model" in line and "mm clip pretrain --out DIR" in line and "--model DIR" in line
    assert "--random-init" in line
    assert not out.exists() and not out.parent.exists()


@pytest.mark.parametrize("group", ["clip", "unlearn"])
def test_an_architecture_name_alone_is_refused(group, tmp_path):
    args = ["clip", "eval"] if group == "clip" else ["unlearn", "run", "--forget-classes", "circle"]
    r = _invoke(*args, "--model", "mm-tiny-clip", "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert "'mm-tiny-clip'" in line and "random" in line and "--random-init" in line and "--pretrained" in line
    # a typo gets the project's model name suggested
    r = _invoke(*args, "--model", "mm-tiny-clp", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "did you mean 'mm-tiny-clip'" in _error_line(r.output)
    assert not (tmp_path / "o").exists()


def test_random_init_is_allowed_only_for_a_name(w, tmp_path):
    r = _invoke("clip", "eval", "--model", w["clip"], "--random-init", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--random-init" in _error_line(r.output) and "trained weights" in r.output


def test_clip_eval_random_init_warns_and_marks_metrics(tmp_path):
    out = tmp_path / "e"
    r = _invoke("clip", "eval", "--model", "mm-micro-clip", "--random-init", "--n", "20", "--out", out)
    assert r.exit_code == 0, r.output
    assert "warning: random weights" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["random_init"] is True and "random weights" in m["warning"]


def test_unlearn_random_init_warns_and_marks_metrics_and_report(tmp_path):
    out = tmp_path / "u"
    r = _invoke("unlearn", "run", "--random-init", "--set", "model=mm-micro-clip", "--forget-classes", "circle",
                *UNLEARN_TINY, "--out", out)
    assert r.exit_code == 0, r.output
    assert "warning: random weights" in r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["random_init"] is True and "untrained" in m["warning"]
    assert "Warning: random weights" in (out / "report.md").read_text()


def test_no_model_uses_the_cached_tiny_clip(w, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_CACHE", str(w["cache"]))
    out = tmp_path / "e"
    r = _invoke("clip", "eval", "--n", "20", "--out", out)
    assert r.exit_code == 0, r.output
    cached = w["cache"] / "tiny-clip-seed0"
    assert "using the cached tiny CLIP" in r.output and "warning" not in r.output
    assert json.loads((out / "config.json").read_text())["model"] == str(cached)
    assert json.loads((out / "metrics.json").read_text())["random_init"] is False
    # unlearning too (the model is recorded in config.json and metrics.json)
    r = _invoke("unlearn", "run", "--forget-classes", "circle", *UNLEARN_TINY, "--out", tmp_path / "u")
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "u" / "metrics.json").read_text())
    assert m["model"] == str(cached) and m["random_init"] is False and "warning" not in m


# ---------------------------------------------------------------- 2. hints name only existing options

NON_EMPTY_OUT = {
    "clip pretrain": CLIP_TINY,
    "clip eval": ["--model", "{clip}", "--n", "10"],
    "unlearn run": ["--model", "{clip}", "--forget-classes", "circle", "--steps", "1"],
    "unlearn eval": ["--model", "{clip}", "--forget-classes", "circle"],
    "unlearn compare": ["--model", "{clip}", "--forget-classes", "circle", "--steps", "1"],
    "unlearn diffusion-eval": ["--original", "{clip}", "--unlearned", "{clip}", "--pipeline", "{root}/nowhere",
                               "--forget-prompts", "a circle"],
    "diffusion pretrain": ["--clip", "{clip}", "--preset", "test"],
    "diffusion eval": ["--original", "{clip}", "--unlearned", "{clip}", "--pipeline", "{root}/nowhere",
                       "--forget-prompts", "a circle"],
    "avqa synth": ["--videos", "2"],
    "avqa extract-features": ["--videos", "{videos}"],
    "avqa pretrain-grounding": ["--data", "{avqa}", "--size", "cpu-tiny"],
    "avqa train": ["--data", "{avqa}", "--model", "blind", "--size", "cpu-tiny"],
    "avqa eval": ["--checkpoint", "{avqa_run}", "--data", "{avqa}"],
}


def _help_options(command: list[str]) -> set[str]:
    r = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", r.output))


def _named_options(message: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", message))


@pytest.mark.parametrize("name", list(NON_EMPTY_OUT))
def test_non_empty_out_hint_names_only_options_of_the_command(w, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    args = [a.format(**{k: str(v) for k, v in w.items()}) for a in NON_EMPTY_OUT[name]]
    r = runner.invoke(app, [*name.split(), *args, "--out", str(out)])
    assert r.exit_code == 2, (r.output, r.exception)
    line = _error_line(r.output)
    assert "not empty" in line or "--overwrite" in line, line
    named = _named_options(line)
    assert "--overwrite" in named
    assert named <= _help_options(name.split()), f"`mm {name}` has no {named - _help_options(name.split())}: {line}"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_resume_is_suggested_exactly_where_it_exists(w, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("")
    for name, has_resume in (("clip eval", False), ("avqa synth", False), ("avqa eval", False),
                             ("unlearn run", True), ("avqa train", True)):
        args = [a.format(**{k: str(v) for k, v in w.items()}) for a in NON_EMPTY_OUT[name]]
        line = _error_line(runner.invoke(app, [*name.split(), *args, "--out", str(out)]).output)
        assert ("--resume" in line) == has_resume == ("--resume" in _help_options(name.split())), (name, line)


def test_clip_pretrain_data_hints_name_its_options(tmp_path):
    # no data root: "--data-root"; a missing image: "--skip-bad"; both are options of `mm clip pretrain` now
    r = _invoke("clip", "pretrain", *CLIP_TINY, "--dataset", "flickr30k", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "--data-root" in _error_line(r.output)
    assert _named_options(_error_line(r.output)) <= _help_options(["clip", "pretrain"])
    f = tmp_path / "f"
    (f / "flickr30k-images").mkdir(parents=True)
    images = [{"filename": "missing.jpg", "split": s, "sentences": [{"raw": "a photo"}]} for s in ("train", "test")]
    (f / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    r = _invoke("clip", "pretrain", *CLIP_TINY, "--dataset", "flickr30k", "--data-root", f, "--out", tmp_path / "b")
    assert r.exit_code == 2, r.output
    line = _error_line(r.output)
    assert "missing.jpg" in line and "--skip-bad" in line
    assert _named_options(line) <= _help_options(["clip", "pretrain"])


# ---------------------------------------------------------------- 3. mistyped config keys


def test_yaml_typo_names_file_line_and_closest_key(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("# my first run\nmodel: mm-micro-clip\nstepz: 3\n")
    r = _invoke("clip", "pretrain", "--config", cfg, "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert f"{cfg}:3" in line and "'stepz'" in line and "did you mean 'steps'" in line
    assert not (tmp_path / "o").exists()


def test_nested_toml_typo_keeps_the_dotted_name(tmp_path):
    cfg = tmp_path / "forget.toml"
    cfg.write_text('model = "mm-micro-clip"\n\n[forget]\nclases = ["circle"]\n')
    r = _invoke("unlearn", "run", "--config", cfg, "--random-init", "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert f"{cfg}:4" in line and "'forget.clases'" in line and "did you mean 'forget.classes'" in line


def test_set_typo_names_the_set_item(tmp_path):
    r = _invoke("unlearn", "run", "--forget-classes", "circle", "--random-init", "--set", "lamda_forget=2",
                "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert "--set lamda_forget=2" in line and "did you mean 'lambda_forget'" in line


def test_arch_typo_is_reported_like_any_other_key(w, tmp_path):
    base = ["avqa", "train", "--data", w["avqa"], "--model", "blind", "--size", "cpu-tiny"]
    r = _invoke(*base, "--set", "arch.dimm=8", "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert "--set arch.dimm=8" in line and "'arch.dimm'" in line and "did you mean 'arch.dim'" in line
    cfg = tmp_path / "avqa.yaml"
    cfg.write_text("epochs: 1\narch:\n  dim: 16\n  depht: 1\n")
    r = _invoke(*base, "--config", cfg, "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = _error_line(r.output)
    assert f"{cfg}:4" in line and "'arch.depht'" in line and "did you mean 'arch.depth'" in line
    r = _invoke("avqa", "pretrain-grounding", "--data", w["avqa"], "--size", "cpu-tiny", "--set", "arch.headz=2",
                "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--set arch.headz=2" in r.output and "'arch.heads'" in r.output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- 4. no empty output directory left behind


@pytest.mark.parametrize("group", ["clip", "unlearn"])
def test_failed_run_leaves_no_empty_out_dir(w, tmp_path, group):
    args = (["clip", "eval", "--model", w["clip"]] if group == "clip"
            else ["unlearn", "run", "--model", w["clip"], "--forget-keyword", "dog", "--steps", "1"])
    # a misspelt dataset name: reported before anything is created
    out = tmp_path / "new" / "out"
    r = _invoke(*args, "--dataset", "shapez", "--out", out)
    assert r.exit_code == 2 and "did you mean 'shapes'" in _error_line(r.output)
    assert not (tmp_path / "new").exists()
    # a dataset that fails after the output directory was created: the directory and its new parent go
    r = _invoke(*args, "--dataset", "flickr30k", "--data-root", tmp_path / "nowhere", "--out", out)
    assert r.exit_code == 2 and "nowhere" in _error_line(r.output)
    assert not (tmp_path / "new").exists()
    # a directory that existed before stays, empty or not
    out.mkdir(parents=True)
    r = _invoke(*args, "--dataset", "flickr30k", "--data-root", tmp_path / "nowhere", "--out", out)
    assert r.exit_code == 2 and out.is_dir()
    (out / "notes.txt").write_text("mine")
    r = _invoke(*args, "--dataset", "flickr30k", "--data-root", tmp_path / "nowhere", "--out", out, "--overwrite")
    assert r.exit_code == 2 and out.is_dir()


# ---------------------------------------------------------------- 5. fast errors: before torch is imported

FAST = textwrap.dedent("""
    import json, sys
    from typer.testing import CliRunner
    from mm_cli.main import app
    res = []
    for argv in json.loads(sys.argv[1]):
        r = CliRunner().invoke(app, argv)
        res.append({"argv": argv, "exit": r.exit_code, "output": r.output,
                    "heavy": sorted(m for m in ("torch", "open_clip", "numpy") if m in sys.modules)})
    print(json.dumps(res))
""")


def test_user_mistakes_are_reported_before_torch_is_imported(tmp_path):
    (tmp_path / "s.yaml").write_text("stepz: 3\n")
    o = str(tmp_path / "o")
    cases = [
        (["clip", "eval", "--model", "mm-micro-clip", "--random-init", "--dataset", "shapez", "--out", o], "shapez"),
        (["clip", "eval", "--model", str(tmp_path / "no" / "such-dir"), "--out", o], "model directory not found"),
        (["clip", "eval", "--model", str(tmp_path), "--out", o], "clip_config.json"),
        (["clip", "eval", "--model", "mm-tiny-clip", "--out", o], "--random-init"),
        (["unlearn", "run", "--model", "mm-micro-clip", "--random-init", "--dataset", "shapez",
          "--forget-classes", "circle", "--out", o], "shapez"),
        (["unlearn", "run", "--model", "./no/such-dir", "--forget-classes", "circle", "--out", o], "not found"),
        (["unlearn", "run", "--forget-classes", "circle", "--out", o], "no --model"),
        (["unlearn", "run", "--model", "mm-micro-clip", "--pretrained", "./no/weights.safetensors",
          "--forget-classes", "circle", "--out", o], "checkpoint file not found"),
        (["clip", "pretrain", "--config", str(tmp_path / "s.yaml"), "--out", o], "did you mean 'steps'"),
        (["avqa", "train", "--set", "arch.dimm=8", "--out", o], "did you mean 'arch.dim'"),
    ]
    env = {"MM_CACHE": str(tmp_path / "empty-cache"), "MM_DEBUG": "0", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "MM_NO_PROGRESS": "1"}
    p = subprocess.run([sys.executable, "-c", FAST, json.dumps([c for c, _ in cases])], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    for (argv, needle), res in zip(cases, json.loads(p.stdout), strict=True):
        assert res["exit"] == 2 and needle in _error_line(res["output"]), (argv, res["output"])
        assert res["heavy"] == [], (argv, res["heavy"])
    assert not Path(o).exists()


def test_the_cli_dataset_help_and_check_come_from_the_registry():
    from mm_cli.common import check_image_text_dataset, dataset_help
    from mmcore.data.registry import image_text_datasets
    from mmcore.errors import MMError

    assert dataset_help() == " | ".join(image_text_datasets()) + "."
    check_image_text_dataset("Flickr-30K")  # the registry's spelling rules: case, - and _ ignored
    with pytest.raises(MMError, match="did you mean 'cifar100'"):
        check_image_text_dataset("cifar10")


# ---------------------------------------------------------------- 6. proportionate, self-describing unlearning runs


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory) -> Path:
    """$MM_CACHE with a saved micro CLIP where `mm demo` leaves the tiny CLIP."""
    import torch
    from mmcore.encoders.clip import create_clip, save_clip
    from mmcore.io import write_json

    cache = tmp_path_factory.mktemp("fh_cache")
    torch.manual_seed(0)
    b = create_clip("mm-micro-clip")
    save_clip(b.model, cache / "tiny-clip-seed0", b.model_name, b.model_cfg)
    write_json(cache / "tiny-clip-seed0" / "metrics.json", {"zero_shot_accuracy": 0.25})
    return cache


def test_unlearn_help_shows_the_evaluation_knobs_with_the_config_defaults():
    from cliperase.config import UnlearnConfig

    d = UnlearnConfig()
    text = re.sub(r"[\s│]+", " ", runner.invoke(app, ["unlearn", "run", "--help"], env={"COLUMNS": "200"}).output)
    for opt, default in (("--eval-max-samples", d.eval_max_samples), ("--retrieval-max-pairs", d.retrieval_max_pairs),
                         ("--mia-max-samples", d.mia_max_samples), ("--relearn-steps", d.relearn.max_steps)):
        assert re.search(re.escape(opt) + r" <int> .*?\[default: \(?" + str(default) + r"\b", text), opt
    assert "--no-relearn" in text and re.search(r"\[default: \(?--relearn", text) and d.relearn.enabled
    assert "--no-cache" in text


def test_a_second_unlearn_run_reuses_the_original_metrics_and_says_so(micro_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_CACHE", str(micro_cache))
    base = ["unlearn", "run", "--forget-classes", "circle", *UNLEARN_TINY, "--eval-max-samples", "10"]
    first = _invoke(*base, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    second = _invoke(*base, "--method", "ga", "--out", tmp_path / "b")
    assert second.exit_code == 0, second.output
    assert "reused from the cache" not in first.output and "reused from the cache" in second.output
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert b["before"] == a["before"] and b["timing"]["before_cached"] and not a["timing"]["before_cached"]
    assert a["after"]["n"]["retain_accuracy"] == 10 and "±" in first.output  # value ± SE, and n, in the table
    assert list((micro_cache / "unlearn-before").glob("*.json"))
    again = _invoke(*base, "--no-cache", "--out", tmp_path / "c")
    assert again.exit_code == 0 and "reused from the cache" not in again.output
    changed = _invoke(*base[:-1], "12", "--out", tmp_path / "d")  # another evaluation size: another key
    assert changed.exit_code == 0 and "reused from the cache" not in changed.output
    assert "Unlearning: 1 steps, learning rate" in (tmp_path / "a" / "report.md").read_text()


def test_compare_table_keeps_its_names_at_120_columns_and_shows_dashes_not_none(micro_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("MM_CACHE", str(micro_cache))
    out = tmp_path / "cmp"
    r = runner.invoke(app, ["unlearn", "compare", "--methods", "ga,ft", "--forget-classes", "circle", *UNLEARN_TINY,
                            "--set", "retrain.fallback_steps=1", "--set", "retrain.batch_size=8", "--out", str(out)],
                      env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    from cliperase.recipes.report import COMPARISON_COLUMNS

    assert max(map(len, r.output.splitlines())) <= 120
    for header in list(COMPARISON_COLUMNS.values())[1:]:
        assert header in r.output, header  # one row per metric: no name cut
    for method in ("original", "ga", "ft", "retrain"):
        assert method in r.output
    md = (out / "comparison.md").read_text()
    assert "None" not in r.output and "None" not in md and "{" not in md.splitlines()[2]  # no raw dict for sizes
    relearn_row = next(ln for ln in r.output.splitlines() if "relearn steps" in ln)
    assert relearn_row.count("–") == 4  # relearn disabled: "–" for every model, as in the markdown
    assert md.splitlines()[-1].rstrip().endswith("| – |")

    from cliperase.recipes.report import comparison_figure

    fig = comparison_figure(json.loads((out / "comparison.json").read_text()))
    scatter, bars = fig.axes
    star = max(scatter.collections, key=lambda c: c.get_zorder())
    assert star.get_label() == "original" and scatter.collections[-1] is star  # drawn last, on top
    assert bars.get_xscale() == "linear" and bars.get_xlim()[0] == 0
    assert "(s)" in bars.get_xlabel() and "(%)" in scatter.get_xlabel() and "(%)" in scatter.get_ylabel()
    assert "D_f" in fig._suptitle.get_text() and "D_r" in fig._suptitle.get_text()
    assert {t.get_text() for t in bars.get_yticklabels()} == {"ga", "ft", "retrain"}  # horizontal bars: no overlap


def test_retrain_report_names_its_training_and_lists_steps_and_lr():
    from cliperase.recipes.report import run_report

    m = {"method": "retrain", "model": "m", "dataset": "shapes", "forget": "classes circle", "steps": 7,
         "sizes": {"forget": 1, "retain": 2, "test": 3, "test_forget": 1}, "wall_seconds": 1.5, "world_size": 1,
         "retrain_config": {"lr": 0.002}, "settings": {"lr": 1e-4}, "before": {}, "after": {}}
    text = run_report(m)
    assert "Retrain training wall time: 1.5 s" in text and "Unlearning wall time" not in text
    assert "7 steps, learning rate 0.002" in text
    ga = {k: v for k, v in m.items() if k != "retrain_config"}  # a step method's run records no training config
    assert "Unlearning wall time" in run_report({**ga, "method": "ga"})


def test_clip_eval_table_is_in_percent(micro_cache, tmp_path):
    r = _invoke("clip", "eval", "--model", micro_cache / "tiny-clip-seed0", "--n", "20", "--out", tmp_path / "e")
    assert r.exit_code == 0, r.output
    assert "zero-shot accuracy (%)" in r.output and "i2t_R@1 (%)" in r.output
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    shown = re.search(r"zero-shot accuracy \(%\)\s*│\s*([\d.]+)", r.output)
    assert shown and float(shown.group(1)) == pytest.approx(100 * m["zero_shot_accuracy"], abs=0.01)
