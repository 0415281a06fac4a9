"""`mm clip pretrain` / `mm clip eval` through Typer's CliRunner (tiny sizes)."""

from __future__ import annotations

import json

from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()

TINY = ["--set", "model=mm-micro-clip", "--set", "n_train=64", "--set", "n_test=30", "--set", "steps=2",
        "--set", "batch_size=32", "--set", "eval_every=0", "--set", "warmup=1"]


def test_pretrain_then_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    out = tmp_path / "run"
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('lr = 0.0005\ntemplates = ["a photo of a {}"]\n')
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(out), "--seed", "7", "--config", str(cfg_file), *TINY])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 7 and cfg["lr"] == 0.0005 and cfg["steps"] == 2 and cfg["model"] == "mm-micro-clip"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["zero_shot_accuracy"] <= 1.0 and metrics["wall_seconds"] > 0
    assert "zero_shot_accuracy" in r.output
    assert not (out / "checkpoint").exists()  # a finished run keeps no resumable state unless asked
    kept = tmp_path / "kept"
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(kept), "--keep-checkpoints", *TINY])
    assert r.exit_code == 0, r.output
    assert (kept / "checkpoint" / "state.json").is_file()

    # a non-empty output dir needs --overwrite (exit 2, one-line error)
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(out), *TINY])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(out), "--resume", *TINY])
    assert r.exit_code == 0, r.output

    ev = tmp_path / "eval"
    r = runner.invoke(app, ["clip", "eval", "--model", str(out), "--dataset", "shapes", "--n", "30", "--out", str(ev)])
    assert r.exit_code == 0, r.output
    em = json.loads((ev / "metrics.json").read_text())
    assert {"zero_shot_accuracy", "i2t_R@1", "t2i_R@10"} <= set(em)
    assert 0.0 <= em["zero_shot_accuracy"] <= 1.0 and 0.0 <= em["t2i_R@10"] <= 100.0


def test_user_errors_are_one_line(tmp_path):
    r = runner.invoke(app, ["clip", "pretrain", "--out", str(tmp_path / "x"), "--set", "nosuchkey=1"])
    assert r.exit_code == 2 and "nosuchkey" in r.output
    r = runner.invoke(app, ["clip", "eval", "--model", "mm-tiny-clp", "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "mm-tiny-clip" in r.output
    r = runner.invoke(app, ["clip", "eval", "--model", str(tmp_path / "missing_dir"), "--out", str(tmp_path / "e2")])
    assert r.exit_code == 2 and "not found" in r.output


def test_help_lists_commands():
    r = runner.invoke(app, ["clip", "--help"])
    assert r.exit_code == 0 and "pretrain" in r.output and "eval" in r.output


# ---------------------------------------------------------------- real-format data: whole split, --skip-bad


def _options(group: str, command: str) -> set[str]:
    """Every option name the `mm GROUP COMMAND` command has."""
    import typer.main

    cmd = typer.main.get_command(app).commands[group].commands[command]
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}


def _hints_are_options(output: str, group: str, command: str) -> None:
    import re

    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", output))
    assert named <= _options(group, command), f"hint names options `mm {group} {command}` lacks: {named}"


def _cifar(root, n_test: int) -> None:
    """The release's layout (cifar-100-python/{test,meta}: pickled dicts), 4 classes."""
    import pickle

    import numpy as np

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entry = {"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), "fine_labels": [i % 4 for i in range(n_test)],
             "filenames": [f"t{i}.png" for i in range(n_test)]}  # fmt: skip
    (folder / "test").write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["apple", "bear", "cloud", "dolphin"]}))


def test_eval_real_data_takes_the_whole_split_unless_capped(tmp_path):
    _cifar(tmp_path / "c", 1003)  # more than the old cap of 1000
    base = ["clip", "eval", "--model", "mm-micro-clip", "--random-init", "--dataset", "cifar100", "--data-root", str(tmp_path / "c")]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "all"), "--batch-size", "512"])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert m["n"] == 1003 and m["n_images"] == 1003 and m["skipped"] == 0
    assert m["n_texts"] == 4  # "a photo of a apple" ... : one text per class, owned by its 250-odd images
    assert json.loads((tmp_path / "all" / "config.json").read_text())["n"] is None
    r = runner.invoke(app, [*base, "--n", "10", "--out", str(tmp_path / "ten")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ten" / "metrics.json").read_text())["n"] == 10
    # synthetic shapes keep their default size
    r = runner.invoke(app, ["clip", "eval", "--model", "mm-micro-clip", "--random-init", "--out", str(tmp_path / "shapes")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "shapes" / "metrics.json").read_text())["n"] == 1000


def _flickr_with_bad_images(root) -> None:
    import io

    import numpy as np
    from PIL import Image

    imgs = root / "flickr30k-images"
    imgs.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(imgs / f"{i}.png")
    (imgs / "garbage.jpg").write_bytes(b"not an image at all")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (imgs / "truncated.jpg").write_bytes(buf.getvalue()[:-200])  # the header is intact: only a full decode fails
    names = ["0.png", "garbage.jpg", "1.png", "missing.jpg", "truncated.jpg", "2.png"]
    images = [{"filename": n, "split": "test", "sentences": [{"raw": f"photo number {k}"}]} for k, n in enumerate(names)]
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images, "dataset": "flickr30k"}))


def test_eval_skip_bad_skips_and_counts_unreadable_images(tmp_path):
    _flickr_with_bad_images(tmp_path / "f")
    base = ["clip", "eval", "--model", "mm-micro-clip", "--random-init", "--dataset", "flickr30k", "--data-root", str(tmp_path / "f")]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "e1")])
    assert r.exit_code == 2 and "missing.jpg: image file not found" in r.output and "--skip-bad" in r.output
    _hints_are_options(r.output, "clip", "eval")
    r = runner.invoke(app, [*base, "--skip-bad", "--out", str(tmp_path / "e2")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert m["skipped"] == 3 and m["n"] == m["n_images"] == 3 and m["n_texts"] == 3
    assert json.loads((tmp_path / "e2" / "config.json").read_text())["skip_bad"] is True
    # the truncated JPEG alone (its header passes the loader's check): found by the decode, with a hint too
    (tmp_path / "f" / "flickr30k-images" / "garbage.jpg").unlink()
    images = json.loads((tmp_path / "f" / "dataset_flickr30k.json").read_text())
    images["images"] = [im for im in images["images"] if im["filename"] not in ("garbage.jpg", "missing.jpg")]
    (tmp_path / "f" / "dataset_flickr30k.json").write_text(json.dumps(images))
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "e3")])
    assert r.exit_code == 2 and "truncated.jpg: cannot read image" in r.output and "--skip-bad" in r.output
    r = runner.invoke(app, [*base, "--skip-bad", "--caption-file", "karpathy", "--out", str(tmp_path / "e4")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e4" / "metrics.json").read_text())["skipped"] == 1


def test_eval_error_hints_name_only_its_own_options(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    cases = [
        ["--dataset", "flickr30k", "--out", str(tmp_path / "a")],  # no data root
        ["--dataset", "cifar100", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "b")],
        ["--out", str(tmp_path / "full")],  # a non-empty output directory
        ["--dataset", "flickr30k", "--data-root", str(tmp_path), "--caption-file", "csv", "--out", str(tmp_path / "c")],
        ["--caption-file", "csv", "--out", str(tmp_path / "d")],  # shapes have no caption files
    ]
    for extra in cases:
        r = runner.invoke(app, ["clip", "eval", "--model", "mm-micro-clip", "--random-init", *extra])
        assert r.exit_code == 2, (extra, r.output)
        _hints_are_options(r.output, "clip", "eval")
    r = runner.invoke(app, ["clip", "eval", "--model", "mm-micro-clip", "--random-init", "--out", str(tmp_path / "full")])
    assert "--overwrite" in r.output and "--resume" not in r.output


BLIP_TINY = ["--set", "model=mm-micro-blip", "--set", "n_train=64", "--set", "n_test=30", "--set", "steps=2",
             "--set", "batch_size=32", "--set", "eval_every=0", "--set", "warmup=1", "--set", "retrieval_n=10",
             "--set", "rerank_k=3"]


def test_pretrain_family_blip_writes_a_transformers_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MM_NO_PROGRESS", "1")
    r = runner.invoke(app, ["clip", "pretrain", "--family", "blip", "--out", str(tmp_path / "p"), "--print-config"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output)
    assert cfg["model"] == "mm-tiny-blip" and cfg["rerank_k"] > 0 and "itm_weight" in cfg
    out = tmp_path / "run"
    r = runner.invoke(app, ["clip", "pretrain", "--family", "blip", "--out", str(out), "--seed", "3", *BLIP_TINY])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["family"] == "blip" and 0.0 <= metrics["zero_shot_accuracy"] <= 1.0
    assert {"retrieval_i2t_R@1", "retrieval_itc_i2t_R@1", "retrieval_rerank_k"} <= metrics.keys()
    from transformers import BlipForImageTextRetrieval

    BlipForImageTextRetrieval.from_pretrained(out / "model")
    from mmcore.encoders.family import detect_family

    assert detect_family(out) == "blip"


def test_pretrain_family_errors(tmp_path):
    r = runner.invoke(app, ["clip", "pretrain", "--family", "siglip", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "--family must be one of clip, blip" in r.output
    r = runner.invoke(app, ["clip", "pretrain", "--family", "blip", "--preset", "default", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "--preset names a CLIP recipe" in r.output
