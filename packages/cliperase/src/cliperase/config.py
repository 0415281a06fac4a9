"""Typed configuration of an unlearning run (`mm unlearn run`), with documented defaults.

Defaults are chosen for the offline tiny CLIP (``mm-tiny-clip``, 32 px shapes) on a CPU; the paper's
settings for a pretrained ViT-B/32 are noted next to each field where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcore.distributed import AcceleratorConfig
from mmcore.errors import ConfigError
from mmcore.presets import load_preset

MODULES = ("fm", "fm+rm", "fm+rm+cm")
FM_VARIANTS = ("similarity", "negated_ce")
SIMILARITIES = ("cosine", "dot")
TEXT_SOURCES = ("caption", "prompt", "mixed")


@dataclass
class ForgetSpec:
    """Which samples form D_f. Exactly one of ``classes``, ``keyword``, ``ratio``, ``ids_file`` is set."""

    classes: list[str] = field(default_factory=list)  # class names, e.g. ["circle"]
    keyword: str | None = None  # whole word, case-insensitive, matched against every caption
    ratio: float | None = None  # seeded random fraction of the classes (CIFAR-100: 0.03, 0.1, 0.2, 0.3)
    ids_file: str | None = None  # text file, one record id per line ('#' comments allowed)
    seed: int = 0  # seed of the random class choice for ``ratio``


@dataclass
class RelearnConfig:
    """Relearn-time robustness check (:func:`cliperase.relearn.relearn_steps`): fine-tune a copy of the model
    until its accuracy on held-out forget images (evaluation templates) recovers half of the original's; report
    the steps (capped) and the curve.

    The protocol can restore the association: both towers trainable (an unlearning that froze the image tower
    does not keep it frozen here), BatchNorm in train mode as in pretraining, and each batch mixes D_f pairs
    with D_r pairs, the texts class prompts (unlearning templates) of every class present, so the contrastive
    negatives of a forget image include the other classes' prompts. Retrain's relearn steps are the reference
    for "never learned"."""

    enabled: bool = True
    lr: float = 1e-4
    batch_size: int = 32  # pairs per step, D_f and D_r together
    forget_fraction: float = 0.5  # share of D_f pairs in each batch
    text: str = "prompt"  # "prompt": class prompts (captions where a record has no class) | "caption" | "mixed"
    max_steps: int = 200  # cap; ``cap_hit`` is reported when reached
    eval_every: int = 10
    eval_samples: int = 256  # held-out forget images of the accuracy checks (seeded subsample)


@dataclass
class SlugConfig:
    """SLUG, Single Layer Unlearning Gradient (Cai, Tan, Asif, ICML 2025; public code CSIPlab/SLUG):
    one gradient computation on D_f (mean cosine similarity of the forget pairs) and one on D_r (the CLIP
    loss); per layer the importance ||g_f|| / ||theta|| and the alignment |cos(g_f, g_r)|; the layers on the
    Pareto front of each tower (high importance, low alignment); for each, a binary search on the step size
    of theta <- theta - step * g_f against validation data (D_f / D_r training images, unlearning templates;
    no held-out data); the layer whose searched step meets the target with the best retain validation
    accuracy gets its one update. See :mod:`cliperase.slug`."""

    retain_grad_samples: int = 1024  # D_r pairs of the retain gradient (seeded subsample; 0 = all of D_r)
    forget_grad_samples: int = 0  # D_f pairs of the forget gradient (0 = all of D_f, as published)
    val_samples: int = 256  # D_f and D_r training images (each) of the search's validation accuracies
    # The search shrinks the step while the D_f validation accuracy is at most this (percent) and grows it
    # otherwise. Published: top-5 accuracy 0 among 100 identities; here top-1 (with ten shapes, top-5 is half
    # the classes).
    target_accuracy: float = 0.0
    search_iters: int = 10  # published MAX_ITERATIONS
    initial_fraction: float = 0.1  # first step = this x ||theta|| / ||g_f|| (published: 1 / INITIAL_RATIO_DIVISOR)
    max_layers: int = 0  # Pareto layers searched, highest importance first (0 = every layer on the fronts)


@dataclass
class RetrainConfig:
    """Retrain baseline: the CLIP pretraining loop (mmcore.clip_train.train_clip) on D_r from random weights.

    ``steps = 0`` means "as many as the original pretraining" when the model directory records it
    (clip_config.json / config.json written by `mm clip pretrain`), else ``fallback_steps``."""

    steps: int = 0
    fallback_steps: int = 2000
    lr: float = 0.0  # 0 → the pretraining config's lr (or mmcore.clip_train's default)
    batch_size: int = 0  # 0 → the pretraining config's batch size (or mmcore.clip_train's default)


# `mm unlearn compare` variant "cliperase-paper": the paper's setting where it differs from the defaults
# (both encoders fine-tuned, forget pairs with their captions); see the comment block in UnlearnConfig.
# Read from its committed preset, cliperase/configs/unlearn/paper.yaml (package data; `mm unlearn run --preset paper`).
PAPER_SETTING: dict[str, object] = load_preset("cliperase", "unlearn", "paper")
TOWERS = ("auto", "text", "both")
MULTIDELETE_UNIMODAL = ("image+text", "image")


@dataclass
class UnlearnConfig:
    """One unlearning run. The total CLIPErase loss is L = λ_retain·L_RM + λ_forget·L_FM + λ_consistency·L_CM."""

    method: str = "cliperase"  # a registered method (cliperase.methods; `mm unlearn methods` lists them)
    model: str = "mm-tiny-clip"  # saved model dir (mm clip pretrain / mm unlearn run) or open_clip name
    pretrained: str | None = None  # open_clip pretrained tag or local checkpoint file
    dataset: str = "shapes"  # mmcore.data.registry name: shapes | cifar100 | flickr30k | cc12m | wds
    data_root: str | None = None
    caption_file: str = "auto"  # flickr30k: auto | karpathy | csv (which caption file when both exist)
    # Shapes: 0 / None → the values the model was pretrained with (its config.json from `mm clip pretrain`),
    # so D_f ∪ D_r is exactly the model's training data; else the loader defaults (10000 / 2000, seed).
    n_train: int = 0
    n_test: int = 0
    data_seed: int | None = None
    # Shapes: what a label names, "shape" | "shape_color" (100 classes "red circle", ...); None → the pretraining
    # run's value (its config.json), else "shape".
    shapes_classes: str | None = None
    limit: int = 0  # real datasets: read at most this many records per split (0 = all)
    test_split: str = "auto"  # held-out split name; "auto": "test" where the dataset has one
    holdout_fraction: float = 0.1  # with test_split "none" (auto for cc12m / wds): seeded share of train held out
    skip_bad: bool = False  # skip (and count) unreadable items instead of failing (flickr30k, cc12m, wds)
    forget: ForgetSpec = field(default_factory=ForgetSpec)

    # Loss weights (paper: λ1 = 1 retain, λ2 = 3 forget, λ3 = 3 consistency).
    lambda_retain: float = 1.0
    lambda_forget: float = 3.0
    lambda_consistency: float = 3.0
    similarity: str = "cosine"  # FM on L2-normalised features (the doc's safer default) or raw "dot"
    # Which encoders unlearning updates. The paper fine-tunes both ("both", also PAPER_SETTING); CLIPErase's
    # default ("auto" -> "text") keeps the image tower (weights and BatchNorm statistics) as it was: updating it
    # moved neighbouring classes' images along with the forgotten ones, and a text-to-image model given the
    # unlearned text encoder still drew the forgotten shape (benchmarks unlearn_defaults and diffusion_shapes; the
    # figures are in docs/departures.md). It also halves the step (no image backward; the original's image features are
    # the model's own).
    # "auto" (default): each method's own setting (its class's ``towers``: "text" for CLIPErase and most
    # baselines, "both" for MultiDelete and SLUG, as published); see UnlearningMethod.towers_for.
    towers: str = "auto"
    # FM hinge at m: mean relu(sim - m) (pushed "to zero or below", then left alone); None: the plain mean
    # similarity of the paper's description, pushed on towards -1.
    fm_margin: float | None = None
    modules: str = "fm+rm+cm"  # ablation: "fm" | "fm+rm" | "fm+rm+cm"
    fm_variant: str = "similarity"  # "similarity" (paper) | "negated_ce" (gradient ascent on forget rows)
    # True: BatchNorm layers (ResNet towers) use and keep the original running statistics, so batches with a
    # fixed share of forget samples do not shift every class's features. Shared by every method. Matters only
    # with towers="both" (a frozen image tower keeps its statistics) and towers with BatchNorm (not ViTs).
    freeze_norm_stats: bool = False
    train_logit_scale: bool = False  # not reported in the paper; frozen keeps RM/CM temperatures fixed
    text: str = "caption"  # forget/retain pair text: record "caption", class "prompt" (template), or "mixed"
    # Forget-pair text where it differs from ``text`` (None: the same). "mixed" (default): half the forget pairs
    # use a class prompt, so FM targets the concept's name more than the attribute words its captions share
    # with retain captions (benchmark unlearn_defaults). Records without a class (keyword / id forget sets on
    # caption data) use their captions.
    forget_text: str | None = "mixed"
    # MultiDelete's unimodal retention on D_f: "image+text" keeps f'(I) ~ f(I) and f'(T) ~ f(T) (the form of the
    # public retrieval task and the comment of its classification task); "image": the image term alone, which is
    # what the public classification task's code computes (its 'image' flag).
    multidelete_unimodal: str = "image+text"

    # Optimisation. The paper used Adam lr 1e-6, batch 16, 20 epochs on a pretrained ViT-B/32. The tiny
    # CPU CLIP (8M parameters, pretrained in a few hundred steps at lr 2e-3) needs a far larger step to
    # move within a few dozen steps; 50 steps of 32 + 32 pairs see 6 % of the samples of the tiny CLIP's
    # default pretraining (400 steps of 128), i.e. of Retrain. For a pretrained ViT-B/32, use the paper's lr 1e-6.
    optimizer: str = "adam"  # "adam" | "adamw"
    lr: float = 1e-4
    lr_schedule: str = "constant"  # "constant" (the paper reports no schedule) | "cosine" (decay to 0 over steps)
    weight_decay: float = 0.0
    steps: int = 50  # optimisation steps; each draws one forget and one retain batch
    batch_size: int = 32  # retain pairs per step (global, across processes)
    forget_batch_size: int = 32  # forget pairs per step (global)
    grad_clip: float = 1.0  # 0 disables
    seed: int = 0
    checkpoint_every: int = 25  # steps; 0 disables periodic checkpoints (final model is still saved)
    log_every: int = 10

    # Prompt templates (cliperase.templates), two disjoint sets. eval_templates: the zero-shot templates of every
    # reported accuracy; unlearn_templates: the class prompts of unlearning, relearning and SLUG's search, which
    # also never pair an image with a caption equal to an evaluation prompt. Empty: the dataset's templates,
    # every other one from the first for evaluation, the rest for unlearning (shapes: "a photo of a {}" / "a {}").
    eval_templates: list[str] = field(default_factory=list)
    unlearn_templates: list[str] = field(default_factory=list)

    # Evaluation. The headline forget_accuracy is on the held-out forget images (the test split of the forget
    # set), forget_train_accuracy on D_f itself.
    eval_batch_size: int = 256
    # Image decoding workers (DataLoader) for evaluation, unlearning steps and SLUG; None: from the CPU count
    # (mmcore.data.loading.default_num_workers; fewer than 512 images decode in this process), 0: this process.
    num_workers: int | None = None
    # Recall@K gallery: held-out forget + held-out retain images (each part a seeded subsample of at most this
    # many images, for speed) with all their captions, every query ranked against the whole gallery.
    retrieval_max_pairs: int = 500
    mia_max_samples: int = 1000  # per split (retain, test, forget) for the membership-inference attack
    # Zero-shot accuracy: a seeded subsample of at most this many images per split (0 = all). 2000 bounds the
    # binomial standard error of every accuracy by 50/sqrt(2000) = 1.1 points (smaller splits are used whole);
    # each run records n and the standard error of every number. The tiny CLIP's full D_r is 14,400 images.
    eval_max_samples: int = 2000
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    slug: SlugConfig = field(default_factory=SlugConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    accelerator: AcceleratorConfig = field(default_factory=lambda: AcceleratorConfig(log_with="none"))

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an invalid combination."""
        from mmcore.data.image_text import FLICKR_CAPTION_FILES

        checks = [
            ("caption_file", self.caption_file, FLICKR_CAPTION_FILES),
            ("modules", self.modules, MODULES),
            ("fm_variant", self.fm_variant, FM_VARIANTS),
            ("similarity", self.similarity, SIMILARITIES),
            ("text", self.text, TEXT_SOURCES),
            ("forget_text", self.forget_text or self.text, TEXT_SOURCES),
            ("towers", self.towers, TOWERS),
            ("multidelete_unimodal", self.multidelete_unimodal, MULTIDELETE_UNIMODAL),
            ("optimizer", self.optimizer, ("adam", "adamw")),
            ("lr_schedule", self.lr_schedule, ("constant", "cosine")),
            ("relearn.text", self.relearn.text, TEXT_SOURCES),
        ]
        if self.shapes_classes is not None:
            from mmcore.data.shapes import CLASS_SCHEMES

            checks.append(("shapes_classes", self.shapes_classes, CLASS_SCHEMES))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        # the method itself is checked by its registry entry (cliperase.methods: name, steps > 0 where it uses steps)
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0; got {self.steps}")
        for name in ("batch_size", "forget_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive; got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive; got {self.lr}")
        for name in ("eval_templates", "unlearn_templates"):
            bad = [t for t in getattr(self, name) if "{}" not in t]
            if bad:
                raise ConfigError(f"{name}: template {bad[0]!r} has no '{{}}' placeholder for the class name")
        shared = set(self.eval_templates) & set(self.unlearn_templates)
        if shared:
            raise ConfigError(f"eval_templates and unlearn_templates must be disjoint; both hold {sorted(shared)!r}")
        rl = self.relearn
        if not 0.0 < rl.forget_fraction < 1.0 or rl.batch_size < 2:
            raise ConfigError("relearn batches mix D_f and D_r pairs: relearn.forget_fraction must be in (0, 1) and "
                              f"relearn.batch_size at least 2; got {rl.forget_fraction} and {rl.batch_size}")
        sl = self.slug
        if sl.search_iters < 1 or sl.initial_fraction <= 0 or sl.val_samples < 0:
            raise ConfigError("slug.search_iters must be >= 1, slug.initial_fraction > 0 and slug.val_samples >= 0")
        f = self.forget
        given = [bool(f.classes), f.keyword is not None, f.ratio is not None, f.ids_file is not None]
        if sum(given) != 1:
            raise ConfigError(
                "give exactly one forget set: --forget-classes, --forget-keyword, --forget-ratio or --forget-ids"
                f" (got {sum(given)})"
            )
        if f.ratio is not None and not 0.0 < f.ratio < 1.0:
            raise ConfigError(f"forget ratio must be in (0, 1); got {f.ratio}")
