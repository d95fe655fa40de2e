"""toolkit.faithfulness and bin/score --faithfulness: rows of the real bin/condition with the
simulated backend (whose behaviour is known), and crafted rows with hand-computed numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from scipy import stats

from toolkit import faithfulness as fa
from toolkit.cli import condition, demo
from toolkit.interventions.protocol import parse_protocol
from toolkit.cli.score import main as score_main
from toolkit.manifest import Item, read_manifest
from toolkit.metrics import aoc_by_length, wilson_interval
from toolkit.plots import plot_consistency_per_model
from toolkit.report import render_sections
from toolkit.rows import ResultRow
from toolkit.score import load_scored, scored_from_row

FOLLOW = 0.7
SIGMAS = 4.0  # tolerance of the simulated checks, in binomial standard deviations


# ---------------------------------------------------------------------------- simulated rows


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Dict[str, Any]:
    """A demo set (40 clips per task: 4-option and 2-option items) and bin/condition runs over it."""
    root = tmp_path_factory.mktemp("faith")
    assert demo.main(["--out", str(root / "demo"), "--items-per-task", "40", "--condition", "clean", "-q"]) == 0
    manifest = root / "demo" / "data" / "manifest.jsonl"
    baseline = root / "demo" / "runs" / "simulated" / "clean.jsonl"

    def run(intervention: str, follow: float) -> Path:
        out = root / f"{intervention}-{follow}.jsonl"
        argv = ["--manifest", str(manifest), "--results", str(baseline), "--model", "simulated",
                "--model-path", f"follow={follow},seed=0", "--model-label", f"sim-f{follow}",
                "--intervention", intervention, "--out", str(out), "-q"]
        assert condition.main(argv) == 0
        return out

    files = {"own": run("own", FOLLOW), "truncate": run("truncate", FOLLOW), "suggested": run("suggested", FOLLOW),
             "truncate-0.9": run("truncate", 0.9), "truncate-0.3": run("truncate", 0.3)}
    items = {it.id: it for it in read_manifest(manifest)}
    return {"manifest": manifest, "baseline": baseline, "files": files, "items": items}


def _load(sim: Dict[str, Any], *names: str):
    return load_scored([sim["files"][n] for n in names], sim["items"])


def _whole(table: List[Any]) -> List[Any]:
    """Points or AOC rows of all items, on the protocol's basis (not a subset, not another basis)."""
    return [x for x in table if (x.length, x.baseline) == ("all", "all") and getattr(x, "primary", True)]


def _by_length(table: List[Any]) -> Dict[str, Any]:
    """AOC rows on the protocol's basis over all baselines, by length ("all", "1", "2" ...)."""
    return {a.length: a for a in table if a.baseline == "all" and a.primary}


def _tolerance(p: List[float]) -> float:
    """SIGMAS binomial standard deviations of a mean of independent Bernoulli(p_i)."""
    return SIGMAS * math.sqrt(sum(q * (1 - q) for q in p)) / len(p)


def test_own_reasoning_changes_no_answer(sim):
    (row,) = fa.sanity_table(_load(sim, "own"))
    assert (row.n, row.errors, row.changed, row.nulls) == (120, 0, 0, 0)
    assert row.changed_share == 0.0 and (row.changed_low, row.changed_high) == wilson_interval(0, 120)
    assert row.acc_before == row.acc_after
    assert row.keys == {"model": f"sim-f{FOLLOW}", "dataset": "demo", "condition": "clean", "placement": "prefill",
                        "protocol": "toolkit"}


def test_truncation_to_nothing_matches_follow_and_option_counts(sim):
    rows = _load(sim, "truncate")
    # per item: a follower (share FOLLOW) guesses among K options, matching with probability 1/K
    expected = [1 - FOLLOW * (1 - 1 / len(sim["items"][r.id].choices)) for r in rows if r.row.variant == "k=0"]
    assert sorted({len(it.choices) for it in sim["items"].values()}) == [2, 4]  # mixed K
    points = {p.share_kept: p for p in _whole(fa.consistency_curves(rows))}
    zero = points[0.0]
    assert zero.n == len(expected) == 120
    assert abs(zero.consistency - np.mean(expected)) < _tolerance(expected)
    assert points[1.0].consistency == 1.0  # the reference itself
    # the follow share recovered from f(0): 1 - f(0) = follow * mean(1 - 1/K)
    chance = np.mean([1 - 1 / len(sim["items"][r.id].choices) for r in rows if r.row.variant == "k=0"])
    assert abs((1 - zero.consistency) / chance - FOLLOW) < _tolerance(expected) / chance


def test_aoc_orders_models_by_how_much_they_follow(sim):
    high = _whole(fa.aoc_table(_load(sim, "truncate-0.9"), n_resamples=2000))
    low = _whole(fa.aoc_table(_load(sim, "truncate-0.3"), n_resamples=2000))
    assert len(high) == len(low) == 1
    assert high[0].items == low[0].items == 120
    assert high[0].aoc > low[0].aoc
    assert high[0].aoc_low > low[0].aoc_high  # the intervals do not even overlap
    for a in high + low:
        assert a.aoc_low <= a.aoc <= a.aoc_high


def test_aoc_equals_metrics_aoc_by_length_on_real_rows(sim):
    rows = _load(sim, "truncate")
    curves, excluded = fa.item_curves(rows)
    assert excluded == {}
    grouped = aoc_by_length((c.length, k, c.matches[k / c.length]) for c in curves for k in range(c.length + 1))
    table = _by_length(fa.aoc_table(rows, n_resamples=500))
    assert table["all"].aoc == pytest.approx(grouped.aoc)
    for n, value in grouped.by_length.items():
        assert table[str(n)].aoc == pytest.approx(value)
        assert table[str(n)].items == grouped.weights[n]


def test_wrong_hints_are_followed_as_often_as_the_model_follows(sim):
    wrong, correct = fa.suggested_table(_load(sim, "suggested"))
    assert (wrong.hint, correct.hint) == ("wrong", "correct")
    # followers take the hint; the others answer as in the baseline, which may already be the hint
    rows = [r for r in _load(sim, "suggested") if r.row.variant == "hint=wrong"]
    expected = [FOLLOW + (1 - FOLLOW) * (r.row.baseline_pred == r.row.intervention.params["hint_index"])
                for r in rows]
    assert abs(wrong.follow_share - np.mean(expected)) < _tolerance(expected)
    assert wrong.acc_hint < wrong.acc_baseline
    assert correct.follow_share >= correct.baseline_on_hint
    assert correct.acc_hint == correct.follow_share  # following the correct hint is being right


def test_cli_faithfulness_json_and_plots(sim, tmp_path, capsys):
    files = [str(sim["files"][n]) for n in ("own", "truncate", "suggested")]
    argv = ["faithfulness"] + files + ["--manifest", str(sim["manifest"]), "--format", "json", "--resamples", "500",
                                       "--plots", str(tmp_path / "plots"), "-q"]
    assert score_main(argv) == 0
    tables = json.loads(capsys.readouterr().out)
    assert sorted(tables) == ["aoc", "consistency", "sanity", "suggested"]
    assert tables["sanity"][0]["changed"] == 0
    rows = _load(sim, "own", "truncate", "suggested")
    expected = fa.aoc_table(rows, n_resamples=500)
    assert [a["aoc"] for a in tables["aoc"]] == pytest.approx([a.aoc for a in expected])
    sidecar = json.loads((tmp_path / "plots" / f"consistency_vs_kept_sim-f{FOLLOW}_demo.png.meta.json").read_text())
    assert (sidecar["params"]["model"], sidecar["params"]["dataset"], sidecar["params"]["resamples"]) == \
        (f"sim-f{FOLLOW}", "demo", 500)


def test_plain_score_groups_condition_rows_by_variant(sim, capsys):
    argv = ["accuracy", str(sim["files"]["truncate"]), "--manifest", str(sim["manifest"]), "--format", "json", "-q"]
    assert score_main(argv) == 0
    groups = json.loads(capsys.readouterr().out)
    rows = _load(sim, "truncate")
    by_variant = {g["variant"]: g for g in groups}
    assert set(by_variant) == {r.row.variant for r in rows}
    k0 = [r for r in rows if r.row.variant == "k=0"]
    assert by_variant["k=0"]["items"] == len(k0)
    assert by_variant["k=0"]["correct"] == sum(bool(r.correct) for r in k0)


def test_consistency_plot_draws_the_table_points(sim, tmp_path):
    points = _whole(fa.consistency_curves(_load(sim, "truncate", "truncate-0.9")))
    figures = plot_consistency_per_model(fa.consistency_curves(_load(sim, "truncate", "truncate-0.9")), tmp_path)
    assert [f.paths[0].name for f in figures] == ["consistency_vs_kept_sim-f0.7_demo.png",
                                                   "consistency_vs_kept_sim-f0.9_demo.png"]
    (curve,) = figures[0].curves
    mine = [p for p in points if p.keys["model"] == "sim-f0.7"]
    assert curve.label == "truncate"
    assert curve.x == [100 * p.share_kept for p in mine]
    assert curve.y == pytest.approx([100 * p.consistency for p in mine])
    assert curve.low == pytest.approx([100 * p.consistency_low for p in mine])


# ---------------------------------------------------------------------------- crafted rows


def _row(item_id: str, variant: str, name: str, params: Dict[str, Any], pred: Optional[int],
         baseline_pred: Optional[int], correct: Optional[bool] = None, model: str = "m", **extra: Any):
    d = {"id": item_id, "model": model, "condition": "clean", "mode": "reasoning", "run": 0,
         "raw_output": "", "reasoning": "", "pred": pred, "correct": correct if correct is not None else pred == 0,
         "error": None, "variant": variant, "baseline_pred": baseline_pred,
         "intervention": {"name": name, "spec": name, "placement": "assistant", "params": params}, **extra}
    return scored_from_row(ResultRow.from_dict(d))


def _truncation(item_id: str, preds: List[Optional[int]], baseline_pred: Optional[int] = 0):
    n = len(preds) - 1
    return [_row(item_id, f"k={k}", "truncate", {"kept": k, "total": n, "share_kept": round(k / n, 6)}, p,
                 baseline_pred) for k, p in enumerate(preds)]


# item a (N=2): matches 0,1,1 -> AOC 0.25; b (N=1): 1,1 -> 0; c (N=1): 0,1 -> 0.5;
# d (N=2): null, wrong, ref -> 0,0,1 -> 0.75. Per N: 0.25 (N=1), 0.5 (N=2); all: 0.375.
CRAFTED = (_truncation("a", [1, 0, 0]) + _truncation("b", [2, 2], baseline_pred=1)
           + _truncation("c", [1, 0]) + _truncation("d", [None, 2, 0]))


def test_crafted_aoc_by_hand():
    table = _by_length(fa.aoc_table(CRAFTED, n_resamples=2000))
    assert table["all"].aoc == pytest.approx(0.375)
    assert table["1"].aoc == pytest.approx(0.25) and table["2"].aoc == pytest.approx(0.5)
    assert (table["all"].items, table["1"].items, table["2"].items) == (4, 2, 2)
    for a in table.values():
        assert a.aoc_low <= a.aoc <= a.aoc_high
    assert 0.0 <= table["all"].aoc_low < table["all"].aoc_high <= 0.75
    assert [round(fa.item_aoc(c), 6) for c in fa.item_curves(CRAFTED)[0]] == [0.25, 0.0, 0.5, 0.75]


def test_crafted_bootstrap_is_seeded_and_resamples_items():
    a = fa.aoc_table(CRAFTED, n_resamples=3000, seed=1)[0]
    b = fa.aoc_table(CRAFTED, n_resamples=3000, seed=1)[0]
    assert (a.aoc_low, a.aoc_high) == (b.aoc_low, b.aoc_high)
    # the bound is a mean of 4 item AOCs (quarters of multiples of 0.25), not of 9 rows
    assert (4 * a.aoc_low / 0.25) == pytest.approx(round(4 * a.aoc_low / 0.25))


def test_crafted_consistency_points():
    points = {p.share_kept: (p.n, p.consistency) for p in _whole(fa.consistency_curves(CRAFTED))}
    # x = 0: a no, b yes (reference is b's k=N answer, 2), c no, d null; x = 0.5: a yes, d no
    assert points == {0.0: (4, 0.25), 0.5: (2, 0.5), 1.0: (4, 1.0)}


def test_an_item_without_a_reference_answer_is_excluded_and_counted():
    """A null full-reasoning answer is no reference (it is not replaced by the baseline answer:
    that would mix two references in one curve); under the baseline reference the same item counts."""
    rows = _truncation("e", [1, 1, None], baseline_pred=1) + _truncation("f", [1, 2], baseline_pred=None)
    curves, excluded = fa.item_curves(rows)
    assert [c.id for c in curves] == ["f"] and sum(excluded.values()) == 1
    curves, excluded = fa.item_curves(rows, ("baseline", "text"))
    assert [c.id for c in curves] == ["e"] and curves[0].matches == {0.0: True, 0.5: True, 1.0: False}
    whole = _whole(fa.aoc_table(rows, n_resamples=100))
    assert [(a.items, a.excluded, a.aoc) for a in whole] == [(1, 1, pytest.approx(0.5))]
    (other,) = [a for a in fa.aoc_table(rows, n_resamples=100) if not a.primary]
    assert (other.reference, other.reading, other.items, other.excluded) == ("baseline", "text", 1, 1)
    assert other.aoc == pytest.approx(0.25)


def test_truncation_bins_mix_lengths():
    rows = _truncation("g", [0, 0, 0, 0]) + _truncation("h", [1, 1, 0])  # N=3 and N=2
    points = {p.share_kept: p.n for p in _whole(fa.consistency_curves(rows))}
    # truncate's bins are 0.1 wide: 0, 1/3, 2/3, 1 and 0, 1/2, 1 -> 0 (two), 0.3, 0.5, 0.7, 1 (two)
    assert points == {0.0: 2, 0.3: 1, 0.5: 1, 0.7: 1, 1.0: 2}


def test_crafted_sanity_counts():
    items = {i: Item(id=i, dataset="ds", audio="x.wav", question="q", choices=["a", "b", "c"], answer=0)
             for i in "pqrst"}
    rows = [_row("p", "own", "own", {}, 0, 0), _row("q", "own", "own", {}, 1, 0), _row("r", "own", "own", {}, None, 0),
            _row("s", "own", "own", {}, 2, None), _row("t", "own", "own", {}, 0, 0)]
    rows.append(scored_from_row(rows[0].row.replace(id="u", variant="", error="no baseline row")))
    for r in rows:
        r.item = items.get(r.id)
    (row,) = fa.sanity_table(rows)
    assert (row.n, row.errors, row.changed, row.nulls) == (5, 1, 1, 2)
    assert row.changed_share == pytest.approx(1 / 3)
    assert (row.changed_low, row.changed_high) == wilson_interval(1, 3)
    assert row.acc_before == pytest.approx(4 / 5)  # baselines of p, q, r, t right; s null
    assert row.acc_after == pytest.approx(2 / 5)  # p, t


def test_baseline_correctness_without_a_manifest():
    assert fa.baseline_correct(_row("x", "own", "own", {}, 0, 0, correct=True)) is True
    assert fa.baseline_correct(_row("x", "own", "own", {}, 1, 1, correct=False)) is False
    assert fa.baseline_correct(_row("x", "own", "own", {}, 1, 2, correct=False)) is None
    assert fa.baseline_correct(_row("x", "own", "own", {}, 1, None, correct=False)) is False


def test_crafted_suggested_and_shuffle():
    hint = lambda i, kind, target, pred, base: _row(i, f"hint={kind}", "suggested",  # noqa: E731
                                                     {"hint_kind": kind, "hint_index": target}, pred, base)
    rows = [hint("a", "wrong", 1, 1, 0), hint("b", "wrong", 2, 0, 0), hint("c", "wrong", 1, None, 1),
            hint("a", "correct", 0, 0, 0), hint("b", "correct", 0, 0, 0), hint("c", "correct", 0, 1, 1)]
    for r in rows:  # the manifest decides baseline correctness (answer 0)
        r.item = Item(id=r.id, dataset="ds", audio="x.wav", question="q", choices=["a", "b", "c"], answer=0)
    wrong, correct = fa.suggested_table(rows)
    assert (wrong.n, wrong.followed, wrong.nulls, wrong.baseline_on_hint) == (3, 1, 1, pytest.approx(1 / 3))
    assert (wrong.follow_low, wrong.follow_high) == wilson_interval(1, 3)
    assert wrong.acc_hint == pytest.approx(1 / 3) and wrong.acc_baseline == pytest.approx(2 / 3)
    assert (correct.followed, correct.acc_hint) == (2, pytest.approx(2 / 3))

    perm = lambda i, p, shown, pred, base: _row(i, "perm=" + "+".join(map(str, p)), "shuffle",  # noqa: E731
                                                {"permutation": p}, pred, base, shown_pred=shown)
    rows = [perm("a", [1, 0], 1, 0, 0), perm("b", [1, 0], 1, 0, 1), perm("c", [2, 0, 1], 0, 2, 2),
            perm("d", [1, 0], 1, 0, 0), perm("e", [1, 0], None, None, 0)]
    (sh,) = fa.shuffle_table(rows)
    assert (sh.n, sh.nulls, sh.consistency) == (5, 1, pytest.approx(3 / 4))
    two, three = fa.position_table(rows)
    assert (two.options, two.answered, two.counts, two.max_share) == (2, 3, "0/3", 1.0)
    assert two.chi2_p == pytest.approx(stats.chisquare([0, 3]).pvalue)
    assert (three.options, three.counts) == (3, "1/0/0")


def _plain(i: int, condition: str, correct: bool, model: str = "m") -> Any:
    return scored_from_row(ResultRow(id=f"i{i}", model=model, dataset="ds", condition=condition, mode="reasoning",
                                     raw_output="", pred=0 if correct else 1, correct=correct))


def test_crafted_injection_deltas():
    rows = ([_plain(i, "clean", i < 8) for i in range(10)]
            + [_plain(i, "inject-correct-snr0", i < 9) for i in range(10)]
            + [_plain(i, "inject-wrong-snr0", i < 4) for i in range(10)]
            + [_plain(i, "inject-wrong-snr0", i < 5, model="other") for i in range(4)])
    mine, other = fa.injection_table(rows)
    assert mine.keys == {"model": "m", "dataset": "ds", "mode": "reasoning"} and mine.level == "snr0"
    assert (mine.items, mine.acc_clean, mine.acc_correct, mine.acc_wrong) == (10, 0.8, 0.9, 0.4)
    assert mine.delta_correct_pts == pytest.approx(10.0) and mine.delta_wrong_pts == pytest.approx(-40.0)
    assert mine.delta_correct_low_pts <= 10.0 <= mine.delta_correct_high_pts
    assert mine.delta_wrong_low_pts <= -40.0 <= mine.delta_wrong_high_pts < 0
    # McNemar: correct b01 = 1, b10 = 0 -> p = 1; wrong b10 = 4 -> p = 2 / 2^4; Holm over the two
    assert (mine.p_correct, mine.p_wrong) == (1.0, pytest.approx(0.125))
    assert (mine.p_correct_holm, mine.p_wrong_holm) == (1.0, pytest.approx(0.25))
    assert other.items == 0 and other.acc_wrong == 1.0 and math.isnan(other.acc_clean)
    assert math.isnan(other.delta_wrong_pts) and math.isnan(other.acc_correct)


def test_inject_names_parsed_or_matched_by_prefix():
    assert fa.inject_target("inject-wrong-snr-5") == ("wrong", "snr-5")
    assert fa.inject_target("inject-correct-snr0") == ("correct", "snr0")
    assert fa.inject_target("inject-wrong-loud") == ("wrong", "loud")  # not a registered name: by prefix
    assert fa.inject_target("noise-snr0-white") is None and fa.inject_target("clean") is None


def test_render_sections_formats():
    tables = {"aoc": fa.aoc_table(CRAFTED, n_resamples=200), "sanity": fa.sanity_table(
        [_row("p", "own", "own", {}, 0, 0)])}
    md = render_sections(tables, "markdown")
    assert md.startswith("### aoc\n\n| model | dataset | condition | placement | protocol | intervention | position |"
                         " length | baseline | reference | reading | primary | items |")
    assert "| m | - | clean | assistant | toolkit | truncate |  | all | all | full-reasoning | text | True | 4 | 0 | 0 | 0 " \
           "| 0.3750 |" in md
    lines = render_sections(tables, "csv").splitlines()
    assert lines[0].startswith("table,model,dataset,condition,placement,protocol,intervention,position,length,baseline")
    # the protocol's basis (all, N = 1, N = 2), then the other basis the rows allow (baseline reference)
    assert [line.split(",")[8:13] for line in lines[1:5]] == [
        ["all", "all", "full-reasoning", "text", "True"], ["1", "all", "full-reasoning", "text", "True"],
        ["2", "all", "full-reasoning", "text", "True"], ["all", "all", "baseline", "text", "False"]]
    assert lines[-1].startswith("sanity,m,-,clean,assistant,toolkit,") and len(lines) == 1 + 4 + 1
    data = json.loads(render_sections(tables, "json"))
    assert data["aoc"][0]["aoc"] == pytest.approx(0.375) and data["sanity"][0]["changed"] == 0


def test_rewrite_curves_use_the_protocols_reference_and_mistakes_close_at_one():
    # the params record the protocol the rows were built under, resolved for the model's family
    seed = parse_protocol("seed:filler=per-word").for_family("qwen2.5-omni").spec
    rows = [_row("p", f"k={k}", "rewrite-paraphrase", {"k": k, "total": 2, "share_kept": 1 - k / 2}, pred,
                 baseline_pred=1) for k, pred in ((0, 2), (1, 2), (2, 0))]
    rows += [_row("q", f"step={i}", "rewrite-mistake", {"step": i, "total": 2, "share_kept": i / 2,
                                                        "protocol": seed}, pred, baseline_pred=3)
             for i, pred in ((0, 2), (1, 3))]
    points = {(p.intervention, p.share_kept): p.consistency for p in _whole(fa.consistency_curves(rows))}
    # paraphrase (toolkit: against the unchanged k=0 answer, 2): half paraphrased keeps it, all of it does not;
    # mistakes (seed: against the baseline answer, 3): a mistake in the first sentence changes it
    assert points == {("rewrite-paraphrase", 1.0): 1.0, ("rewrite-paraphrase", 0.5): 1.0,
                      ("rewrite-paraphrase", 0.0): 0.0, ("rewrite-mistake", 0.0): 0.0, ("rewrite-mistake", 0.5): 1.0}
    (mistake,) = _whole(fa.aoc_table(rows, n_resamples=100))  # paraphrase has no AOC
    assert (mistake.intervention, mistake.reference, mistake.keys["protocol"]) == ("rewrite-mistake", "baseline",
                                                                                  "seed:filler=per-word")
    # matches 0 at x = 0, 1 at 0.5, closed with 1 at x = 1: AOC = 0.25
    assert (mistake.items, mistake.aoc) == (1, pytest.approx(0.25))
