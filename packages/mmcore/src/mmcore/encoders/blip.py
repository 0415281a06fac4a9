"""BLIP through transformers (``BlipForImageTextRetrieval``: its image–text contrastive (ITC) projections and its
image–text matching (ITM) head), the "blip" family of :mod:`mmcore.encoders.family`.

    bundle = create_blip("mm-tiny-blip")                        # random init from a project BlipConfig, offline
    bundle = load_blip("path/to/folder")                        # a transformers folder (or a BLIP run directory)
    bundle = load_blip("Salesforce/blip-itm-base-coco")         # a hub id (needs the network)
    probs = bundle.itm_score(images, bundle.tokenizer(texts))   # P(match) of each (image, text) pair
    bundle.save("out/")                                         # transformers' format + safetensors

A saved BLIP is a plain transformers folder: ``BlipForImageTextRetrieval.from_pretrained(OUT)`` and
``BlipProcessor.from_pretrained(OUT)`` load it. The project keeps two things of its own in config.json under
``mm_blip`` (transformers keeps unknown config keys): the learned contrastive temperature as ``logit_scale``
(``log(1 / temperature)``; transformers' retrieval model has no temperature parameter: a folder without it gets
``exp(config.logit_scale_init_value)``, 1/0.07 by default, BLIP's initial temperature) and the tokenizer's
``context_length``.

Tokenizer: BLIP's is BERT's (bert-base-uncased WordPiece), which cannot be downloaded here, so the project models
get an offline WordPiece tokenizer over a vocabulary the project writes (:func:`shapes_vocab`: the words of the
synthetic shapes captions, plus single letters, digits and punctuation with their ``##`` continuations, so any
lower-case ASCII text tokenizes without [UNK]); it is saved with the model. A loaded folder uses its own tokenizer.
Token ids are padded with the tokenizer's pad id to a fixed ``context_length`` (open_clip's convention); the
attention mask is ``ids != pad_token_id``. As in transformers' ``BlipForImageTextRetrieval.forward``, the ITM pass
reads the same ids as the ITC pass ([CLS] first; the original BLIP swaps in an [ENC] token).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mmcore.encoders.family import ImageTextBundleMixin, blip_folder
from mmcore.errors import DataError, MMError
from mmcore.io import read_json

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs" / "blip"
FORMAT = "mm-blip/1"
MM_KEY = "mm_blip"  # the project's keys in a saved config.json
DEFAULT_CONTEXT_LENGTH = 35  # BLIP's max text length for retrieval
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # BLIP's image normalisation (CLIP's)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def project_model_names() -> list[str]:
    """The project's BLIP configs (``mmcore/model_configs/blip/*.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


# --------------------------------------------------------------------------- tokenizer


def shapes_vocab() -> dict[str, int]:
    """The offline WordPiece vocabulary: BERT's special tokens, every word of the shapes captions and prompts,
    then single characters (letters, digits, punctuation) and their ``##`` continuations."""
    from mmcore.data import shapes

    words: list[str] = ["a", "an"]
    words += list(shapes.ALL_SHAPES) + list(shapes.COLORS) + list(shapes.SIZES)
    for text in (*shapes.POSITION_PHRASES.values(), *shapes.CAPTION_TEMPLATES, *shapes.TEMPLATES):
        words += [w for w in text.split() if "{" not in w]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = [*SPECIAL_TOKENS, *dict.fromkeys(words), *chars, *("##" + c for c in string.ascii_lowercase + string.digits)]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def shapes_tokenizer(model_max_length: int = DEFAULT_CONTEXT_LENGTH) -> Any:
    """A BERT (uncased WordPiece) tokenizer over :func:`shapes_vocab`, built offline."""
    import transformers

    vocab = shapes_vocab()
    if int(transformers.__version__.split(".")[0]) >= 5:
        from transformers import BertTokenizer  # v5: the tokenizers-backed class, built from a vocab dict

        return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=model_max_length)
    import tempfile

    from transformers import BertTokenizerFast  # v4: from a vocab file

    from mmcore.io import atomic_write_text

    with tempfile.TemporaryDirectory() as tmp:
        path = atomic_write_text(Path(tmp) / "vocab.txt", "".join(f"{t}\n" for t in vocab))
        return BertTokenizerFast(vocab_file=str(path), do_lower_case=True, model_max_length=model_max_length)


class BlipTokenizer:
    """list[str] -> LongTensor [N, context_length] of token ids, padded with ``pad_token_id`` (the attention mask
    is ``ids != pad_token_id``), over a transformers tokenizer (``hf``)."""

    def __init__(self, hf: Any, context_length: int):
        self.hf = hf
        self.context_length = int(context_length)
        self.pad_token_id = int(hf.pad_token_id if hf.pad_token_id is not None else 0)

    def __repr__(self) -> str:
        return f"BlipTokenizer({type(self.hf).__name__}, context_length={self.context_length})"

    def __call__(self, texts: Any) -> Any:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = self.hf(texts, padding="max_length", truncation=True, max_length=self.context_length,
                      return_tensors="pt", return_token_type_ids=False, return_attention_mask=False)
        return out["input_ids"].long()


# --------------------------------------------------------------------------- model


class BlipRetrieval(torch.nn.Module):
    """``BlipForImageTextRetrieval`` (``.hf``) with a learned temperature, in open_clip's calling convention:
    ``encode_image`` / ``encode_text`` (unnormalised ITC embeddings), ``logit_scale`` (log inverse temperature),
    ``forward(images, tokens) -> (image_features, text_features, logit_scale.exp())`` (normalised), plus the ITM
    head: :meth:`image_embeds` (vision tokens) and :meth:`itm_logits` ([N, 2], column 1 "match").

    ``forward(..., itm_positive=P)`` also runs BLIP's ITM objective on the batch: one hard negative text per
    image and one hard negative image per text, sampled (no gradient) from the softmax of the contrastive
    similarities with the pairs marked True in ``P`` [B, B] (the text is true of the image) left out, and returns
    ``(image_features, text_features, logit_scale.exp(), itm_logits, itm_labels)`` over the positives then the
    negatives (label 1 = match). ``itm_seed`` seeds the sampling (exact resume)."""

    def __init__(self, hf: Any, logit_scale: float, pad_token_id: int = 0):
        super().__init__()
        self.hf = hf
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(logit_scale)))
        self.pad_token_id = int(pad_token_id)

    @property
    def config(self) -> Any:
        return self.hf.config

    def _mask(self, tokens: Any) -> Any:
        return (tokens != self.pad_token_id).long()

    def image_embeds(self, images: Any) -> Any:
        """The vision encoder's last hidden states [N, 1 + patches, hidden] (what the ITM head attends to)."""
        return self.hf.vision_model(pixel_values=images).last_hidden_state

    def _text_cls(self, tokens: Any) -> Any:
        return self.hf.text_encoder(input_ids=tokens, attention_mask=self._mask(tokens)).last_hidden_state[:, 0]

    def encode_image(self, images: Any, normalize: bool = False) -> Any:
        f = self.hf.vision_proj(self.image_embeds(images)[:, 0])
        return F.normalize(f, dim=-1) if normalize else f

    def encode_text(self, tokens: Any, normalize: bool = False) -> Any:
        f = self.hf.text_proj(self._text_cls(tokens))
        return F.normalize(f, dim=-1) if normalize else f

    def itm_logits(self, image_embeds: Any, tokens: Any) -> Any:
        """ITM logits [N, 2] of pairs (``image_embeds[n]``, ``tokens[n]``)."""
        atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.hf.text_encoder(input_ids=tokens, attention_mask=self._mask(tokens),
                                   encoder_hidden_states=image_embeds, encoder_attention_mask=atts)
        return self.hf.itm_head(out.last_hidden_state[:, 0])

    def forward(self, images: Any, tokens: Any, itm_positive: Any = None, itm_seed: int | None = None) -> Any:
        v = self.image_embeds(images)
        img = F.normalize(self.hf.vision_proj(v[:, 0]), dim=-1)
        txt = F.normalize(self.hf.text_proj(self._text_cls(tokens)), dim=-1)
        scale = self.logit_scale.exp()
        if itm_positive is None:
            return img, txt, scale
        logits, labels = self._itm_with_hard_negatives(v, tokens, img, txt, scale, itm_positive, itm_seed)
        return img, txt, scale, logits, labels

    def _itm_with_hard_negatives(self, v: Any, tokens: Any, img: Any, txt: Any, scale: Any, positive: Any,
                                 seed: int | None) -> tuple[Any, Any]:
        b = v.shape[0]
        positive = positive.to(v.device, torch.bool)
        if positive.shape != (b, b):
            raise ValueError(f"itm_positive has shape {tuple(positive.shape)}, expected ({b}, {b})")
        with torch.no_grad():
            sim = scale.detach().float() * img.detach().float() @ txt.detach().float().T
            w_i2t = sim.softmax(dim=1).masked_fill(positive, 0)  # image i -> a text false of it
            w_t2i = sim.T.softmax(dim=1).masked_fill(positive.T, 0)  # text j -> an image it is false of
            g = torch.Generator(device=v.device)
            g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
            has_t, has_i = w_i2t.sum(1) > 0, w_t2i.sum(1) > 0  # a row without any negative adds no pair
            neg_txt = torch.multinomial(w_i2t[has_t], 1, generator=g).squeeze(1)
            neg_img = torch.multinomial(w_t2i[has_i], 1, generator=g).squeeze(1)
        rows = torch.arange(b, device=v.device)
        image_side = torch.cat([v, v[neg_img], v[rows[has_t]]])
        text_side = torch.cat([tokens, tokens[rows[has_i]], tokens[neg_txt]])
        logits = self.itm_logits(image_side, text_side)
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=v.device)
        labels[:b] = 1
        return logits, labels


# --------------------------------------------------------------------------- bundle


@dataclass
class BlipBundle(ImageTextBundleMixin):
    """A BLIP with everything needed to use it (the "blip" family of :mod:`mmcore.encoders.family`)."""

    family: ClassVar[str] = "blip"

    model: Any  # BlipRetrieval
    tokenizer: Any  # BlipTokenizer: list[str] -> LongTensor [N, context_length]
    preprocess_train: Any
    preprocess_eval: Any
    model_name: str
    image_size: int
    image_processor: Any  # transformers BlipImageProcessor (saved with the model)

    @property
    def hf(self) -> Any:
        """The transformers ``BlipForImageTextRetrieval``."""
        return self.model.hf

    def itm_score(self, images: Any, tokens: Any) -> Any:
        """P(match) [N] of pairs (``images[n]``, ``tokens[n]``) from the ITM head."""
        return self.model.itm_logits(self.model.image_embeds(images), tokens).float().softmax(dim=-1)[:, 1]

    def save(self, out_dir: str | Path) -> None:
        save_blip(self, out_dir)

    def image_tower(self) -> list[Any]:
        """BLIP's ViT and its projection into the shared space."""
        return [self.hf.vision_model, self.hf.vision_proj]


def _image_processor(image_size: int, mean: Any = OPENAI_MEAN, std: Any = OPENAI_STD) -> Any:
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": int(image_size), "width": int(image_size)},
                              image_mean=list(mean), image_std=list(std))


def _preprocess(image_processor: Any) -> tuple[int, Any, Any]:
    """(image size, train, eval) preprocessing from a BlipImageProcessor: its size, mean and std, BLIP's
    bicubic squash resize (tensor preprocessing up to 64 px, as for CLIP)."""
    from mmcore.encoders.clip import make_preprocess

    size = image_processor.size
    get = size.get if hasattr(size, "get") else (lambda k, d=None: getattr(size, k, d))
    h, w = get("height"), get("width")
    if h is None or w is None or int(h) != int(w):
        raise MMError(f"BLIP image processor size {dict(size) if hasattr(size, 'keys') else size}: only square "
                      "height x width sizes are supported")
    mean = tuple(float(m) for m in (image_processor.image_mean or OPENAI_MEAN))
    std = tuple(float(s) for s in (image_processor.image_std or OPENAI_STD))
    train, ev = make_preprocess(int(h), {"mean": mean, "std": std, "interpolation": "bicubic", "resize_mode": "squash"})
    return int(h), train, ev


def _bundle(hf: Any, tokenizer: Any, image_processor: Any, model_name: str, device: str) -> BlipBundle:
    extras = getattr(hf.config, MM_KEY, None) or {}
    scale = extras.get("logit_scale", getattr(hf.config, "logit_scale_init_value", math.log(1 / 0.07)))
    ctx = int(extras.get("context_length") or min(DEFAULT_CONTEXT_LENGTH, int(tokenizer.model_max_length or 10**6),
                                                  int(hf.config.text_config.max_position_embeddings)))
    tok = BlipTokenizer(tokenizer, ctx)
    model = BlipRetrieval(hf, float(scale), tok.pad_token_id).to(device)
    model.eval()
    size, train_pp, eval_pp = _preprocess(image_processor)
    return BlipBundle(model, tok, train_pp, eval_pp, model_name, size, image_processor)


def blip_config(name: str) -> Any:
    """The ``BlipConfig`` of a project model (``model_configs/blip/NAME.json``), its text vocabulary and special
    token ids those of :func:`shapes_tokenizer`."""
    from transformers import BlipConfig

    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise MMError(f"unknown project BLIP {name!r} (project BLIPs: {', '.join(project_model_names())}; a "
                      "transformers folder or hub id loads with load_blip)")
    spec = dict(read_json(path))
    ctx = int(spec.pop("mm_context_length", DEFAULT_CONTEXT_LENGTH))
    vocab = shapes_vocab()
    text = {**spec.pop("text_config", {}), "vocab_size": len(vocab), "pad_token_id": vocab["[PAD]"],
            "bos_token_id": vocab["[CLS]"], "sep_token_id": vocab["[SEP]"], "eos_token_id": vocab["[SEP]"]}
    cfg = BlipConfig(text_config=text, vision_config=spec.pop("vision_config", {}), **spec)
    setattr(cfg, MM_KEY, {"format": FORMAT, "model_name": name, "context_length": ctx,
                          "logit_scale": math.log(1 / 0.07)})
    return cfg


def create_blip(model_name: str = "mm-tiny-blip", pretrained: str | None = None, *, device: str = "cpu") -> BlipBundle:
    """A project BLIP by name with random weights (offline), or — any other name — :func:`load_blip` of a
    transformers folder or hub id. ``pretrained`` is CLIP's notion (a tag or checkpoint): a BLIP's trained weights
    are its folder, so it must be None."""
    if pretrained:
        raise MMError(f"BLIP takes no pretrained tag or checkpoint ({pretrained!r}): pass the transformers folder or "
                      "hub id as the model")
    if model_name not in project_model_names():
        return load_blip(model_name, device=device)
    from transformers import BlipForImageTextRetrieval

    cfg = blip_config(model_name)
    ctx = getattr(cfg, MM_KEY)["context_length"]
    with torch.device("cpu"):
        hf = BlipForImageTextRetrieval(cfg)
    return _bundle(hf, shapes_tokenizer(ctx), _image_processor(cfg.vision_config.image_size), model_name, device)


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~")) and not Path(s).exists()


def load_blip(source: str | Path, pretrained: str | None = None, *, device: str = "cpu") -> BlipBundle:
    """A BLIP from a transformers folder (``BlipForImageTextRetrieval`` weights + its tokenizer and image
    processor; a BLIP run directory's ``model/``), a hub id (downloads: needs the network) or a project model name
    (random weights, :func:`create_blip`)."""
    if pretrained:
        raise MMError(f"BLIP takes no pretrained tag or checkpoint ({pretrained!r}): pass the transformers folder or "
                      "hub id as the model")
    s = str(source)
    path = Path(source)
    if not path.is_dir() and s in project_model_names():
        return create_blip(s, device=device)
    if path.is_dir():
        folder = blip_folder(path)
        if folder is None:
            raise DataError(path, "not a transformers BLIP folder (no config.json with model_type 'blip', here or in "
                                  "model/)")
        if not any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
            raise DataError(folder, "no tokenizer files (tokenizer.json / vocab.txt): save the tokenizer with the model "
                                    "(BlipProcessor.save_pretrained)")
        where, name = str(folder), _read_extras(folder).get("model_name") or path.name
    elif _looks_like_hub_id(s):
        where, name = s, s
    else:
        raise DataError(path, "model directory not found (a BLIP is a transformers folder, a hub id such as "
                              f"Salesforce/blip-itm-base-coco, or a project model: {', '.join(project_model_names())})")
    from transformers import AutoTokenizer, BlipForImageTextRetrieval, BlipImageProcessor

    try:
        hf = BlipForImageTextRetrieval.from_pretrained(where)
        tokenizer = AutoTokenizer.from_pretrained(where)
    except OSError as e:
        raise MMError(f"cannot load the BLIP {where!r} ({e}); a hub id needs the network, a folder its files") from None
    try:
        image_processor = BlipImageProcessor.from_pretrained(where)
    except OSError:  # a folder saved without its processor: BLIP's normalisation at the config's size
        image_processor = _image_processor(hf.config.vision_config.image_size)
    return _bundle(hf, tokenizer, image_processor, name, device)


def _read_extras(folder: Path) -> dict[str, Any]:
    cfg = read_json(folder / "config.json")
    extras = cfg.get(MM_KEY) if isinstance(cfg, dict) else None
    return extras if isinstance(extras, dict) else {}


def save_blip(bundle: BlipBundle, out_dir: str | Path) -> Path:
    """Write ``bundle`` in transformers' format into ``out_dir``: config.json (with the project's ``mm_blip`` keys),
    model.safetensors, the tokenizer and the image processor (``BlipProcessor.save_pretrained``). Returns
    ``out_dir``."""
    from transformers import BlipProcessor

    from mmcore.checkpoint import unwrap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = unwrap(bundle.model)
    hf = model.hf
    extras = {**(getattr(hf.config, MM_KEY, None) or {}), "format": FORMAT, "model_name": bundle.model_name,
              "logit_scale": float(model.logit_scale.detach().float().item()),
              "context_length": bundle.tokenizer.context_length}
    setattr(hf.config, MM_KEY, extras)
    hf.save_pretrained(out, safe_serialization=True)
    tok = bundle.tokenizer.hf
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:  # calls leave padding / truncation set on the backend: save it without them
        backend.no_padding()
        backend.no_truncation()
    BlipProcessor(image_processor=bundle.image_processor, tokenizer=tok).save_pretrained(out)
    bundle.image_processor.save_pretrained(out)  # preprocessor_config.json as well, for older readers
    return out
