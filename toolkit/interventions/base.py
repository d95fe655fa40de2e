"""Reasoning interventions: what ``bin/condition`` does to a baseline answer before asking again.

An intervention turns one baseline row (an item's reasoning-mode answer) into variants:
each variant is one new question to the model - the reasoning to inject (own, truncated,
with filler...), a hint, or reordered options - with a ``key`` unique within the item and
run, and the parameters recorded in the row. Interventions are registered by name and
take parameters as ``name:key=value,key=value`` (e.g. ``filler-dots:step=0.25,position=end``).
Everything random is seeded by (global seed, item id, run), so reruns and reshards give
the same variants.
"""

from __future__ import annotations

import abc
import difflib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Type

from toolkit.manifest import Item


@dataclass(frozen=True)
class Baseline:
    """What an intervention starts from: the baseline row of one (item, run)."""

    item: Item
    run: int
    reasoning: str
    pred: Optional[int]
    raw_output: Optional[str] = None


@dataclass(frozen=True)
class Variant:
    """One new question derived from a baseline.

    Attributes:
        key: unique within (item, run) for this intervention, e.g. ``k=3`` (written as the row's ``variant``).
        params: what was done, recorded in the row's ``intervention.params``.
        reasoning: reasoning to inject (placed by the conditioned prompt), or None for none.
        hint: a sentence added after the question (``suggested``), or None.
        permutation: ``permutation[j]`` = original index of the option shown at position j (``shuffle``).
    """

    key: str
    params: Dict[str, Any] = field(default_factory=dict)
    reasoning: Optional[str] = None
    hint: Optional[str] = None
    permutation: Optional[Tuple[int, ...]] = None


class Intervention(abc.ABC):
    """A registered intervention (see the module docstring).

    Subclasses set ``name`` (and ``aliases``), declare their parameters as ``defaults`` and
    implement :meth:`variants`.
    """

    name: str = ""
    defaults: Dict[str, Any] = {}
    needs_reasoning: bool = True

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(f"intervention {self.name!r}: unknown parameter(s) {', '.join(unknown)} "
                             f"(valid: {', '.join(sorted(self.defaults)) or 'none'})")
        self.params = {**self.defaults, **params}

    @property
    def spec(self) -> str:
        """Canonical ``name:key=value,...`` with every parameter."""
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in sorted(self.params.items()))

    @abc.abstractmethod
    def variants(self, baseline: Baseline, seed: int) -> List[Variant]:
        """The variants of one baseline (item, run)."""


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value)


def _coerce(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"not a boolean: {raw!r}")
        return raw.lower() in ("true", "1", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, (list, tuple)):
        return tuple(raw.split("+"))
    return raw


_REGISTRY: Dict[str, Type[Intervention]] = {}


def register_intervention(cls: Type[Intervention]) -> Type[Intervention]:
    """Class decorator adding an intervention to the registry.

    Raises:
        ValueError: the name is already registered.
    """
    if cls.name in _REGISTRY:
        raise ValueError(f"intervention {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def intervention_names() -> List[str]:
    """Registered intervention names."""
    from toolkit import interventions  # noqa: F401 - registers the built-in ones

    return sorted(_REGISTRY)


def parse_intervention(spec: str) -> Intervention:
    """``"truncate"`` or ``"filler-dots:step=0.25,position=start+end"`` -> an intervention.

    Raises:
        ValueError: unknown name (with close matches), unknown parameter, or a bad value.
    """
    names = intervention_names()
    name, _, rest = spec.strip().partition(":")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, names, n=2)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"unknown intervention {name!r}.{hint} Known: {', '.join(names)}")
    cls = _REGISTRY[name]
    params: Dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key not in cls.defaults:
            raise ValueError(f"intervention {name!r}: bad parameter {part!r} "
                             f"(valid: {', '.join(f'{k}=...' for k in sorted(cls.defaults)) or 'none'})")
        try:
            params[key] = _coerce(raw, cls.defaults[key])
        except ValueError as exc:
            raise ValueError(f"intervention {name!r}: {key}={raw!r}: {exc}") from None
    return cls(**params)


def share_grid(step: float) -> List[float]:
    """``0, step, 2*step, ..., 1`` (rounded to 6 places), e.g. 0.25 -> [0, 0.25, 0.5, 0.75, 1].

    Raises:
        ValueError: step not in (0, 1].
    """
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    n = round(1 / step)
    if abs(n * step - 1) > 1e-9:
        raise ValueError(f"step {step} does not divide 1 evenly")
    return [round(i / n, 6) for i in range(n + 1)]
