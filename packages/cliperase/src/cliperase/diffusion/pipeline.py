"""Text-to-image pipelines whose CLIP text encoder can be swapped for an unlearned one.

Two kinds of pipeline are supported:

* :class:`ShapesDiffusionPipeline` — the project's offline default: a small pixel-space
  ``UNet2DConditionModel`` conditioned (cross-attention) on the per-token hidden states of the tiny
  CLIP text tower, sampled with a diffusers scheduler. Saved in diffusers layout (``model_index.json``
  + one folder per component, safetensors), trained by :mod:`cliperase.recipes.diffusion_pretrain`.
* any diffusers pipeline with ``unet`` / ``text_encoder`` / ``tokenizer`` components, e.g. a
  ``StableDiffusionPipeline`` loaded from a local folder or a hub id (SD 1.x pairs with ViT-L/14 towers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from mmcore.distributed import quiet_third_party_progress
from mmcore.errors import DataError, MMError
from mmcore.io import read_json


class ShapesDiffusionPipeline(DiffusionPipeline):
    """Pixel-space text-conditional diffusion: ``unet(x_t, t, encoder_hidden_states=text_states)``.

    ``patch_size`` p > 1: the UNet works on a space-to-depth view of the image (``pixel_unshuffle``:
    ``[3, S, S]`` → ``[3p², S/p, S/p]``), a lossless "latent" that divides the UNet's cost by about p².

    Classifier-free guidance uses the empty prompt as the unconditional input (the UNet was trained
    with prompt dropout to ``""``), so a swapped text encoder changes both branches consistently.
    """

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet: Any, scheduler: Any, text_encoder: Any, tokenizer: Any, patch_size: int = 1):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        self.register_to_config(patch_size=int(patch_size))

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Per-token last hidden states ``[B, L, D]`` of the text encoder (padded to max length)."""
        return encode_prompts(self.text_encoder, self.tokenizer, prompts, self._execution_device)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int = 25,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        **_: Any,
    ) -> ImagePipelineOutput | tuple:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        device = self._execution_device
        cond = self.encode_prompt(prompts)
        do_cfg = guidance_scale > 1.0
        if do_cfg:
            uncond = self.encode_prompt([""] * len(prompts))
            states = torch.cat([uncond, cond])
        else:
            states = cond
        size = self.unet.config.sample_size
        hw = (size, size) if isinstance(size, int) else tuple(size)
        shape = (len(prompts), self.unet.config.in_channels, *hw)
        x = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        x = x * self.scheduler.init_noise_sigma
        for t in self.progress_bar(self.scheduler.timesteps):
            inp = torch.cat([x, x]) if do_cfg else x
            inp = self.scheduler.scale_model_input(inp, t)
            out = self.unet(inp, t, encoder_hidden_states=states).sample
            if do_cfg:
                out_u, out_c = out.chunk(2)
                out = out_u + guidance_scale * (out_c - out_u)
            x = self.scheduler.step(out, t, x, generator=generator).prev_sample
        if self.config.patch_size > 1:
            x = torch.nn.functional.pixel_shuffle(x, self.config.patch_size)
        image = (x / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            image = image.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)


def encode_prompts(text_encoder: Any, tokenizer: Any, prompts: list[str], device: Any = "cpu") -> torch.Tensor:
    """Tokenize to the tokenizer's max length and return the encoder's last hidden states."""
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    return text_encoder(ids)[0]


def text_tower_from_clip(clip_dir: str | Path) -> tuple[Any, Any]:
    """Load a CLIP model dir (or open_clip name) and export its text tower as
    ``(transformers.CLIPTextModel, transformers.CLIPTokenizer)`` with mmcore's exporter."""
    from mmcore.encoders.clip import load_clip
    from mmcore.encoders.hf_export import export_text_tower

    bundle = load_clip(str(clip_dir))
    text_encoder, tokenizer = export_text_tower(bundle.model, bundle.model_cfg or bundle.model_name)
    return text_encoder.eval(), tokenizer


def swap_text_encoder(pipe: Any, text_encoder: Any, tokenizer: Any | None = None, *, source: str = "text encoder") -> Any:
    """Plug ``text_encoder`` (and its tokenizer) into ``pipe`` in place; returns ``pipe``.

    Raises :class:`MMError` when the encoder's hidden size differs from the UNet's cross-attention width
    (e.g. a ViT-B/32 tower (512) into Stable Diffusion 1.x (768, which pairs with ViT-L/14))."""
    unet = getattr(pipe, "unet", None)
    if unet is None or not hasattr(pipe, "text_encoder"):
        raise MMError(f"{type(pipe).__name__} has no unet/text_encoder components to swap")
    want = unet.config.cross_attention_dim
    want = want[0] if isinstance(want, list | tuple) else want
    have = text_encoder.config.hidden_size
    if int(have) != int(want):
        raise MMError(
            f"{source}: hidden size {have} does not match the pipeline UNet's cross_attention_dim {want}; "
            f"use a CLIP whose text width is {want} (Stable Diffusion 1.x pairs with ViT-L/14 text towers)"
        )
    dtype = getattr(unet, "dtype", torch.float32)
    pipe.text_encoder = text_encoder.to(device=pipe.device, dtype=dtype).eval()
    if tokenizer is not None:
        pipe.tokenizer = tokenizer
    return pipe


def load_pipeline(dir_or_id: str | Path, device: str = "cpu", *, text_components: bool = True) -> Any:
    """Load a diffusion pipeline: a ``mm diffusion pretrain`` dir, any local diffusers dir, or a hub id.

    ``text_components=False`` skips loading a generic pipeline's own text encoder and tokenizer (they are
    replaced by the swap anyway; for SD that saves loading a ViT-L/14 tower)."""
    quiet_third_party_progress()
    path = Path(dir_or_id)
    if path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise DataError(index, "not a diffusers pipeline folder (model_index.json missing)")
        cls_name = read_json(index).get("_class_name", "")
        if cls_name == ShapesDiffusionPipeline.__name__:
            return _load_shapes_pipeline(path).to(device)
        source = str(path)
    else:
        if str(dir_or_id).count("/") != 1:
            raise DataError(path, "pipeline folder not found (and not a hub id like 'owner/name')")
        source, cls_name = str(dir_or_id), ""
    kwargs: dict[str, Any] = {}
    if cls_name.startswith("StableDiffusion") or not path.exists():
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if not text_components:
        kwargs.update(text_encoder=None, tokenizer=None)
    try:
        pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
    except Exception as e:  # hub/network/format errors come as many types
        raise MMError(f"{source}: cannot load diffusion pipeline ({type(e).__name__}: {e})") from None
    return pipe.to(device)


def _load_shapes_pipeline(path: Path) -> ShapesDiffusionPipeline:
    # The tokenizer is always open_clip's BPE (mmcore's exporter); it is rebuilt offline rather than read
    # back, because a saved copy of that tokenizer does not round-trip exactly (its pad alias of id 0).
    from mmcore.encoders.hf_export import build_clip_tokenizer

    cfg_path = path / "text_encoder" / "config.json"
    try:
        n = int(read_json(cfg_path)["max_position_embeddings"])
    except (KeyError, TypeError, ValueError):
        raise DataError(cfg_path, "missing max_position_embeddings") from None
    try:
        return ShapesDiffusionPipeline.from_pretrained(str(path), tokenizer=build_clip_tokenizer(n))
    except Exception as e:  # noqa: BLE001 - diffusers raises many types for a damaged folder
        raise DataError(path, f"cannot load the shapes diffusion pipeline ({type(e).__name__}: {e})") from None


def generate(
    pipe: Any,
    prompt: str,
    n: int,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """``n`` images (``[n, H, W, 3]`` float in [0, 1]) for ``prompt``; image ``i`` uses seed ``seed + i``,
    so two text encoders see exactly the same starting noise."""
    gens = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(n)]
    kwargs: dict[str, Any] = dict(
        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=gens, output_type="np"
    )
    if not isinstance(pipe, ShapesDiffusionPipeline):
        kwargs["height"], kwargs["width"] = height, width
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    pipe.set_progress_bar_config(disable=True)
    out = pipe([prompt] * n, **kwargs).images
    return np.asarray(out, dtype=np.float32)
