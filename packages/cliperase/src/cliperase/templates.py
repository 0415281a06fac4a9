"""Prompt templates of a run, split in two disjoint sets so that forgetting is measured on prompts that
unlearning never optimised.

- ``evaluation``: the zero-shot templates of every reported accuracy (forget, retain, test) and of the MIA
  features. Default: every other template of the dataset, starting with the first (shapes: "a photo of a {}";
  CIFAR-100: 9 of the 18 CLIP templates); a dataset with one template evaluates on it.
- ``unlearning``: the templates that unlearning (and relearning, and SLUG's validation search) fill with a
  class name when it pairs an image with a class prompt. Default: the dataset's other templates (shapes:
  "a {}").

Captions can repeat an evaluation prompt word for word (shapes captions include "a photo of a circle",
CIFAR-100's caption is "a photo of a {class}"), so a pair text of unlearning is never a string that equals
an evaluation prompt of any class (compared lowercase, without the final punctuation): such captions are
skipped; a record left with no other caption gets a class prompt from the unlearning templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcore.data.records import ImageTextData
from mmcore.errors import ConfigError


def normalize_prompt(text: str) -> str:
    """Lowercase, whitespace collapsed, trailing ``.``/``!``/``?`` dropped: the form prompts are compared in."""
    return " ".join(text.lower().split()).rstrip(".!? ")


@dataclass(frozen=True)
class Templates:
    """The run's evaluation and unlearning templates, and the evaluation prompts unlearning must not use."""

    evaluation: tuple[str, ...]
    unlearning: tuple[str, ...]
    banned: frozenset[str] = field(default_factory=frozenset)  # normalised evaluation prompts, every class

    def allowed(self, text: str) -> bool:
        """Whether unlearning may pair an image with ``text`` (it is no evaluation prompt)."""
        return normalize_prompt(text) not in self.banned

    def to_dict(self) -> dict[str, object]:
        return {"evaluation": list(self.evaluation), "unlearning": list(self.unlearning),
                "rule": "disjoint: unlearning, relearning and SLUG's search never use an evaluation template, "
                        "nor a caption equal to an evaluation prompt"}


def _check(name: str, templates: list[str]) -> None:
    for t in templates:
        if "{}" not in t:
            raise ConfigError(f"{name}: template {t!r} has no '{{}}' placeholder for the class name")


def run_templates(data: ImageTextData, eval_templates: list[str] | None = None,
                  unlearn_templates: list[str] | None = None) -> Templates:
    """The disjoint template split for ``data`` (see the module doc); explicit lists replace the defaults.
    Raises :class:`ConfigError` when the two sets share a template."""
    base = list(dict.fromkeys(data.templates))
    if eval_templates:
        _check("eval_templates", list(eval_templates))
        evaluation = list(dict.fromkeys(eval_templates))
    else:
        evaluation = base[0::2] if len(base) >= 2 else base
    if unlearn_templates:
        _check("unlearn_templates", list(unlearn_templates))
        unlearning = list(dict.fromkeys(unlearn_templates))
    else:
        ev = {normalize_prompt(t) for t in evaluation}
        unlearning = [t for t in base if normalize_prompt(t) not in ev]
    shared = {normalize_prompt(t) for t in evaluation} & {normalize_prompt(t) for t in unlearning}
    if shared:
        raise ConfigError(f"eval_templates and unlearn_templates must be disjoint; both hold {sorted(shared)!r}")
    if not evaluation:
        raise ConfigError(f"dataset {data.name!r} has no prompt templates to evaluate with; set eval_templates")
    banned = frozenset(normalize_prompt(t.format(c)) for t in evaluation for c in (data.classnames or []))
    return Templates(tuple(evaluation), tuple(unlearning), banned)


def config_templates(data: ImageTextData, cfg: object) -> Templates:
    """:func:`run_templates` with an :class:`~cliperase.config.UnlearnConfig`'s ``eval_templates`` and
    ``unlearn_templates``."""
    return run_templates(data, getattr(cfg, "eval_templates", None), getattr(cfg, "unlearn_templates", None))
