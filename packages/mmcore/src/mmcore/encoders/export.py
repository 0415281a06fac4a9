"""Export a CLIP to other libraries' formats.

- ``"open_clip"``: ``OUT/open_clip_model.safetensors`` + ``OUT/open_clip_config.json`` (the layout open_clip's
  hub loader reads): ``open_clip.create_model_and_transforms(name, pretrained="OUT/open_clip_model.safetensors")``
  for a registered ``name``, or ``open_clip.create_model_and_transforms("local-dir:OUT")`` for any config.
- ``"hf"``: a transformers ``CLIPModel`` + ``CLIPProcessor`` (both towers; ``CLIPModel.from_pretrained(OUT)``).
  Needs open_clip's own ViT image tower and text transformer; the text tower mapping is
  :func:`mmcore.encoders.hf_export.export_text_tower`'s, the image tower's (per resblock as the text's)::

      visual.conv1.weight               -> vision_model.embeddings.patch_embedding.weight
      visual.class_embedding            -> vision_model.embeddings.class_embedding
      visual.positional_embedding       -> vision_model.embeddings.position_embedding.weight
      visual.ln_pre / visual.ln_post    -> vision_model.pre_layrnorm / vision_model.post_layernorm
      visual.proj [W, D]                -> visual_projection.weight [D, W]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.errors import MMError

FORMATS = ("hf", "open_clip")


def _vision_problems(visual: Any) -> list[str]:
    import torch.nn as nn
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    if not isinstance(visual, VisionTransformer):
        return [f"the image tower is a {type(visual).__name__} (transformers' CLIPVisionModel is a ViT)"]
    problems = []
    if getattr(visual, "attn_pool", None) is not None:
        problems.append("attentional pooling")
    if getattr(visual, "pool_type", "tok") != "tok":
        problems.append(f"pool_type {visual.pool_type!r}")
    if getattr(visual, "final_ln_after_pool", False):
        problems.append("final_ln_after_pool")
    if isinstance(visual.ln_pre, nn.Identity):
        problems.append("no ln_pre")
    if visual.conv1.bias is not None:
        problems.append("a patch embedding with bias")
    if not isinstance(getattr(visual, "proj", None), nn.Parameter):
        problems.append("no plain image projection matrix (proj)")
    for block in visual.transformer.resblocks:
        if not isinstance(block, ResidualAttentionBlock) or not isinstance(block.ls_1, nn.Identity):
            problems.append("layer scale or another block type")
            break
    return problems


def to_hf_clip(model: Any, model_cfg: dict | str | None = None) -> tuple[Any, Any]:
    """``(transformers.CLIPModel, CLIPProcessor)`` computing ``model``'s image and text embeddings.

    :class:`MMError` naming the reason for a model transformers' CLIP cannot express (a ResNet image tower,
    an HF text tower, attentional pooling, ...)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    from mmcore.checkpoint import unwrap
    from mmcore.encoders.hf_export import _activation, block_weights, export_text_tower

    m = unwrap(model)
    visual = getattr(m, "visual", None)
    problems = _vision_problems(visual) if visual is not None else ["no image tower"]
    if problems:
        raise MMError("cannot export to a transformers CLIPModel: " + "; ".join(problems))
    text, tokenizer = export_text_tower(m, model_cfg, with_projection=True)  # refuses text towers it cannot map
    blocks = visual.transformer.resblocks
    width = visual.conv1.weight.shape[0]
    size = visual.image_size
    size = int(size[0] if isinstance(size, list | tuple) else size)
    patch = int(visual.conv1.weight.shape[-1])
    vision_cfg = CLIPVisionConfig(
        hidden_size=width, intermediate_size=blocks[0].mlp.c_fc.weight.shape[0], num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads, image_size=size, patch_size=patch,
        hidden_act=_activation(blocks[0]), layer_norm_eps=blocks[0].ln_1.eps, projection_dim=visual.proj.shape[1],
    )
    if (size // patch) ** 2 + 1 != visual.positional_embedding.shape[0]:
        raise MMError("cannot export to a transformers CLIPModel: the image tower's positional embedding does not "
                      f"match {size} px images in {patch} px patches")
    config = CLIPConfig(text_config=text.config.to_dict(), vision_config=vision_cfg.to_dict(),
                        projection_dim=visual.proj.shape[1])
    hf = CLIPModel(config)
    sd = dict(text.state_dict())
    v = "vision_model."
    sd.update({
        v + "embeddings.patch_embedding.weight": visual.conv1.weight,
        v + "embeddings.class_embedding": visual.class_embedding,
        v + "embeddings.position_embedding.weight": visual.positional_embedding,
        v + "pre_layrnorm.weight": visual.ln_pre.weight, v + "pre_layrnorm.bias": visual.ln_pre.bias,
        v + "post_layernorm.weight": visual.ln_post.weight, v + "post_layernorm.bias": visual.ln_post.bias,
        "visual_projection.weight": visual.proj.T, "logit_scale": m.logit_scale.reshape(()),
    })
    for i, b in enumerate(blocks):
        sd.update(block_weights(b, f"{v}encoder.layers.{i}."))
    sd = {k: t.detach().float().clone().contiguous() for k, t in sd.items() if not k.endswith("position_ids")}
    own = hf.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("position_ids")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise MMError(f"internal: CLIP mapping mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})")
    with torch.no_grad():
        hf.load_state_dict(sd, strict=False)
    hf.eval()
    pp = dict(getattr(visual, "preprocess_cfg", None) or {})
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    images = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                image_mean=list(pp.get("mean", OPENAI_DATASET_MEAN)),
                                image_std=list(pp.get("std", OPENAI_DATASET_STD)))
    return hf, CLIPProcessor(image_processor=images, tokenizer=tokenizer)


def export_clip(bundle: Any, out_dir: str | Path, format: str = "hf") -> dict[str, Path]:
    """Write ``bundle`` (a :class:`~mmcore.encoders.clip.ClipBundle`) to ``out_dir`` in ``format``; returns the
    files written by role."""
    from mmcore.distributed import quiet_third_party_progress
    from mmcore.io import save_safetensors, write_json

    if format not in FORMATS:
        raise MMError(f"export format must be one of {', '.join(FORMATS)}; got {format!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if format == "open_clip":
        from mmcore.checkpoint import unwrap

        weights = out / "open_clip_model.safetensors"
        save_safetensors(weights, unwrap(bundle.model).state_dict())
        pp = dict(getattr(bundle.model.visual, "preprocess_cfg", None) or {})
        config = write_json(out / "open_clip_config.json", {"model_cfg": bundle.model_cfg,
                                                            "preprocess_cfg": {**pp, "size": bundle.image_size}})
        return {"weights": weights, "config": Path(config)}
    hf, processor = to_hf_clip(bundle.model, bundle.model_cfg)
    quiet_third_party_progress()
    hf.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    # tokenizer.json would re-add the id-0 pad alias as a new token on reload (see hf_export.save_hf_text_encoder)
    from mmcore.encoders.hf_export import _write_bpe_files

    (out / "tokenizer.json").unlink(missing_ok=True)
    _write_bpe_files(out)
    return {"model": out / "model.safetensors", "config": out / "config.json"}
