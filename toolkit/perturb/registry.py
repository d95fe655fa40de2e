"""Condition names: the one parser, the registry it dispatches on, and named sets.

Each condition family registers a name prefix with a parser::

    register_condition("mask-p", parse_mask, pattern="mask-pNN[-...]", examples=[...])

:func:`parse_condition` picks the family whose prefix is the longest one matching the name
and returns its :class:`~toolkit.perturb.base.Condition`; ``parse_condition(n).name`` is the
canonical (full) name, and parsing a canonical name gives it back unchanged. The
families are ``clean``, ``mask-p``, ``noise-snr`` and ``inject`` (spoken hints).
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

from toolkit.perturb.base import Condition
from toolkit.registry import Registry

Parser = Callable[[str], Condition]

#: Named condition sets usable wherever a list of conditions is expected (``--conditions study``).
CONDITION_SETS: Dict[str, Tuple[str, ...]] = {
    "study": (
        "mask-p20", "mask-p40", "mask-p60", "mask-p80", "mask-p90", "mask-p100",
        "noise-snr-20", "noise-snr-10", "noise-snr0", "noise-snr10", "noise-snr20",
    ),
    # the adversarial intervention: a spoken correct / wrong option at 0 dB (needs hints)
    "inject": ("inject-correct-snr0", "inject-wrong-snr0"),
}


@dataclass(frozen=True)
class _Family:
    prefix: str
    parser: Parser
    pattern: str
    examples: Tuple[str, ...]


#: Condition families by name prefix.
FAMILIES: Registry[_Family] = Registry("condition")


def register_condition(prefix: str, parser: Parser, pattern: str = "", examples: Sequence[str] = ()) -> None:
    """Register a condition family.

    Args:
        prefix: names starting with this go to ``parser`` (the longest matching prefix wins).
        parser: takes the full name, returns a Condition, raises ValueError for a bad name.
        pattern: the name grammar shown in error messages (default: the prefix).
        examples: valid names, used for "did you mean" suggestions.

    Raises:
        ValueError: ``prefix`` is already registered.

    Example:
        >>> register_condition("clean", parse_clean, pattern="clean", examples=["clean"])  # doctest: +SKIP
    """
    if prefix in FAMILIES:
        raise ValueError(f"condition prefix {prefix!r} is already registered")
    FAMILIES.register(prefix, _Family(prefix, parser, pattern or prefix, tuple(examples)))


def known_patterns() -> List[str]:
    """The grammar of every registered family, in registration order."""
    return [family.pattern for _, family in FAMILIES.items()]


#: names that miss a family's marker letter: what they most likely meant
_MISSING_MARKER = ((re.compile(r"^mask-(\d+)(.*)$"), "the percent needs its 'p': mask-p{0}{1}"),
                   (re.compile(r"^noise-(-?[\d.]+)(.*)$"), "the SNR needs its 'snr': noise-snr{0}{1}"))


def _unknown(name: str, reason: str, suggest: bool = True) -> ValueError:
    for pattern, fix in _MISSING_MARKER:
        found = pattern.match(name)
        if found:
            reason, suggest = fix.format(*found.groups()), False
    examples = [e for _, family in FAMILIES.items() for e in family.examples]
    return FAMILIES.unknown(name, reason, examples, valid="; ".join(known_patterns()), suggest=suggest)


def parse_condition(name: str) -> Condition:
    """Parse a condition name (short or canonical form).

    Args:
        name: e.g. ``"clean"``, ``"mask-p20"``, ``"noise-snr-10"``.

    Returns:
        The condition; ``.name`` is its canonical form.

    Raises:
        ValueError: unknown or malformed name; the message lists the valid patterns and close
            matches.

    Example:
        >>> parse_condition("mask-p20").name
        'mask-p20-scattered-silence'
        >>> parse_condition("noise-snr-10").name
        'noise-snr-10-white'
    """
    if not isinstance(name, str):
        raise TypeError(f"condition name must be a string, not {type(name).__name__}")
    matches = [prefix for prefix, _ in FAMILIES.items() if name.startswith(prefix)]
    if not matches:
        raise _unknown(name, "no condition family has this prefix")
    family = FAMILIES.get(max(matches, key=len))
    try:
        return family.parser(name)
    except ValueError as exc:
        raise _unknown(name, f"{exc} (expected {family.pattern})", suggest=False) from None


def expand_conditions(names: Sequence[str]) -> List[Condition]:
    """Parse names and named sets into conditions, dropping repeats of a canonical name.

    Args:
        names: condition names, or keys of :data:`CONDITION_SETS` (e.g. ``"study"``).

    Returns:
        Conditions in first-seen order.

    Raises:
        ValueError: any unknown name.
    """
    out: Dict[str, Condition] = {}
    for name in names:
        for member in CONDITION_SETS.get(name, (name,)):
            condition = parse_condition(member)
            out.setdefault(condition.name, condition)
    return list(out.values())
