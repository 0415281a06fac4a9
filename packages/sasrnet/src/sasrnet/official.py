"""Checkpoints of the authors' public SaSR-Net code (``SaSR_Net.state_dict()``) in this package's model.

    model = load_official("sasr_net.pt")                      # or a state dict
    out = official_outputs(model, audio, visual_posi, visual_nega, question)   # what SaSR_Net.forward returns

The public layout names layers by their role in that code (``fc_a1``, ``linear11``, ``sasr.audio_cug.han_encoder``,
...); :data:`KEY_RULES` rewrites each name into ours. Three groups of public tensors have no counterpart
because the public forward never uses them, and are dropped (listed in :data:`UNUSED_PREFIXES`): the
ImageNet ResNet-18 the features were extracted with (``visual_net.*``), ``norm3`` and ``sasr.fc_prob``.
The authors' grounding checkpoint (``pretrained/main_grounding_gen_best.pt``) is a state dict of
ST-AVQA's match network: :func:`grounding_init_weights` maps the keys it shares with ours (audio
embedding, spatial grounding ``fc_gl``, match head ``fc1``-``fc4``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mmcore.errors import DataError

from sasrnet.config import ModelConfig

# (public regex, ours): applied in order, first match wins; \g<n> refers to the regex's groups
_BRANCH = r"sasr\.(audio|visual)_cug\."
KEY_RULES: list[tuple[str, str]] = [
    (r"^fc_a([12])\.", r"audio.fc\1."),
    (r"^fc_fusion\.", "fusion."),
    (r"^fc_gl\.", "ground."),
    (r"^fc_ans\.", "answer."),
    (r"^fc1\.", "match.0."), (r"^fc2\.", "match.2."), (r"^fc3\.", "match.4."), (r"^fc4\.", "match.6."),
    (r"^linear11\.", "temporal_v.ffn.0."), (r"^linear12\.", "temporal_v.ffn.3."), (r"^norm1\.", "temporal_v.norm."),
    (r"^linear21\.", "temporal_a.ffn.0."), (r"^linear22\.", "temporal_a.ffn.3."), (r"^norm2\.", "temporal_a.norm."),
    (r"^attn_a\.", "temporal_a.attn."), (r"^attn_v\.", "temporal_v.attn."),
    (r"^question_encoder\.word2vec\.", "question.embed."),
    (r"^question_encoder\.", "question."),
    (r"^sasr\.av_token$", "sasr.tokens"),
    (r"^sasr\.fc_a\.", "sasr.audio_in."), (r"^sasr\.fc_v\.", "sasr.visual_2d."), (r"^sasr\.fc_st\.", "sasr.visual_3d."),
    (r"^sasr\.fc_fusion\.", "sasr.visual_fuse."),
    (r"^sasr\.fc_prob_a\.", "sasr.a_presence."), (r"^sasr\.fc_prob_v\.", "sasr.v_presence."),
    (r"^sasr\.fc_cls\.", "sasr.cls."),
    (_BRANCH + r"cross_attn\.0\.", r"sasr.\1.back."),
    (_BRANCH + r"han_encoder\.", r"sasr.\1.regroup."),
    (_BRANCH + r"grouping\.", r"sasr.\1.group."),
    (_BRANCH, r"sasr.\1."),
]
# inside the branches: the public attention and grouping sub-layer names
_SUBLAYER_RULES: list[tuple[str, str]] = [
    (r"\.attn\.q_proj\.", ".attn.q."), (r"\.attn\.k_proj\.", ".attn.k."), (r"\.attn\.v_proj\.", ".attn.v."),
    (r"\.mlp_inter\.", ".token_mlp."), (r"\.pre_assign_attn\.", ".pre_assign."),
    (r"\.assign\.q_proj\.", ".q."), (r"\.assign\.k_proj\.", ".k."), (r"\.assign\.v_proj\.", ".v."),
    (r"\.assign\.proj\.", ".proj."),
    (r"\.norm_new_x\.", ".norm_new."), (r"\.mlp_channels\.", ".mlp."),
]
UNUSED_PREFIXES = ("visual_net.", "norm3.", "sasr.fc_prob.")


def official_key(name: str) -> str | None:
    """Our parameter name for a public one; None for the tensors the public forward never uses."""
    if name.startswith(UNUSED_PREFIXES):
        return None
    for pat, rep in KEY_RULES:
        new, n = re.subn(pat, rep, name, count=1)
        if n:
            if new.startswith("sasr."):
                for p2, r2 in _SUBLAYER_RULES:
                    new = re.sub(p2, r2, new)
            return new
    raise KeyError(name)


def _read_state_dict(state_dict_or_path: Any) -> tuple[dict, str]:
    if isinstance(state_dict_or_path, str | Path):
        from mmcore.io import torch_load_safe

        path = Path(state_dict_or_path)
        obj = torch_load_safe(path)
        where = str(path)
    else:
        obj, where = state_dict_or_path, "the state dict"
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise DataError(where, f"expected a state dict (name -> tensor), got {type(obj).__name__}")
    # DataParallel / DDP checkpoints prefix every name with "module."
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}, where


def paper_config(word_vocab: int = 93, n_answers: int = 42) -> ModelConfig:
    """The public model's configuration (the paper's sizes)."""
    return ModelConfig(kind="sasrnet", word_vocab=word_vocab, n_answers=n_answers)


def load_official(state_dict_or_path: Any):
    """Paper-default :class:`~sasrnet.model.AVQAModel` (eval mode) with the weights of a public SaSR_Net
    state dict (or a ``torch.save``d one, read with ``weights_only=True``). Vocabulary sizes are read
    from the embedding and answer-head shapes. Unknown or missing names, or wrong shapes, raise
    :class:`DataError` listing them."""
    from sasrnet.model import build_model

    sd, where = _read_state_dict(state_dict_or_path)
    for need in ("question_encoder.word2vec.weight", "fc_ans.weight"):
        if need not in sd:
            raise DataError(where, f"not a SaSR_Net state dict: no {need!r} (first keys: {sorted(sd)[:5]})")
    model = build_model(paper_config(int(sd["question_encoder.word2vec.weight"].shape[0]),
                                     int(sd["fc_ans.weight"].shape[0])))
    own = model.state_dict()
    mapped, unknown, bad_shape = {}, [], []
    for k, v in sd.items():
        try:
            ours = official_key(k)
        except KeyError:
            unknown.append(k)
            continue
        if ours is None:
            continue
        if ours not in own:
            unknown.append(k)
        elif tuple(own[ours].shape) != tuple(v.shape):
            bad_shape.append(f"{k}: {list(v.shape)} (expected {list(own[ours].shape)})")
        else:
            mapped[ours] = v
    buffers = {n for n, _ in model.named_buffers()}  # input statistics: identity, as the public code has none
    missing = sorted(set(own) - set(mapped) - buffers)
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s): {', '.join(sorted(unknown)[:8])}")
    if missing:
        problems.append(f"{len(missing)} missing key(s) (ours): {', '.join(missing[:8])}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} wrong shape(s): {'; '.join(bad_shape[:5])}")
    if problems:
        raise DataError(where, "does not match the public SaSR_Net layout at the paper's sizes: " + " | ".join(problems))
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def grounding_init_weights(state_dict_or_path: Any) -> dict:
    """Our names for the tensors of ST-AVQA's grounding checkpoint that this model shares (audio embedding
    ``fc_a1/fc_a2``, grounding ``fc_gl``, match head ``fc1``-``fc4``); its other layers are dropped."""
    sd, where = _read_state_dict(state_dict_or_path)
    keep = {}
    for k, v in sd.items():
        if re.match(r"^(fc_a[12]|fc_gl|fc[1-4])\.", k):
            keep[official_key(k)] = v
    if not keep:
        raise DataError(where, "no audio-embedding / grounding / match-head tensors (fc_a1, fc_gl, fc1..fc4) found")
    return keep


def official_outputs(model, audio, visual_posi, visual_nega, question) -> dict:
    """The values ``SaSR_Net.forward(audio, visual_posi, visual_nega, question)`` returns, from our model:
    ``qa`` [B, answers], ``match_posi`` / ``match_nega`` [B*T, 2], ``v_prob`` / ``a_prob`` [B, K] (of the
    positive pass). Inputs: audio [B,T,128], visual [B,T,512,14,14], question [B,L] token ids."""
    out = model({"audio": audio, "visual": visual_posi, "visual_neg": visual_nega, "question": question})
    return {"qa": out["logits"], "match_posi": out["match_pos"].flatten(0, 1),
            "match_nega": out["match_neg"].flatten(0, 1), "v_prob": out["v_prob"], "a_prob": out["a_prob"]}


def public_vocabularies(train_ann: str | Path):
    """The question and answer vocabularies the public code builds from its training annotations:
    ``<pad>`` then each question word in order of first appearance; answers in order of first appearance
    (no ``<unk>``: a word outside the vocabulary is an error, as in the public code)."""
    from mmcore.avqa.music_avqa import PAD, Vocab, load_music_avqa

    qs = load_music_avqa(train_ann)
    words = dict.fromkeys(w for q in qs for w in q.words)
    words.pop(PAD, None)
    answers = dict.fromkeys(q.answer for q in qs)
    return (Vocab([PAD, *words], kind="question", source=str(train_ann)),
            Vocab(list(answers), kind="answer", source=str(train_ann)))


def import_official(checkpoint: str | Path, train_ann: str | Path, out_dir: str | Path, *,
                    overwrite: bool = False) -> dict:
    """Write a public SaSR_Net checkpoint as a model directory of this package (``model.safetensors``,
    ``model.json``, the vocabularies rebuilt from ``train_ann`` as the public code builds them) that
    :func:`sasrnet.recipes.evaluate.evaluate` reads. Returns model.json's content."""
    import dataclasses

    from mmcore.checkpoint import save_model
    from mmcore.io import prepare_output_dir, write_json

    model = load_official(checkpoint)
    qv, av = public_vocabularies(train_ann)
    cfg = model.cfg
    if (len(qv), len(av)) != (cfg.word_vocab, cfg.n_answers):
        raise DataError(train_ann, f"gives {len(qv)} question words and {len(av)} answers, the checkpoint "
                                   f"{checkpoint} has {cfg.word_vocab} and {cfg.n_answers}: not the annotations "
                                   "it was trained on")
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    info = {"kind": cfg.kind, "model_config": dataclasses.asdict(cfg), "n_segments": cfg.n_segments,
            "max_question_len": 14, "multiple_choice": False, "features_dir": None, "features": None,
            "imported_from": str(checkpoint), "train_annotations": str(train_ann)}
    save_model(model, out / "model.safetensors")
    qv.save(out / "question_vocab.json")
    av.save(out / "answer_vocab.json")
    write_json(out / "model.json", info)
    return info
