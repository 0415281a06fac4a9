"""CLIPErase: unlearning visual–textual associations in CLIP (ACL 2025), with the GA, GradDiff, FT,
MultiDelete, SLUG and Retrain baselines, unlearning metrics and the runs behind `mm unlearn`.

    import cliperase, mmcore

    bundle = mmcore.load_clip("runs/clip")                        # a saved model dir or an open_clip name
    model = cliperase.unlearn(bundle, forget, retain, cliperase.UnlearnConfig(steps=50))   # D_f, D_r in memory

Heavy modules (torch, open_clip) load on first use of the functions re-exported here.
"""

from __future__ import annotations

from typing import Any

from cliperase.config import ForgetSpec, RelearnConfig, RetrainConfig, SlugConfig, UnlearnConfig

__all__ = [
    "ForgetSpec",
    "RelearnConfig",
    "RetrainConfig",
    "SlugConfig",
    "UnlearnConfig",
    "compare_methods",
    "evaluate_model",
    "get_method",
    "method_names",
    "register_method",
    "run_demo_unlearning",
    "run_unlearning",
    "split_forget_retain",
    "unlearn",
]


def __getattr__(name: str) -> Any:
    if name in ("run_unlearning", "evaluate_model", "compare_methods", "run_demo_unlearning"):
        from cliperase.recipes import runner

        return getattr(runner, name)
    if name in ("get_method", "method_names", "register_method"):
        from cliperase import methods

        return getattr(methods, name)
    if name == "unlearn":
        from cliperase.api import unlearn

        return unlearn
    if name == "split_forget_retain":
        from cliperase.forget_sets import split_forget_retain

        return split_forget_retain
    raise AttributeError(f"module 'cliperase' has no attribute {name!r}")
