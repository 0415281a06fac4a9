"""The unlearning-method registry: one class per method, registered by name, as open_clip and diffusers
build parts by name. The runner, the library call, the CLI's choices and help texts and
`mm unlearn compare --methods` all read this registry; no other code tests a method's name.

A method that trains by steps only states what its loss needs and how it is assembled (:meth:`needs`,
:meth:`loss`); the shared loop (:func:`cliperase.trainer.unlearning_loop`) does the rest. A method that does
not (SLUG's single update, Retrain's training from scratch) overrides :meth:`unlearn`. A new method is one
module with a ``@register_method`` class, imported before it is named (see DEVELOPERS.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from mmcore.errors import ConfigError
from mmcore.registry import Registry

from cliperase.config import UnlearnConfig
from cliperase.step_types import StepFeats

if TYPE_CHECKING:  # the registry itself stays torch-free: the CLI lists methods without loading torch
    import torch

    from cliperase.step_types import UnlearnResult

# a step's total loss and its named parts
Objective = tuple["torch.Tensor", dict[str, "torch.Tensor"]]

_REGISTRY: Registry[type[UnlearningMethod]] = Registry("unlearning method")


class UnlearningMethod:
    """What one unlearning method is. Class attributes describe it; instances hold no state."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""  # one line for `mm unlearn methods` and the CLI help
    order: ClassVar[int] = 100  # position in listings (the paper's method first)
    # the inputs of its loss: "forget" / "retain" batches, the "frozen" original (see :meth:`needs`)
    uses: ClassVar[tuple[str, ...]] = ()
    towers: ClassVar[str] = "text"  # the towers it updates under ``towers: auto`` ("text" | "both")
    uses_steps: ClassVar[bool] = True  # trains for ``cfg.steps`` steps (False: SLUG, Retrain)
    in_memory: ClassVar[bool] = True  # runs as a library call on given data (`cliperase.unlearn`)
    in_compare_default: ClassVar[bool] = True  # among `mm unlearn compare`'s default --methods
    reference: ClassVar[bool] = False  # the "never learned" reference every wall time is compared with
    # `mm unlearn compare` variants: name -> config updates (the method itself is added)
    variants: ClassVar[dict[str, dict[str, Any]]] = {}

    def check(self, cfg: UnlearnConfig) -> None:
        """Raise a clear error before anything is loaded when ``cfg`` cannot run this method."""
        if self.uses_steps and cfg.steps <= 0:
            raise ConfigError(f"steps must be positive; got {cfg.steps}")

    def towers_for(self, cfg: UnlearnConfig) -> str:
        """The towers unlearning updates: ``cfg.towers``, or this method's own setting when it is "auto"."""
        return self.towers if cfg.towers == "auto" else cfg.towers

    def needs(self, cfg: UnlearnConfig) -> dict[str, bool]:
        """Which inputs the loss uses: forget batch, retain batch, frozen original (default: ``uses``)."""
        return {k: k in self.uses for k in ("forget", "retain", "frozen")}

    def frozen_keys(self, cfg: UnlearnConfig) -> set[str]:
        """The batches ("f" forget, "r" retain) whose features the frozen original must encode."""
        return {"f", "r"}

    def loss(self, cfg: UnlearnConfig, s: StepFeats) -> Objective:
        """One step's total loss and its named parts (tensors), from the step's features ``s``."""
        raise NotImplementedError(f"method {self.name!r} has no step objective")

    @staticmethod
    def total(weights: dict[str, float] | None = None, **parts: torch.Tensor) -> Objective:
        """``(sum of weights[k] * part_k, parts)``, weight 1 where ``weights`` gives none."""
        w = weights or {}
        return sum(w.get(k, 1.0) * v for k, v in parts.items()), parts  # type: ignore[return-value]

    def unlearn(self, bundle: Any, split: Any, cfg: UnlearnConfig, accelerator: Any, run: Any = None,
                desc: str | None = None) -> UnlearnResult:
        """Unlearn ``split``'s forget set from ``bundle.model`` (changed in place) by the shared step loop."""
        from cliperase.trainer import unlearning_loop

        return unlearning_loop(self, bundle, split, cfg, accelerator, run, desc)

    def result_metrics(self, result: UnlearnResult) -> dict[str, Any]:
        """Extra entries of the run's metrics.json from what :meth:`unlearn` recorded (``result.info``)."""
        return {}


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Class decorator: make ``cls`` available by ``cls.name`` everywhere (runner, library, CLI)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    known = {v for c in _REGISTRY if c.name != cls.name for v in c.variants}
    names = {c.name for c in _REGISTRY}
    clash = {cls.name, *cls.variants} & (names - {cls.name} | known)
    old = _REGISTRY.find(cls.name)
    if clash or (old is not None and old.__qualname__ != cls.__qualname__):
        raise ValueError(f"unlearning method names already registered: {sorted(clash or {cls.name})}")
    _REGISTRY.unregister(cls.name)  # the same class defined again (a module re-imported) replaces itself
    return _REGISTRY.register(cls.name, cls)


def unregister_method(name: str) -> None:
    """Remove method ``name`` from the registry (a test's or a plugin's cleanup)."""
    _REGISTRY.unregister(name)


def method_names() -> list[str]:
    """Every registered method, in listing order."""
    return [c.name for c in sorted(_REGISTRY, key=lambda c: (c.order, c.name))]


def method_variants() -> dict[str, dict[str, Any]]:
    """Every `mm unlearn compare` variant: name -> config updates, the method included."""
    return {v: {"method": n, **upd} for n in method_names() for v, upd in _REGISTRY.find(n).variants.items()}


def get_method(name: str) -> UnlearningMethod:
    """The registered method ``name``; a :class:`ConfigError` naming the choices otherwise."""
    cls = _REGISTRY.find(name)
    if cls is None:
        raise ConfigError(f"method must be one of {', '.join(method_names())}; got {name!r}")
    return cls()


def reference_method() -> str | None:
    """The name of the registered reference method (Retrain), if any."""
    return next((n for n in method_names() if _REGISTRY.find(n).reference), None)


def parse_method(name: str) -> dict[str, Any]:
    """A method name or a variant (`mm unlearn compare --methods`) -> its config updates."""
    variants = method_variants()
    if name in variants:
        return dict(variants[name])
    if name in _REGISTRY:
        return {"method": name}
    raise ConfigError(f"unknown method {name!r}; choose from {', '.join([*method_names(), *variants])}")
