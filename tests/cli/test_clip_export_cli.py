"""`mm clip export --format hf|open_clip` on a saved micro CLIP (ViT) and the refusal for a ResNet tower."""

from __future__ import annotations

from mm_cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def _saved(tmp_path, name):
    from mmcore.encoders.clip import create_clip, save_clip

    b = create_clip(name)
    save_clip(b.model, tmp_path / name, b.model_name, b.model_cfg)
    return b, tmp_path / name


def test_export_both_formats_load_back(tmp_path):
    import open_clip
    import torch
    from transformers import CLIPModel

    bundle, model_dir = _saved(tmp_path, "mm-micro-clip")
    for fmt in ("hf", "open_clip"):
        r = runner.invoke(app, ["clip", "export", "--model", str(model_dir), "--format", fmt, "--out", str(tmp_path / fmt)])
        assert r.exit_code == 0, r.output
    tokens = bundle.tokenizer(["a red circle"])
    hf = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    oc = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'open_clip'}")[0].eval()
    with torch.no_grad():
        ref = bundle.model.eval().encode_text(tokens)
        got = hf.get_text_features(input_ids=tokens)
        got = getattr(got, "pooler_output", got)
        assert (got - ref).abs().max() < 1e-5
        assert torch.equal(oc.encode_text(tokens), ref)


def test_export_hf_refuses_a_resnet_image_tower_and_leaves_no_out(tmp_path):
    _, model_dir = _saved(tmp_path, "mm-tiny-clip")
    out = tmp_path / "hf"
    r = runner.invoke(app, ["clip", "export", "--model", str(model_dir), "--out", str(out)])
    assert r.exit_code == 2 and "ModifiedResNet" in r.output and not out.exists()
    r = runner.invoke(app, ["clip", "export", "--model", str(model_dir), "--format", "onnx", "--out", str(out)])
    assert r.exit_code == 2 and "hf or open_clip" in r.output
