"""One small registry for everything looked up by name: backends, interventions, condition families.

A :class:`Registry` maps names to objects (classes, parsers). Entries may be *lazy*: a name
bound to the module that registers it on import, so ``--help`` and sweep validation never
import torch. An unknown name fails with close matches and the valid names; registering a
name twice fails too.

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register("circle")
    ... class Circle: ...
    >>> shapes.get("circle").__name__
    'Circle'
    >>> shapes.get("circel")
    Traceback (most recent call last):
    ...
    ValueError: unknown shape 'circel'. Did you mean 'circle'? Valid: circle
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Dict, Generic, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, with lazy modules and helpful misses.

    Args:
        kind: what the names name, used in messages (``model``, ``intervention`` ...).
        lazy: name -> module that registers that name when imported.
    """

    def __init__(self, kind: str, lazy: Optional[Mapping[str, str]] = None) -> None:
        self.kind = kind
        self._lazy: Dict[str, str] = dict(lazy or {})
        self._entries: Dict[str, T] = {}

    def register(self, name: str, obj: Optional[T] = None) -> Callable[[T], T]:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that registers what it decorates.

        Raises:
            ValueError: an empty name, or a name already bound to another object.
        """
        def add(value: T) -> T:
            if not name:
                raise ValueError(f"a {self.kind} needs a name")
            if name in self._entries and self._entries[name] is not value:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = value
            return value

        if obj is not None:
            add(obj)
        return add

    def names(self) -> List[str]:
        """Every name, registered or lazy, sorted."""
        return sorted(set(self._lazy) | set(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def get(self, name: str) -> T:
        """The object registered as ``name``, importing its module on first use.

        Raises:
            ValueError: unknown name, with close matches and the valid names.
        """
        if name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])
        if name not in self._entries:
            raise self.unknown(name)
        return self._entries[name]

    def load_all(self) -> None:
        """Import every lazy module (to iterate over the objects themselves)."""
        for module in sorted(set(self._lazy.values())):
            importlib.import_module(module)

    def items(self) -> Iterator[Tuple[str, T]]:
        """(name, object) of the registered entries, in registration order (lazy ones not imported)."""
        return iter(list(self._entries.items()))

    def unknown(self, name: str, reason: str = "", examples: Sequence[str] = (), valid: str = "",
                suggest: bool = True) -> ValueError:
        """The error for an unknown ``name``: what is wrong, close matches among ``examples``
        (default: the names; none when ``suggest`` is off, e.g. the reason already says what to
        fix) and what is valid (default: the names)."""
        close = difflib.get_close_matches(name, list(examples) or self.names(), n=3, cutoff=0.6) if suggest else []
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        because = f": {reason}" if reason else ""
        return ValueError(f"unknown {self.kind} {name!r}{because}.{hint} Valid: {valid or ', '.join(self.names())}")
