"""Per-item statistics: accuracy with nulls, intervals, paired tests, agreement and AOC.

Every function is pure: it takes per-item arrays or lists (one entry per item, in the
same item order for paired inputs) and returns numbers or a small frozen dataclass.
Nothing is printed or logged. Bad input raises :class:`ValueError` naming what is wrong.

Conventions decided here:

* A null prediction (``None``) counts as *wrong* in :func:`accuracy` (``acc_all``) and is
  left out of ``acc_answered``; the null count is always reported beside the accuracy.
* :func:`wilson_interval` returns ``(nan, nan)`` for ``n == 0`` (no items: no interval)
  instead of raising, so empty conditions show up in tables rather than crash them.
* :func:`mcnemar_exact` and :func:`paired_bootstrap_diff` take correctness that is
  already boolean / numeric: convert nulls to ``False`` (wrong) before calling.
* :func:`consistency` and :func:`cohen_kappa` leave out every pair in which either side
  is ``None`` and report how many were left out.
* :func:`aoc_by_length` needs every truncation point ``k = 0..N`` of each group.

Example:
    >>> acc = accuracy([True, False, None, True])
    >>> (acc.acc_all, acc.acc_answered, acc.n, acc.n_null)
    (0.5, 0.6666666666666666, 4, 1)
    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
    [0.03, 0.06, 0.06, 0.02]
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

__all__ = [
    "AccuracyResult",
    "McNemarResult",
    "BootstrapResult",
    "ConsistencyResult",
    "GroupedAOC",
    "accuracy",
    "wilson_interval",
    "mcnemar_exact",
    "holm",
    "paired_bootstrap_diff",
    "consistency",
    "cohen_kappa",
    "aoc",
    "aoc_by_length",
]

# Upper bound on the number of resampled indices held in memory at once (int64: 32 MB).
_BOOTSTRAP_CHUNK_CELLS = 4_000_000


# ---------------------------------------------------------------------------- helpers


def _check_same_length(a: Sequence[object], b: Sequence[object], name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}")


def _check_non_empty(x: Sequence[object], name: str) -> None:
    if len(x) == 0:
        raise ValueError(f"{name} is empty; at least one item is required")


def _check_confidence(confidence: float) -> None:
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")


def _as_bool_array(x: Sequence[object], name: str) -> np.ndarray:
    """Booleans (or 0/1) as a bool array; None or other values raise ValueError."""
    out = np.empty(len(x), dtype=bool)
    for i, v in enumerate(x):
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
            out[i] = bool(v)
        else:
            raise ValueError(
                f"{name}[{i}] is {v!r}; expected True/False (convert null predictions to False first)"
            )
    return out


def _as_float_array(x: Sequence[float], name: str) -> np.ndarray:
    for i, v in enumerate(x):
        if v is None:
            raise ValueError(f"{name}[{i}] is None; expected a number (convert nulls first)")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers (no None): {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}[{bad}] is {arr[bad]!r}; expected a finite number")
    return arr


# ---------------------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy of one condition, with nulls reported beside it.

    Attributes:
        acc_all: correct / n, nulls counted as wrong.
        acc_answered: correct / (n - n_null); nan when every item is null.
        n: number of items.
        n_null: number of null (unanswered) items.
        n_correct: number of correct items.
    """

    acc_all: float
    acc_answered: float
    n: int
    n_null: int
    n_correct: int

    @property
    def null_rate(self) -> float:
        """Share of items with a null prediction."""
        return self.n_null / self.n


def accuracy(correct: Sequence[Optional[bool]]) -> AccuracyResult:
    """Accuracy over all items (nulls wrong) and over answered items.

    Args:
        correct: per item, True (correct), False (wrong) or None (no answer extracted).

    Returns:
        An :class:`AccuracyResult`.

    Raises:
        ValueError: ``correct`` is empty or holds something other than True/False/None.

    Example:
        >>> accuracy([True, None, False, True]).acc_all
        0.5
    """
    _check_non_empty(correct, "correct")
    n_null = 0
    n_correct = 0
    for i, v in enumerate(correct):
        if v is None:
            n_null += 1
        elif isinstance(v, (bool, np.bool_)):
            n_correct += bool(v)
        else:
            raise ValueError(f"correct[{i}] is {v!r}; expected True, False or None")
    n = len(correct)
    answered = n - n_null
    return AccuracyResult(
        acc_all=n_correct / n,
        acc_answered=n_correct / answered if answered else math.nan,
        n=n,
        n_null=n_null,
        n_correct=n_correct,
    )


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n.

    Args:
        k: number of successes, ``0 <= k <= n``.
        n: number of trials, ``n >= 0``.
        confidence: two-sided coverage, strictly between 0 and 1.

    Returns:
        ``(low, high)`` as proportions in [0, 1]; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: k or n negative or not integers, ``k > n``, or confidence outside (0, 1).

    Example:
        >>> low, high = wilson_interval(81, 100)
        >>> round(low, 4), round(high, 4)
        (0.7222, 0.8749)
    """
    _check_confidence(confidence)
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = k / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # At k = 0 (k = n) the bound is exactly 0 (1); set it so rounding cannot give 0.9999...
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


# ---------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired correctness.

    Attributes:
        b01: items wrong under ``a`` and correct under ``b``.
        b10: items correct under ``a`` and wrong under ``b``.
        p: two-sided exact p-value.
    """

    b01: int
    b10: int
    p: float


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """Exact (binomial) McNemar test for paired correctness of two conditions.

    ``p = min(1, 2 * P[Binom(b01 + b10, 1/2) <= min(b01, b10)])``; ``p = 1`` when there
    are no discordant pairs.

    Args:
        a: per-item correctness under the first condition (nulls already False).
        b: per-item correctness under the second condition, same item order.

    Returns:
        A :class:`McNemarResult`.

    Raises:
        ValueError: lengths differ, inputs are empty, or an entry is not a boolean.

    Example:
        >>> mcnemar_exact([True, True, False], [True, False, False])
        McNemarResult(b01=0, b10=1, p=1.0)
    """
    _check_same_length(a, b, "a", "b")
    _check_non_empty(a, "a")
    x = _as_bool_array(a, "a")
    y = _as_bool_array(b, "b")
    b01 = int(np.sum(~x & y))
    b10 = int(np.sum(x & ~y))
    m = b01 + b10
    if m == 0:
        return McNemarResult(b01=0, b10=0, p=1.0)
    p = min(1.0, 2.0 * float(stats.binom.cdf(min(b01, b10), m, 0.5)))
    return McNemarResult(b01=b01, b10=b10, p=p)


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm-Bonferroni adjusted p-values, in input order.

    Sorted ascending, the i-th smallest (0-based) becomes ``(m - i) * p``, then a running
    maximum keeps the sequence monotone, and values are capped at 1.

    Args:
        pvalues: raw p-values, each in [0, 1]; may be empty.

    Returns:
        Adjusted p-values, one per input, same order.

    Raises:
        ValueError: a p-value is not a number in [0, 1].

    Example:
        >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
        [0.03, 0.06, 0.06, 0.02]
    """
    p = _as_float_array(list(pvalues), "pvalues") if len(pvalues) else np.empty(0)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        bad = int(np.flatnonzero((p < 0.0) | (p > 1.0))[0])
        raise ValueError(f"pvalues[{bad}] is {p[bad]!r}; p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adjusted_sorted
    return [float(v) for v in out]


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of a difference of means.

    Attributes:
        diff: mean(b) - mean(a) on the observed items.
        low: lower percentile bound.
        high: upper percentile bound.
    """

    diff: float
    low: float
    high: float


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap interval for mean(b) - mean(a), items resampled jointly.

    The same resampled items are used for both conditions (a paired design), which is
    the same as resampling the per-item differences ``b - a``. Units are those of the
    input: 0/1 correctness gives a difference of proportions (multiply by 100 for points).

    Args:
        a: per-item values of the first (baseline) condition.
        b: per-item values of the second condition, same item order.
        n_resamples: number of bootstrap resamples, >= 1.
        seed: seed of the :func:`numpy.random.default_rng` generator; same seed, same interval.
        confidence: two-sided coverage, strictly between 0 and 1.

    Returns:
        A :class:`BootstrapResult` ``(diff, low, high)``.

    Raises:
        ValueError: lengths differ, inputs are empty or non-numeric (None included),
            ``n_resamples < 1`` or confidence outside (0, 1).

    Example:
        >>> r = paired_bootstrap_diff([1, 0, 1, 0], [1, 1, 1, 0], n_resamples=2000)
        >>> r.diff
        0.25
    """
    _check_same_length(a, b, "a", "b")
    _check_non_empty(a, "a")
    _check_confidence(confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    x = _as_float_array(a, "a")
    y = _as_float_array(b, "b")
    d = y - x
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapResult(diff=float(d.mean()), low=float(low), high=float(high))


# ---------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class ConsistencyResult:
    """Agreement of two runs' predictions on the same items.

    Attributes:
        share_equal: share of compared items with equal predictions (nan if none compared).
        flip_rate: ``1 - share_equal``.
        n: number of compared items (both predictions non-null).
        n_excluded: items left out because either prediction is None.
    """

    share_equal: float
    flip_rate: float
    n: int
    n_excluded: int


def _non_null_pairs(
    pred_a: Sequence[Optional[Hashable]], pred_b: Sequence[Optional[Hashable]]
) -> Tuple[List[Hashable], List[Hashable], int]:
    _check_same_length(pred_a, pred_b, "pred_a", "pred_b")
    xs: List[Hashable] = []
    ys: List[Hashable] = []
    for x, y in zip(pred_a, pred_b):
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys, len(pred_a) - len(xs)


def consistency(
    pred_a: Sequence[Optional[Hashable]], pred_b: Sequence[Optional[Hashable]]
) -> ConsistencyResult:
    """Share of items whose two predictions are equal (answer consistency), and flip rate.

    Pairs where either prediction is None are excluded (None == None is not counted as
    agreement) and counted in ``n_excluded``.

    Args:
        pred_a: per-item predictions of the baseline run (e.g. option letters), None for null.
        pred_b: per-item predictions of the other run, same item order.

    Returns:
        A :class:`ConsistencyResult`; ``share_equal`` and ``flip_rate`` are nan when no
        pair is left to compare.

    Raises:
        ValueError: lengths differ.

    Example:
        >>> consistency(["A", "B", None, "C"], ["A", "C", "C", "C"])
        ConsistencyResult(share_equal=0.6666666666666666, flip_rate=0.33333333333333337, n=3, n_excluded=1)
    """
    xs, ys, n_excluded = _non_null_pairs(pred_a, pred_b)
    n = len(xs)
    if n == 0:
        return ConsistencyResult(math.nan, math.nan, 0, n_excluded)
    share = sum(x == y for x, y in zip(xs, ys)) / n
    return ConsistencyResult(share_equal=share, flip_rate=1.0 - share, n=n, n_excluded=n_excluded)


def cohen_kappa(
    pred_a: Sequence[Optional[Hashable]],
    pred_b: Sequence[Optional[Hashable]],
    labels: Optional[Sequence[Hashable]] = None,
) -> float:
    """Cohen's kappa between two runs' categorical predictions.

    ``kappa = (p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e``
    the agreement expected from the two runs' marginal label shares. Pairs where either
    prediction is None are excluded.

    Args:
        pred_a: per-item predictions of one run, None for null.
        pred_b: per-item predictions of the other run, same item order.
        labels: the allowed categories; a prediction outside them raises. Defaults to
            the labels seen in the non-null pairs.

    Returns:
        Kappa in [-1, 1]; 1.0 for perfect agreement (also when both runs give one single
        label everywhere, where ``p_e = 1`` makes the formula 0/0); nan when no pair is
        left after excluding nulls.

    Raises:
        ValueError: lengths differ, or a prediction is not in ``labels``.

    Example:
        >>> cohen_kappa(["A", "A", "B", "B"], ["A", "B", "B", "B"])
        0.5
    """
    xs, ys, _ = _non_null_pairs(pred_a, pred_b)
    if labels is not None:
        allowed = set(labels)
        for name, seq in (("pred_a", xs), ("pred_b", ys)):
            for v in seq:
                if v not in allowed:
                    raise ValueError(f"{name} holds {v!r}, not one of labels {sorted(map(repr, allowed))}")
    n = len(xs)
    if n == 0:
        return math.nan
    cats = sorted(set(xs) | set(ys), key=repr)
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(xs, ys):
        table[index[x], index[y]] += 1
    table /= n
    p_o = float(np.trace(table))
    p_e = float(table.sum(axis=1) @ table.sum(axis=0))
    if p_o == 1.0:
        return 1.0
    return (p_o - p_e) / (1.0 - p_e)


# ---------------------------------------------------------------------------- early answering


def aoc(fractions: Sequence[float], matches: Sequence[float]) -> float:
    """Area over the early-answering curve: integral over [0, 1] of (1 - f(x)) dx.

    ``f(x)`` is the share of answers equal to the full-CoT answer when fraction ``x`` of
    the reasoning is kept; the integral is the trapezoid rule over the given points.
    Higher AOC means the answer depends more on the reasoning (less post-hoc reasoning).

    Args:
        fractions: kept fractions x, distinct, within [0, 1], including 0 and 1 (any order).
        matches: f(x) at each fraction, within [0, 1] (booleans are taken as 0/1).

    Returns:
        The AOC in [0, 1].

    Raises:
        ValueError: lengths differ, fewer than two points, duplicate fractions, 0 or 1
            missing, or values outside [0, 1].

    Example:
        >>> aoc([0, 0.5, 1], [0.5, 1.0, 1.0])
        0.125
    """
    _check_same_length(fractions, matches, "fractions", "matches")
    x = _as_float_array(fractions, "fractions")
    f = _as_float_array(matches, "matches")
    if x.size < 2:
        raise ValueError(f"need at least two points (x = 0 and x = 1), got {x.size}")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"fractions must lie in [0, 1], got min {x.min()!r}, max {x.max()!r}")
    if f.min() < 0.0 or f.max() > 1.0:
        raise ValueError(f"matches must lie in [0, 1], got min {f.min()!r}, max {f.max()!r}")
    order = np.argsort(x, kind="stable")
    x, f = x[order], f[order]
    if np.any(np.diff(x) == 0.0):
        dup = x[int(np.flatnonzero(np.diff(x) == 0.0)[0])]
        raise ValueError(f"fractions hold {dup!r} twice; give one f(x) per fraction")
    if x[0] != 0.0 or x[-1] != 1.0:
        raise ValueError(f"fractions must include 0 and 1, got range [{x[0]!r}, {x[-1]!r}]")
    g = 1.0 - f
    return float(np.sum((g[1:] + g[:-1]) / 2.0 * np.diff(x)))


@dataclass(frozen=True)
class GroupedAOC:
    """Early-answering AOC per reasoning length N and their weighted average.

    Attributes:
        aoc: average of the per-group AOCs weighted by group size.
        by_length: N -> AOC of the group of items with N reasoning sentences.
        weights: N -> group size (rows in the group / (N + 1): the number of items when
            every item contributes all truncations k = 0..N).
    """

    aoc: float
    by_length: Dict[int, float]
    weights: Dict[int, float]


def aoc_by_length(rows: Iterable[Tuple[int, int, bool]]) -> GroupedAOC:
    """Early-answering AOC computed per group of equal N, averaged weighted by group size.

    Within a group of items with N reasoning sentences, ``f(k / N)`` is the share of rows
    with ``k`` sentences kept whose answer matches the full-CoT answer; the group's AOC
    is :func:`aoc` over ``x = 0, 1/N, ..., 1``.

    Args:
        rows: one ``(n_sentences, k_kept, matches_full_answer)`` per (item, truncation),
            with ``n_sentences >= 1`` and ``0 <= k_kept <= n_sentences``; a null forced
            answer should be passed as ``matches_full_answer = False``.

    Returns:
        A :class:`GroupedAOC`.

    Raises:
        ValueError: no rows, a row is malformed or out of range, or a group lacks some
            truncation point ``k`` in ``0..N``.

    Example:
        >>> rows = [(1, 0, False), (1, 1, True), (2, 0, True), (2, 1, True), (2, 2, True)]
        >>> aoc_by_length(rows).by_length
        {1: 0.5, 2: 0.0}
    """
    counts: Dict[int, Dict[int, List[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    n_rows = 0
    for i, row in enumerate(rows):
        try:
            n_sent, k, match = row
        except (TypeError, ValueError):
            raise ValueError(f"rows[{i}] is {row!r}; expected (n_sentences, k_kept, matches_full_answer)") from None
        for name, v in (("n_sentences", n_sent), ("k_kept", k)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"rows[{i}]: {name} must be an integer, got {v!r}")
        if n_sent < 1:
            raise ValueError(f"rows[{i}]: n_sentences is {n_sent}; items without reasoning have no curve, drop them")
        if not 0 <= k <= n_sent:
            raise ValueError(f"rows[{i}]: k_kept is {k}; expected 0..{n_sent}")
        if not isinstance(match, (bool, np.bool_)):
            raise ValueError(f"rows[{i}]: matches_full_answer is {match!r}; expected True/False")
        cell = counts[int(n_sent)][int(k)]
        cell[0] += bool(match)
        cell[1] += 1
        n_rows += 1
    if n_rows == 0:
        raise ValueError("rows is empty; at least one (n_sentences, k_kept, matches) row is required")
    by_length: Dict[int, float] = {}
    weights: Dict[int, float] = {}
    for n_sent in sorted(counts):
        cells = counts[n_sent]
        missing = [k for k in range(n_sent + 1) if k not in cells]
        if missing:
            raise ValueError(f"group N={n_sent} lacks truncation points k={missing}; need every k in 0..{n_sent}")
        ks = np.arange(n_sent + 1)
        f = [cells[k][0] / cells[k][1] for k in ks]
        by_length[n_sent] = aoc(ks / n_sent, f)
        weights[n_sent] = sum(c[1] for c in cells.values()) / (n_sent + 1)
    total = sum(weights.values())
    overall = sum(by_length[n] * weights[n] for n in by_length) / total
    return GroupedAOC(aoc=float(overall), by_length=by_length, weights=weights)
