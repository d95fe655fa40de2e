"""Reasoning interventions: what ``bin/condition`` does to a baseline answer before asking again.

An intervention turns one baseline row (an item's reasoning-mode answer) into variants:
each variant is one new question to the model - the reasoning to inject (own, truncated,
with filler...), a hint, or reordered options - with a ``key`` unique within the item and
run, and the parameters recorded in the row. Interventions are registered by name and
take parameters as ``name:key=value,key=value`` (e.g. ``filler-dots:step=0.25,position=end``).
Everything random is seeded by (global seed, item id, run), so reruns and reshards give
the same variants.

An intervention also owns its analysis: it names the faithfulness tables its rows feed
(:attr:`Intervention.tables`, see :mod:`toolkit.faithfulness`), and every variant of a curve
records the x value it sits at, ``share_kept`` (the share of the original reasoning the
model still sees unchanged), in its params. Adding an intervention touches one file.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Type

from toolkit.interventions.protocol import PRESETS, Protocol
from toolkit.manifest import Item
from toolkit.registry import Registry

#: the protocol of variants built without one
DEFAULT_PROTOCOL = PRESETS["toolkit"]


@dataclass(frozen=True)
class Baseline:
    """What an intervention starts from: the baseline row of one (item, run)."""

    item: Item
    run: int
    reasoning: str
    pred: Optional[int]
    raw_output: Optional[str] = None
    condition: str = "clean"


@dataclass(frozen=True)
class Variant:
    """One new question derived from a baseline.

    Attributes:
        key: unique within (item, run) for this intervention, e.g. ``k=3`` (written as the row's ``variant``).
        params: what was done, recorded in the row's ``intervention.params``.
        reasoning: reasoning to inject (placed by the conditioned prompt), or None for none.
        hint: a sentence added after the question (``suggested``), or None.
        permutation: ``permutation[j]`` = original index of the option shown at position j (``shuffle``).
        direct: ask with the protocol's no-reasoning prompt instead of injecting reasoning
            (early answering at k = 0 under ``empty = no-reasoning``).
        continue_from: the model under test first continues this reasoning (sampled, with the
            protocol's continue template); the answer is then asked from the reasoning read out
            of the whole (:func:`toolkit.interventions.protocol.continued_reasoning`). ``reasoning``
            is None until then.
    """

    key: str
    params: Dict[str, Any] = field(default_factory=dict)
    reasoning: Optional[str] = None
    hint: Optional[str] = None
    permutation: Optional[Tuple[int, ...]] = None
    direct: bool = False
    continue_from: Optional[str] = None


class Intervention(abc.ABC):
    """A registered intervention (see the module docstring).

    Subclasses set ``name``, declare their parameters as ``defaults``, implement
    :meth:`variants` and say how their rows are analysed.

    Class attributes:
        name: registry name.
        defaults: parameter -> default value (also the list of valid parameters).
        needs_reasoning: the variants inject (a form of) the baseline's reasoning.
        tables: the faithfulness tables fed by its rows (``sanity``, ``consistency``, ``aoc``,
            ``suggested``, ``shuffle``, ``positions``); ``consistency``/``aoc`` need
            ``share_kept`` in every variant's params.
        curve_bin: curve points are binned to this width of ``share_kept`` (x = k/N differs with
            N); None: the variants share one exact grid.
        closes_at_reference: the curve has no variant at ``share_kept`` 1 because there the
            reasoning is unchanged: the AOC takes the answer there as equal to the reference.
        complete_grid: every k = 0..N has a variant; an item missing one is left out of the AOC.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Dict[str, Any]] = {}
    needs_reasoning: ClassVar[bool] = True
    tables: ClassVar[Tuple[str, ...]] = ()
    curve_bin: ClassVar[Optional[float]] = None
    closes_at_reference: ClassVar[bool] = False
    complete_grid: ClassVar[bool] = False

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

    def for_output(self, out: Any) -> "Intervention":
        """The intervention as it runs for the result file ``out`` (a rewrite cache beside it, see
        ``rewrite-*``'s ``cache=auto``); itself for most."""
        return self

    @abc.abstractmethod
    def variants(self, baseline: Baseline, seed: int, protocol: Optional["Protocol"] = None) -> List[Variant]:
        """The variants of one baseline (item, run) under ``protocol`` (default: the toolkit preset)."""

    @staticmethod
    def series(params: Mapping[str, Any]) -> str:
        """The line of a curve a variant belongs to (filler: its position); "" for one line."""
        return ""

    @staticmethod
    def length(params: Mapping[str, Any]) -> Optional[int]:
        """N, the number of reasoning sentences a variant was cut from (per-length curves and
        AOCs), None when the variants do not depend on it."""
        return None


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


#: Every intervention class by name (the built-in ones register when ``toolkit.interventions`` is imported).
INTERVENTIONS: Registry[Type[Intervention]] = Registry("intervention")


def register_intervention(cls: Type[Intervention]) -> Type[Intervention]:
    """Class decorator adding an intervention to the registry.

    Raises:
        ValueError: the name is already registered.
    """
    INTERVENTIONS.register(cls.name, cls)
    return cls


def intervention_names() -> List[str]:
    """Registered intervention names."""
    from toolkit import interventions  # noqa: F401 - registers the built-in ones

    return INTERVENTIONS.names()


def get_intervention_class(name: str) -> Type[Intervention]:
    """The intervention class registered as ``name``.

    Raises:
        ValueError: unknown name (with close matches and the valid names).
    """
    from toolkit import interventions  # noqa: F401 - registers the built-in ones

    return INTERVENTIONS.get(name)


def parse_intervention(spec: str) -> Intervention:
    """``"truncate"`` or ``"filler-dots:step=0.25,position=start+end"`` -> an intervention.

    Raises:
        ValueError: unknown name (with close matches), unknown parameter, or a bad value.
    """
    name, _, rest = spec.strip().partition(":")
    cls = get_intervention_class(name)
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
