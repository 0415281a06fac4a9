"""A name -> part registry, the one mechanism behind every "build it by name" table of the project
(unlearning methods, image-text datasets, AVQA models, AVQA annotation formats). Torch-free."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Parts by name, in registration order. ``key`` normalises names (e.g. case and ``-`` ignored); registering
    a different part under a taken name is an error, the same part again is not (a module imported twice)."""

    def __init__(self, what: str, key: Callable[[str], str] = str):
        self.what, self.key = what, key
        self._parts: dict[str, T] = {}

    def register(self, name: str, part: T) -> T:
        k = self.key(name)
        if k in self._parts and self._parts[k] != part:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._parts[k] = part
        return part

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a test's or a plugin's cleanup); unknown names are ignored."""
        self._parts.pop(self.key(name), None)

    def find(self, name: str) -> T | None:
        """The part registered as ``name``, or None (callers raise their own error naming the choices)."""
        return self._parts.get(self.key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) in self._parts

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._parts.values()))

    def __len__(self) -> int:
        return len(self._parts)
