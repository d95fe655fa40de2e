"""toolkit.metrics: exact known values, worked examples and input validation."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from toolkit import metrics
from toolkit.metrics import (
    accuracy,
    aoc,
    aoc_by_length,
    cohen_kappa,
    consistency,
    holm,
    mcnemar_exact,
    paired_bootstrap_diff,
    wilson_interval,
)


def _paired(b01: int, b10: int, both: int = 3, neither: int = 2):
    """Correctness lists with the given discordant counts (a wrong/b right = b01)."""
    a = [False] * b01 + [True] * b10 + [True] * both + [False] * neither
    b = [True] * b01 + [False] * b10 + [True] * both + [False] * neither
    return a, b


# ---------------------------------------------------------------------------- accuracy


def test_accuracy_counts_nulls_as_wrong_and_reports_answered_accuracy():
    r = accuracy([True, True, False, None, True, None])
    assert (r.n, r.n_null, r.n_correct) == (6, 2, 3)
    assert r.acc_all == pytest.approx(3 / 6)
    assert r.acc_answered == pytest.approx(3 / 4)
    assert r.null_rate == pytest.approx(2 / 6)


def test_accuracy_all_null_gives_nan_answered_accuracy():
    r = accuracy([None, None])
    assert r.acc_all == 0.0 and math.isnan(r.acc_answered)


def test_accuracy_result_is_frozen():
    r = accuracy([True])
    with pytest.raises(Exception):
        r.n = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [[], [True, "yes"], [1]])
def test_accuracy_rejects_empty_and_non_boolean(bad):
    with pytest.raises(ValueError):
        accuracy(bad)


# ---------------------------------------------------------------------------- Wilson


def test_wilson_matches_closed_form_81_of_100():
    k, n = 81, 100
    z = NormalDist().inv_cdf(0.975)
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.7222, 0.8749)


def test_wilson_other_confidence_is_wider_at_99_percent():
    lo95, hi95 = wilson_interval(40, 90)
    lo99, hi99 = wilson_interval(40, 90, confidence=0.99)
    assert lo99 < lo95 < 40 / 90 < hi95 < hi99


def test_wilson_edges_stay_in_unit_interval():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0 < high < 1
    low, high = wilson_interval(10, 10)
    assert 0 < low < 1 and high == 1.0


def test_wilson_zero_items_gives_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("k, n, conf", [(5, 4, 0.95), (-1, 4, 0.95), (1, 4, 1.0), (1.5, 4, 0.95)])
def test_wilson_rejects_bad_input(k, n, conf):
    with pytest.raises(ValueError):
        wilson_interval(k, n, conf)


# ---------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize("b01, b10", [(2, 8), (8, 2), (0, 5), (3, 3), (7, 12)])
def test_mcnemar_matches_scipy_binomtest(b01, b10):
    a, b = _paired(b01, b10)
    r = mcnemar_exact(a, b)
    assert (r.b01, r.b10) == (b01, b10)
    expected = stats.binomtest(b01, b01 + b10, 0.5, alternative="two-sided").pvalue
    assert r.p == pytest.approx(expected, rel=1e-12)


def test_mcnemar_hand_computed_values():
    # 2 * P[Binom(10, 1/2) <= 2] = 2 * (1 + 10 + 45) / 1024
    assert mcnemar_exact(*_paired(2, 8)).p == pytest.approx(112 / 1024)
    # 2 * P[Binom(5, 1/2) <= 0] = 2 / 32
    assert mcnemar_exact(*_paired(0, 5)).p == pytest.approx(1 / 16)
    # 2 * P[Binom(1, 1/2) <= 0] = 1, and equal counts cap at 1
    assert mcnemar_exact(*_paired(1, 0)).p == 1.0
    assert mcnemar_exact(*_paired(4, 4)).p == 1.0


def test_mcnemar_no_discordant_pairs_gives_p_one():
    r = mcnemar_exact(*_paired(0, 0))
    assert (r.b01, r.b10, r.p) == (0, 0, 1.0)


def test_mcnemar_rejects_nulls_and_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError, match=r"b\[1\]"):
        mcnemar_exact([True, False], [True, None])
    with pytest.raises(ValueError, match="empty"):
        mcnemar_exact([], [])


# ---------------------------------------------------------------------------- Holm


def test_holm_textbook_example_in_input_order():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_is_monotone_and_capped():
    raw = [0.2, 0.01, 0.5, 0.3, 0.02]
    adj = holm(raw)
    assert all(a >= r for a, r in zip(adj, raw))
    assert max(adj) <= 1.0
    by_raw = [a for _, a in sorted(zip(raw, adj))]
    assert by_raw == sorted(by_raw)
    assert adj == pytest.approx([0.6, 0.05, 0.6, 0.6, 0.08])


def test_holm_edge_cases():
    assert holm([]) == []
    assert holm([0.04]) == [0.04]
    with pytest.raises(ValueError, match="pvalues"):
        holm([0.1, 1.5])
    with pytest.raises(ValueError):
        holm([0.1, float("nan")])


# ---------------------------------------------------------------------------- bootstrap


def _correctness(n: int = 1000, seed: int = 1):
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.6
    b = a.copy()
    flip = rng.choice(n, size=n // 5, replace=False)
    b[flip[: n // 10 + n // 20]] = True  # mostly fixes, some breaks: a net difference
    b[flip[n // 10 + n // 20 :]] = False
    return a.astype(float), b.astype(float)


def test_bootstrap_interval_contains_observed_diff_and_is_reproducible():
    a, b = _correctness()
    r1 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=7)
    r2 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=7)
    r3 = paired_bootstrap_diff(a, b, n_resamples=2000, seed=8)
    assert r1.diff == pytest.approx(b.mean() - a.mean())
    assert r1.low < r1.diff < r1.high
    assert r1 == r2
    assert r3.diff == r1.diff
    # Another seed gives another interval (continuous data, so quantiles do not tie).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=200), rng.normal(0.3, size=200)
    assert paired_bootstrap_diff(x, y, 2000, seed=1) != paired_bootstrap_diff(x, y, 2000, seed=2)


def test_bootstrap_covers_true_diff_of_generating_process():
    # Pairs drawn with P(b right) - P(a right) = 0.1 exactly.
    rng = np.random.default_rng(3)
    u = rng.random(3000)
    a = (u < 0.5).astype(float)
    b = (u < 0.6).astype(float)
    r = paired_bootstrap_diff(a, b, n_resamples=3000, seed=0)
    assert r.low < 0.1 < r.high
    # Only b improves on a, so the interval is one-sided above 0 and narrow.
    assert 0 < r.low and r.high - r.low < 0.05


def test_bootstrap_identical_inputs_give_zero_width_interval():
    x = [1, 0, 1, 1, 0]
    r = paired_bootstrap_diff(x, x, n_resamples=500)
    assert (r.diff, r.low, r.high) == (0.0, 0.0, 0.0)


def test_bootstrap_chunking_does_not_change_result(monkeypatch):
    a, b = _correctness(300)
    whole = paired_bootstrap_diff(a, b, n_resamples=1000, seed=5)
    monkeypatch.setattr(metrics, "_BOOTSTRAP_CHUNK_CELLS", 300 * 7)  # chunks of 7 resamples
    chunked = paired_bootstrap_diff(a, b, n_resamples=1000, seed=5)
    assert chunked == whole


@pytest.mark.parametrize(
    "a, b, kwargs, match",
    [
        ([1, 0], [1], {}, "same length"),
        ([], [], {}, "empty"),
        ([1, None], [1, 0], {}, r"a\[1\] is None"),
        ([1, 0], [1, 0], {"n_resamples": 0}, "n_resamples"),
        ([1, 0], [1, 0], {"confidence": 95}, "confidence"),
    ],
)
def test_bootstrap_rejects_bad_input(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_diff(a, b, **kwargs)


# ---------------------------------------------------------------------------- agreement


def test_consistency_excludes_pairs_with_a_null():
    r = consistency(["A", "B", None, "C", None], ["A", "C", "C", "C", None])
    assert (r.n, r.n_excluded) == (3, 2)
    assert r.share_equal == pytest.approx(2 / 3)
    assert r.flip_rate == pytest.approx(1 / 3)


def test_consistency_nothing_to_compare_gives_nan():
    r = consistency([None], ["A"])
    assert r.n == 0 and r.n_excluded == 1 and math.isnan(r.share_equal)
    with pytest.raises(ValueError, match="same length"):
        consistency(["A"], ["A", "B"])


def test_kappa_hand_computed_2x2():
    # 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["A", "A", "B", "B"], ["A", "B", "B", "B"]) == pytest.approx(0.5)


def test_kappa_perfect_chance_and_undefined():
    assert cohen_kappa(["A", "B", "C"], ["A", "B", "C"]) == 1.0
    assert cohen_kappa(["A", "A"], ["A", "A"]) == 1.0  # one label everywhere: 1 by convention
    assert cohen_kappa(["A", "B"], ["B", "A"]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa([None, "A"], ["B", None]))


def test_kappa_excludes_nulls_and_checks_labels():
    with_null = cohen_kappa(["A", "A", "B", "B", None], ["A", "B", "B", "B", "A"])
    assert with_null == pytest.approx(0.5)
    assert cohen_kappa(["A", "B"], ["A", "B"], labels=["A", "B", "C"]) == 1.0
    with pytest.raises(ValueError, match="'D'"):
        cohen_kappa(["A", "D"], ["A", "B"], labels=["A", "B", "C"])


# ---------------------------------------------------------------------------- AOC


def test_aoc_zero_when_every_truncation_matches():
    assert aoc([0, 0.25, 0.5, 0.75, 1], [1, 1, 1, 1, 1]) == 0.0
    assert aoc([0, 1], [True, True]) == 0.0


def test_aoc_worked_example():
    x = [0, 0.25, 0.5, 0.75, 1]
    f = [0.2, 0.4, 0.6, 1.0, 1.0]
    # 1 - f = .8 .6 .4 0 0; trapezoid: 0.25 * (.7 + .5 + .2 + 0) = 0.35
    assert aoc(x, f) == pytest.approx(0.35)
    # On an even grid, AOC = 1 - trapezoid average of f.
    avg_f = (f[0] / 2 + sum(f[1:-1]) + f[-1] / 2) / (len(f) - 1)
    assert aoc(x, f) == pytest.approx(1 - avg_f)
    # Order of the points does not matter.
    assert aoc(x[::-1], f[::-1]) == pytest.approx(0.35)
    assert aoc([0, 1], [0, 0]) == 1.0


@pytest.mark.parametrize(
    "x, f, match",
    [
        ([0, 0.5], [1, 1], "include 0 and 1"),
        ([0, 0.5, 0.5, 1], [1, 1, 1, 1], "twice"),
        ([0, 1], [1, 1.5], "matches must lie"),
        ([0, 1], [1], "same length"),
        ([1], [1], "two points"),
    ],
)
def test_aoc_rejects_bad_input(x, f, match):
    with pytest.raises(ValueError, match=match):
        aoc(x, f)


def test_aoc_by_length_weights_groups_by_size():
    rows = []
    # N = 1, three items: f(0) = 1/3, f(1) = 1 -> AOC = (2/3 + 0) / 2 = 1/3.
    for m0 in (False, False, True):
        rows += [(1, 0, m0), (1, 1, True)]
    # N = 2, one item: f = 0, 0, 1 -> AOC = 0.5 * ((1 + 1) / 2 + (1 + 0) / 2) = 0.75.
    rows += [(2, 0, False), (2, 1, False), (2, 2, True)]
    r = aoc_by_length(rows)
    assert r.by_length == pytest.approx({1: 1 / 3, 2: 0.75})
    assert r.weights == {1: 3.0, 2: 1.0}
    assert r.aoc == pytest.approx((3 * (1 / 3) + 1 * 0.75) / 4)  # 0.4375, not the unweighted 0.54


def test_aoc_by_length_all_matching_is_zero():
    rows = [(n, k, True) for n in (1, 3, 5) for k in range(n + 1)]
    assert aoc_by_length(rows).aoc == 0.0


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "empty"),
        ([(2, 0, True), (2, 2, True)], r"N=2 lacks truncation points k=\[1\]"),
        ([(0, 0, True)], "n_sentences is 0"),
        ([(2, 3, True)], "k_kept is 3"),
        ([(2, 1, None)], "matches_full_answer"),
        ([(2, 1)], r"rows\[0\]"),
    ],
)
def test_aoc_by_length_rejects_bad_rows(rows, match):
    with pytest.raises(ValueError, match=match):
        aoc_by_length(rows)
