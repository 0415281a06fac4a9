"""Model and training configs.

``ModelConfig()`` is the paper's configuration (dim 512, 22 source tokens, depth 3, 8 heads);
``PRESETS`` adds smaller CPU configs, named as such. A training run picks a preset with
``size = "cpu-small"`` and overrides single fields with ``--set arch.dim=64``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mmcore.distributed import AcceleratorConfig
from mmcore.errors import ConfigError


@dataclass
class ModelConfig:
    kind: str = "sasrnet"  # a registered model (sasrnet.registry): sasrnet | avst (no source tokens) | blind
    dim: int = 512
    n_sources: int = 22  # one learnable token per Music-AVQA instrument
    depth: int = 3  # pre-norm transformer blocks per modality in the SaSR module
    heads: int = 8
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    token_mlp_hidden: int = 256  # token-mixing MLP of the grouping block (22 -> 256 -> 22)
    temporal_heads: int = 4
    dropout: float = 0.1  # temporal-attention dropout
    gumbel_tau: float = 1.0
    n_segments: int = 10  # T; the audio branch regroups by the T visual segments (set from the training data)
    # the match loss's negatives: "full" (the public code) runs the whole network, SaSR module included,
    # again on the other videos' frames; "reuse_audio" keeps the positive pass's A'' and reruns only the
    # visual branch (cheaper, but the negative's audio features then carry the positive frames' regrouping)
    negative_pass: str = "full"
    # False (published): A'', V'' are the SaSR module's outputs. True: a zero-initialised scalar gate per
    # stream, A'' = A + g_a (SaSR(A) - A), so training starts from AVST and opens the module as it helps
    sasr_gate: bool = False
    audio_dim: int = 128
    visual_channels: int = 512  # C of the [T, C, H, W] grid; taken from the features at training time
    grid_h: int = 14  # H and W of the grid; taken from the features at training time
    grid_w: int = 14
    # "linear": the paper (512-channel ResNet maps used as they are, other C projected per cell);
    # "conv": a 3x3-conv stem + cell position embedding, for low-level grids such as ``pixels`` (see model.ConvStem)
    visual_stem: str = "linear"
    stem_stride: int = 1  # stride of the conv stem's 3x3 conv (2: a 14x14 grid becomes 7x7, 4x less grid compute)
    word_vocab: int = 93  # set from the question vocabulary at training time
    n_answers: int = 42  # set from the answer vocabulary at training time
    multiple_choice: bool = False  # AVQA-Yang: score 4 answer choices instead of a vocabulary softmax
    w_match: float = 0.5
    w_source: float = 0.5
    w_cls: float = 0.5


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # small enough to train on the synthetic world on one CPU core (the CPU benchmark's and the demo's size)
    "cpu-small": {"dim": 128, "depth": 2, "heads": 4, "token_mlp_hidden": 64, "drop_path": 0.05,
                  "visual_stem": "conv", "stem_stride": 2},
    # for tests only
    "cpu-tiny": {"dim": 32, "depth": 1, "heads": 2, "token_mlp_hidden": 16, "temporal_heads": 2, "drop_path": 0.0,
                 "dropout": 0.0, "visual_stem": "conv", "stem_stride": 2},
}


def model_config(kind: str, size: str = "paper", overrides: dict[str, Any] | None = None, *,
                 sources: dict[str, str] | None = None) -> ModelConfig:
    """The preset ``size`` for model ``kind`` with ``overrides`` (strings coerced, unknown keys rejected).

    ``overrides`` are a run config's ``arch`` table: errors name them ``arch.KEY`` and say where they came
    from, ``sources["arch.KEY"]`` (``"run.yaml:4"``, ``"--set arch.dim=8"``; default ``arch.KEY=VALUE``)."""
    from mmcore.config import resolve_config

    from sasrnet.registry import avqa_model_spec

    avqa_model_spec(kind)  # a ConfigError naming the registered models
    if size not in PRESETS:
        raise ConfigError(f"unknown model size {size!r}; choose one of {', '.join(PRESETS)}")
    labels = {k: (sources or {}).get(f"arch.{k}") or f"arch.{k}={v}" for k, v in (overrides or {}).items()}
    return resolve_config(ModelConfig, overrides={**PRESETS[size], **(overrides or {}), "kind": kind},
                          prefix="arch.", sources=labels)


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainConfig:
    model: str = "sasrnet"  # a registered model (sasrnet.registry; `mm avqa models`)
    size: str = "paper"  # a key of PRESETS
    arch: dict[str, Any] = field(default_factory=dict)  # ModelConfig field overrides, e.g. arch.dim=64
    epochs: int = 80
    batch_size: int = 16
    eval_batch_size: int = 64
    # DataLoader workers building batches (mmap'd feature reads, collation) ahead of the step; 0: this
    # process. Batches depend only on their indices and seeds, so the count never changes results.
    num_workers: int = 2
    lr: float = 1e-4
    step_size: int = 16  # StepLR, per epoch
    gamma: float = 0.3
    # "default": PyTorch's init of the answer classifier (the paper's). "prior": its bias starts at the log
    # frequency of each training answer (AVQAModel.set_answer_prior), so early steps need not learn the prior
    answer_bias_init: str = "default"
    # standardise audio and visual features per channel with TRAIN statistics (saved with the weights);
    # off in the paper. The CPU recipe turns it on: the synthetic pixel-statistics grids are not unit-scale
    standardize_inputs: bool = False
    # learning-rate multiplier of the SaSR module's parameters (the paper: 1)
    sasr_lr_scale: float = 1.0
    warmup_steps: int = 0  # linear learning-rate warm-up (optimizer steps); the paper has none
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping (the paper's)
    seed: int = 1
    # 0: batches shuffle questions freely (the paper). k > 0: batches are built from runs of up to k
    # questions about one video (mmcore.distributed.grouped_global_batches), and the model computes each
    # video's features once per batch (a batch of 32 with k=4 runs the video part for ~8 videos): faster steps,
    # less mixed batches
    questions_per_video: int = 0
    n_segments: int = 10
    max_question_len: int = 14
    checkpoint_every_steps: int = 200  # periodic resumable checkpoint (also written at every epoch end)
    max_train_questions: int = 0  # 0 = all; >0 keeps a deterministic prefix (smoke runs)
    cache_features: bool = False  # keep each video's features in memory (small synthetic sets; not 48 GB Music-AVQA)
    init_from: str = ""  # weights to start from (e.g. a grounding-trained AVST's model.safetensors); a missing file is an error
    skip_bad: bool = False  # skip (and count) missing / malformed feature files instead of failing
    multiple_choice: bool = False  # AVQA-Yang style 4-way questions
    # the match loss's negative frames: "shuffled" (the public code: each segment a frame of a random other
    # video) or "coherent" (all T frames of one other clip, in order: a negative that looks like a real clip)
    negatives: str = "shuffled"
    # per epoch, diagnostics on this many fixed validation questions (attention entropies, stream similarity,
    # input-gradient norms, match accuracy on coherent negatives: sasrnet.diagnostics); 0 = none
    diagnostics_questions: int = 64
    accelerator: AcceleratorConfig = field(default_factory=AcceleratorConfig)


@dataclass
class GroundingConfig:
    """ST-AVQA's grounding pre-training (the paper starts from it): only the audio-visual match task
    (does this audio belong to these frames, or to another video's?) on one sample per training video.
    It trains the audio embedding, the visual stem, the spatial grounding and the match head; the
    weights it writes are meant for ``TrainConfig.init_from`` of AVST and SaSR-Net alike. The defaults
    are ST-AVQA's. The CPU benchmark does not use it: on the small synthetic world it did not help
    (docs/departures.md)."""

    size: str = "paper"  # a key of PRESETS (use the size of the later training run)
    arch: dict[str, Any] = field(default_factory=dict)  # ModelConfig field overrides, as in TrainConfig
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    step_size: int = 8  # StepLR, per epoch
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float = 0.0
    seed: int = 1
    n_segments: int = 10
    max_question_len: int = 14
    standardize_inputs: bool = False  # as TrainConfig.standardize_inputs
    cache_features: bool = False
    skip_bad: bool = False
    accelerator: AcceleratorConfig = field(default_factory=AcceleratorConfig)


@dataclass
class EvalConfig:
    """`mm avqa eval` / :func:`sasrnet.evaluate` settings (the model, data and output are paths given apart)."""

    annotations: str | None = None  # annotation file to evaluate; None: the data dir's test split
    batch_size: int = 64  # questions per batch
    skip_bad: bool = False  # skip and count bad entries and missing features
