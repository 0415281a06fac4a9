"""Export an open_clip text tower to transformers: ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``)
plus a ``CLIPTokenizer`` built offline from open_clip's bundled BPE vocabulary.

This is what text-to-image pipelines (diffusers) consume: swapping in an unlearned CLIP text encoder
means exporting it here. The exported model's hidden states equal open_clip's ``ln_final`` output
(up to float rounding) and the tokenizer gives identical ids (padding with id 0, as open_clip does).

Weight mapping (per resblock ``i``)::

    token_embedding.weight              -> embeddings.token_embedding.weight
    positional_embedding                -> embeddings.position_embedding.weight
    transformer.resblocks.i.ln_1        -> encoder.layers.i.layer_norm1
    transformer.resblocks.i.attn.in_proj_{weight,bias}  -> self_attn.{q,k,v}_proj (split in 3)
    transformer.resblocks.i.attn.out_proj               -> self_attn.out_proj
    transformer.resblocks.i.ln_2        -> encoder.layers.i.layer_norm2
    transformer.resblocks.i.mlp.c_fc / c_proj           -> mlp.fc1 / mlp.fc2
    ln_final                            -> final_layer_norm
    text_projection [W, D]              -> text_projection.weight [D, W]  (with projection only)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mmcore.errors import MMError

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# open_clip pads with id 0 (the token "!"). Making "!" the pad token would turn it into a special token
# and change how "!" in text is split, so an alias string for id 0 is the pad token instead.
PAD = "<|pad|>"


def _text_tower(model: Any) -> tuple[Any, str]:
    """(module holding the text transformer's attributes, a description) for CLIP or CustomTextCLIP."""
    from mmcore.checkpoint import unwrap

    m = unwrap(model)
    if hasattr(m, "token_embedding") and hasattr(m, "transformer"):
        return m, "CLIP"
    text = getattr(m, "text", None)
    if text is not None and hasattr(text, "token_embedding") and hasattr(text, "transformer"):
        return text, "CustomTextCLIP"
    kind = type(text).__name__ if text is not None else type(m).__name__
    raise MMError(f"cannot export the text tower of {type(m).__name__}: {kind} is not an open_clip TextTransformer "
                  "(HF text towers are already transformers models; export them with save_pretrained)")


def _model_cfg(model_cfg: dict | str | None) -> dict:
    if model_cfg is None:
        return {}
    if isinstance(model_cfg, str):
        import open_clip

        from mmcore.encoders.clip import register_model_configs

        register_model_configs()
        cfg = open_clip.get_model_config(model_cfg.replace("/", "-"))
        if cfg is None:
            raise MMError(f"unknown CLIP model {model_cfg!r}")
        return cfg
    return model_cfg


def _check_supported(tower: Any, text_cfg: dict) -> None:
    """Refuse open_clip text options that a transformers CLIPTextModel cannot express."""
    import torch.nn as nn
    from open_clip.transformer import ResidualAttentionBlock

    problems = []
    if text_cfg.get("hf_model_name"):
        problems.append(f"HF text tower {text_cfg['hf_model_name']!r}")
    if text_cfg.get("hf_tokenizer_name"):
        problems.append(f"a non-CLIP tokenizer {text_cfg['hf_tokenizer_name']!r}")
    if getattr(tower, "cls_emb", None) is not None or text_cfg.get("embed_cls"):
        problems.append("a CLS embedding (embed_cls)")
    if getattr(tower, "attn_mask", None) is None:
        problems.append("bidirectional attention (no_causal_mask)")
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
    if pool not in ("argmax", "eos"):
        problems.append(f"pool_type {pool!r}")
    if pool == "eos" and getattr(tower, "text_eos_id", getattr(tower, "eos_id", None)) not in (None, 49407):
        problems.append("an eos id other than 49407")
    if text_cfg.get("final_ln_after_pool"):
        problems.append("final_ln_after_pool")
    if text_cfg.get("act_kwargs"):
        problems.append("act_kwargs")
    for block in tower.transformer.resblocks:
        if not isinstance(block, ResidualAttentionBlock) or hasattr(block, "ln_1_kv"):
            problems.append(f"attention block type {type(block).__name__}")
            break
        if not isinstance(block.ls_1, nn.Identity):
            problems.append("layer scale (ls_init_value)")
            break
        if not isinstance(block.ln_1, nn.LayerNorm):
            problems.append(f"norm layer {type(block.ln_1).__name__}")
            break
    if isinstance(getattr(tower, "text_projection", None), nn.Linear):
        problems.append("a text projection with bias (proj_bias)")
    if problems:
        raise MMError("cannot export this text tower to transformers CLIPTextModel: unsupported " + ", ".join(problems))


def _activation(block: Any) -> str:
    import torch.nn as nn
    from open_clip.transformer import QuickGELU

    act = block.mlp.gelu
    if isinstance(act, QuickGELU):
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu_new" if act.approximate == "tanh" else "gelu"
    raise MMError(f"cannot export text tower: unsupported activation {type(act).__name__}")


def export_text_tower(
    model: Any, model_cfg: dict | str | None = None, *, with_projection: bool = False
) -> tuple[Any, Any]:
    """``(CLIPTextModel or CLIPTextModelWithProjection, CLIPTokenizer)`` equivalent to ``model``'s text
    tower. ``model_cfg`` (a config dict or an open_clip model name) is only used to refuse options the
    transformers model cannot represent; the architecture itself is read off the modules."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tower, _ = _text_tower(model)
    text_cfg = _model_cfg(model_cfg).get("text_cfg", {})
    _check_supported(tower, text_cfg)
    blocks = tower.transformer.resblocks
    width = tower.token_embedding.weight.shape[1]
    proj = getattr(tower, "text_projection", None)
    if with_projection and proj is None:
        raise MMError("cannot export with projection: this text tower has no text_projection")
    config = CLIPTextConfig(
        vocab_size=tower.token_embedding.weight.shape[0],
        hidden_size=width,
        intermediate_size=blocks[0].mlp.c_fc.weight.shape[0],
        num_hidden_layers=len(blocks),
        num_attention_heads=blocks[0].attn.num_heads,
        max_position_embeddings=tower.positional_embedding.shape[0],
        hidden_act=_activation(blocks[0]),
        layer_norm_eps=blocks[0].ln_1.eps,
        projection_dim=proj.shape[1] if proj is not None else width,
        pad_token_id=0,
        bos_token_id=49406,
        eos_token_id=49407,  # != 2: pool at the first EOS, which is open_clip's argmax position
    )
    hf = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    own = hf.state_dict()
    prefix = "text_model." if any(k.startswith("text_model.") for k in own) else ""

    sd: dict[str, torch.Tensor] = {
        f"{prefix}embeddings.token_embedding.weight": tower.token_embedding.weight,
        f"{prefix}embeddings.position_embedding.weight": tower.positional_embedding,
        f"{prefix}final_layer_norm.weight": tower.ln_final.weight,
        f"{prefix}final_layer_norm.bias": tower.ln_final.bias,
    }
    for i, b in enumerate(blocks):
        sd.update(block_weights(b, f"{prefix}encoder.layers.{i}."))
    if with_projection:
        sd["text_projection.weight"] = proj.T
    sd = {k: v.detach().float().clone().contiguous() for k, v in sd.items()}
    # position_ids is a buffer transformers fills itself; everything else must be mapped
    missing = [k for k in own if k not in sd and not k.endswith("position_ids")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise MMError(f"internal: text tower mapping mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})")
    hf.load_state_dict(sd, strict=False)
    hf.eval()
    return hf, build_clip_tokenizer(config.max_position_embeddings)


def block_weights(block: Any, p: str) -> dict[str, Any]:
    """One open_clip ResidualAttentionBlock as a transformers CLIPEncoderLayer's tensors (names under ``p``)."""
    qw, kw, vw = block.attn.in_proj_weight.chunk(3, dim=0)
    qb, kb, vb = block.attn.in_proj_bias.chunk(3, dim=0)
    return {
        p + "self_attn.q_proj.weight": qw, p + "self_attn.q_proj.bias": qb,
        p + "self_attn.k_proj.weight": kw, p + "self_attn.k_proj.bias": kb,
        p + "self_attn.v_proj.weight": vw, p + "self_attn.v_proj.bias": vb,
        p + "self_attn.out_proj.weight": block.attn.out_proj.weight, p + "self_attn.out_proj.bias": block.attn.out_proj.bias,
        p + "layer_norm1.weight": block.ln_1.weight, p + "layer_norm1.bias": block.ln_1.bias,
        p + "layer_norm2.weight": block.ln_2.weight, p + "layer_norm2.bias": block.ln_2.bias,
        p + "mlp.fc1.weight": block.mlp.c_fc.weight, p + "mlp.fc1.bias": block.mlp.c_fc.bias,
        p + "mlp.fc2.weight": block.mlp.c_proj.weight, p + "mlp.fc2.bias": block.mlp.c_proj.bias,
    }


def build_clip_tokenizer(context_length: int = 77) -> Any:
    """A transformers ``CLIPTokenizer`` from open_clip's bundled BPE file, without the network.

    Call it as ``tok(texts, padding="max_length", max_length=context_length, truncation=True)``
    to get exactly open_clip's ids (start, tokens, end, then id-0 padding)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="mm-clip-tok-") as tmp:
        _write_bpe_files(Path(tmp))
        tok = CLIPTokenizer.from_pretrained(tmp, model_max_length=context_length, pad_token=PAD)
    return tok


def _write_bpe_files(folder: Path) -> None:
    """open_clip's BPE vocabulary as transformers' vocab.json + merges.txt."""
    from open_clip.tokenizer import SimpleTokenizer

    st = SimpleTokenizer()
    rename = {"<start_of_text>": BOS, "<end_of_text>": EOS}
    vocab = {rename.get(k, k): v for k, v in st.encoder.items()}
    vocab[PAD] = 0
    merges = [" ".join(pair) for pair, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def save_hf_text_encoder(
    out_dir: str | Path, model: Any, model_cfg: dict | str | None = None, *, with_projection: bool = False
) -> dict[str, Path]:
    """Export and save in the diffusers layout: ``OUT/text_encoder`` (safetensors) and ``OUT/tokenizer``."""
    hf, tok = export_text_tower(model, model_cfg, with_projection=with_projection)
    out = Path(out_dir)
    paths = {"text_encoder": out / "text_encoder", "tokenizer": out / "tokenizer"}
    from mmcore.distributed import quiet_third_party_progress

    quiet_third_party_progress()
    hf.save_pretrained(paths["text_encoder"], safe_serialization=True)
    tok.save_pretrained(paths["tokenizer"])
    # tokenizer.json would re-add the id-0 pad alias as a new token on reload; vocab.json + merges.txt
    # rebuild the tokenizer exactly as build_clip_tokenizer does.
    (paths["tokenizer"] / "tokenizer.json").unlink(missing_ok=True)
    _write_bpe_files(paths["tokenizer"])
    return paths
