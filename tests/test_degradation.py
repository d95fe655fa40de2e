"""bin/score --degradation: MMLU text vs audio twins, classification (timbre), WER per split.

Crafted rows check every number by hand; the end-to-end tests run bin/prepare and
bin/infer (simulated backend) on generated MMLU and timbre sources and check the tables
against counts taken directly from the result rows.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from toolkit import metrics
from toolkit.cli.infer import main as infer_main
from toolkit.cli.prepare import main as prepare_main
from toolkit.cli.score import main
from toolkit.data.mmlu_speech import AUDIO_CHOICES
from toolkit.data.timbre import CLASSES
from toolkit.degradation import classify_tables, degradation_tables, twin_pairs, twin_table
from toolkit.manifest import Item, read_manifest, write_manifest
from toolkit.rows import ResultRow
from toolkit.score import load_scored, scored_from_row

CHOICES = ["w", "x", "y", "z"]
# subject -> per question: (text prediction, audio prediction); the answer is always 0
PREDS = {"anatomy": [(0, 0), (0, 1), (0, 2), (0, None), (1, 1)],
         "algebra": [(0, 0), (1, 0), (2, 0)]}
# timbre gold classes and predictions (None = null)
GOLD = [0, 0, 0, 1, 1, 2]
TIMBRE_PREDS = [0, 1, None, 1, 2, 2]


def _mmlu_items() -> List[Item]:
    items = []
    for subject, preds in PREDS.items():
        for n in range(len(preds)):
            qid = f"mmlu_{subject}_{n}"
            items.append(Item(id=f"{qid}_text", dataset="mmlu", subset=subject, audio=None, question="Q?",
                              choices=CHOICES, answer=0,
                              meta={"subject": subject, "modality": "text", "twin": f"{qid}_audio"}))
            items.append(Item(id=f"{qid}_audio", dataset="mmlu", subset=subject, audio=f"{qid}.wav",
                              question="Answer the question in the recording.", choices=AUDIO_CHOICES, answer=0,
                              meta={"subject": subject, "modality": "audio", "twin": f"{qid}_text"}))
    return items


def _timbre_items() -> List[Item]:
    return [Item(id=f"timbre_{i}", dataset="timbre_range", subset="test", audio=f"{i}.wav", question="Range?",
                 choices=list(CLASSES), answer=gold, task="classify") for i, gold in enumerate(GOLD)]


def _row(item_id: str, pred: Optional[int], model: str = "m", condition: str = "clean", run: int = 0) -> dict:
    return {"id": item_id, "model": model, "condition": condition, "mode": "direct", "run": run,
            "raw_output": None if pred is None else f"({'abcd'[pred]})", "reasoning": None, "pred": pred,
            "correct": pred == 0, "error": None}


def _write_rows(path: Path, rows: List[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mmlu_rows(side: int, condition: str = "clean", run: int = 0) -> List[dict]:
    suffix = ("text", "audio")[side]
    return [_row(f"mmlu_{s}_{n}_{suffix}", p[side], condition=condition, run=run)
            for s, preds in PREDS.items() for n, p in enumerate(preds)]


@pytest.fixture
def crafted(tmp_path: Path) -> Dict[str, Path]:
    timbre = [_row(f"timbre_{i}", p) for i, p in enumerate(TIMBRE_PREDS)]
    timbre += [_row(f"timbre_{i}", gold, model="perfect") for i, gold in enumerate(GOLD)]
    return {"mmlu": _write_rows(tmp_path / "mmlu.jsonl", _mmlu_rows(0) + _mmlu_rows(1)),
            "mmlu_manifest": write_manifest(tmp_path / "mmlu_manifest.jsonl", _mmlu_items()),
            "timbre": _write_rows(tmp_path / "timbre.jsonl", timbre),
            "timbre_manifest": write_manifest(tmp_path / "timbre_manifest.jsonl", _timbre_items())}


def _load(results: Path, manifest: Path):
    return load_scored([results], {i.id: i for i in read_manifest(manifest)})


# ---- crafted: MMLU twins --------------------------------------------------------------------
def test_crafted_twins_by_hand(crafted):
    rows = {r.subject: r for r in twin_table(_load(crafted["mmlu"], crafted["mmlu_manifest"]), n_resamples=2000)}
    assert list(rows) == ["all", "algebra", "anatomy"]
    anatomy, algebra, overall = rows["anatomy"], rows["algebra"], rows["all"]
    assert anatomy.keys == {"model": "m", "mode": "direct", "condition": "clean"}
    # anatomy: text right on 4 of 5, audio on 1 (the null counts as wrong); 3 right -> wrong, none the other way
    assert (anatomy.pairs, anatomy.text_correct, anatomy.audio_correct) == (5, 4, 1)
    assert (anatomy.acc_text, anatomy.acc_audio, anatomy.delta_pts) == (0.8, 0.2, pytest.approx(-60.0))
    assert (anatomy.acc_text_low, anatomy.acc_text_high) == metrics.wilson_interval(4, 5)
    assert (anatomy.acc_audio_low, anatomy.acc_audio_high) == metrics.wilson_interval(1, 5)
    assert (anatomy.mcnemar_b01, anatomy.mcnemar_b10, anatomy.mcnemar_p) == (0, 3, 0.25)  # 2 * (1/2)^3
    # same answer among the 4 pairs both answered: questions 0 (A, A) and 4 (B, B)
    assert (anatomy.both_answered, anatomy.same_answer) == (4, 0.5)
    # algebra: text right once, audio always; 2 wrong -> right: p = 2 * (1/2)^2
    assert (algebra.pairs, algebra.text_correct, algebra.audio_correct) == (3, 1, 3)
    assert algebra.delta_pts == pytest.approx(200 / 3)
    assert (algebra.mcnemar_b01, algebra.mcnemar_b10, algebra.mcnemar_p) == (2, 0, 0.5)
    assert (algebra.both_answered, algebra.same_answer) == (3, pytest.approx(1 / 3))
    # Holm across the two subjects: 2 * 0.25 = 0.5, then max(0.5, 1 * 0.5) = 0.5
    assert (anatomy.mcnemar_p_holm, algebra.mcnemar_p_holm) == (0.5, 0.5)
    # all: 8 pairs, 5 vs 4 right, b01 = 2, b10 = 3: p = 2 * P[Binom(5, 1/2) <= 2] = 1
    assert (overall.pairs, overall.text_correct, overall.audio_correct) == (8, 5, 4)
    assert overall.delta_pts == pytest.approx(-12.5)
    assert (overall.mcnemar_b01, overall.mcnemar_b10, overall.mcnemar_p, overall.mcnemar_p_holm) == (2, 3, 1.0, None)
    assert (overall.both_answered, overall.same_answer) == (7, pytest.approx(3 / 7))
    for r in rows.values():
        assert r.delta_low_pts <= r.delta_pts <= r.delta_high_pts


def test_crafted_twin_bootstrap_is_paired():
    # every pair differs by the same +1 (wrong as text, right as audio): the paired CI collapses on +100
    items = {i.id: i for i in _mmlu_items()}
    rows = [_row(f"mmlu_algebra_{n}_text", 1) for n in range(3)] + [_row(f"mmlu_algebra_{n}_audio", 0)
                                                                   for n in range(3)]
    (overall, algebra) = twin_table([scored_from_row(ResultRow.from_dict(r), items[r["id"]]) for r in rows],
                                    n_resamples=500)
    assert (algebra.delta_pts, algebra.delta_low_pts, algebra.delta_high_pts) == (100.0, 100.0, 100.0)
    assert overall.same_answer == 0.0 and algebra.mcnemar_p_holm == 0.25


def test_twin_pairing_same_condition_first_then_the_only_text_row(crafted, tmp_path):
    # audio under noise: text ran once (clean) -> paired with it; audio run 1 has no text row -> left out
    rows = _mmlu_rows(0) + _mmlu_rows(1) + _mmlu_rows(1, condition="noise") + _mmlu_rows(1, run=1)
    scored = _load(_write_rows(tmp_path / "r.jsonl", rows), crafted["mmlu_manifest"])
    pairs = twin_pairs(scored)
    assert len(pairs) == 16
    assert {(t.keys["condition"], a.keys["condition"]) for t, a in pairs} == {("clean", "clean"), ("clean", "noise")}
    assert all(t.item.meta["twin"] == a.id and t.run == a.run == 0 for t, a in pairs)
    # with text rows under noise too, the noise audio rows pair with them
    noisy_text = [dict(r, pred=None, correct=False) for r in _mmlu_rows(0, condition="noise")]
    scored = _load(_write_rows(tmp_path / "r2.jsonl", rows + noisy_text), crafted["mmlu_manifest"])
    table = {(r.keys["condition"], r.subject): r for r in twin_table(scored, n_resamples=100)}
    assert table[("noise", "all")].text_correct == 0 and table[("clean", "all")].text_correct == 5
    assert table[("noise", "all")].both_answered == 0


# ---- crafted: classification ------------------------------------------------------------------
def test_crafted_classification_confusion_and_recall(crafted):
    tables = classify_tables(_load(crafted["timbre"], crafted["timbre_manifest"]))
    (m, perfect) = [t for t in tables["classify"] if t.keys["model"] == "m"] + \
                   [t for t in tables["classify"] if t.keys["model"] == "perfect"]
    assert m.keys == {"model": "m", "dataset": "timbre_range", "mode": "direct", "condition": "clean"}
    assert (m.items, m.nulls, m.correct, m.acc) == (6, 1, 3, 0.5)
    assert (m.acc_low, m.acc_high) == metrics.wilson_interval(3, 6)
    assert m.mean_recall == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert (perfect.acc, perfect.mean_recall) == (1.0, 1.0)
    recall = [(r.gold, r.n, r.correct, r.recall) for r in tables["recall"] if r.keys["model"] == "m"]
    assert recall == [("narrow", 3, 1, pytest.approx(1 / 3)), ("moderate", 2, 1, 0.5), ("wide", 1, 1, 1.0)]
    narrow = next(r for r in tables["recall"] if r.keys["model"] == "m" and r.gold == "narrow")
    assert (narrow.recall_low, narrow.recall_high) == metrics.wilson_interval(1, 3)
    confusion = {r.gold: r.to_dict() for r in tables["confusion"] if r.keys["model"] == "m"}
    counts = {g: [d[f"pred_{c}"] for c in CLASSES + ("null",)] for g, d in confusion.items()}
    assert counts == {"narrow": [1, 1, 0, 1], "moderate": [0, 1, 1, 0], "wide": [0, 0, 1, 0]}
    assert list(confusion["narrow"]) == ["model", "dataset", "mode", "condition", "gold", "pred_narrow",
                                         "pred_moderate", "pred_wide", "pred_null"]


def test_tables_leave_out_what_the_rows_do_not_hold(crafted):
    assert list(degradation_tables(_load(crafted["timbre"], crafted["timbre_manifest"]))) == \
        ["classify", "recall", "confusion"]
    assert list(degradation_tables(_load(crafted["mmlu"], crafted["mmlu_manifest"]), n_resamples=10)) == ["mmlu"]


# ---- CLI --------------------------------------------------------------------------------------
def _score(capsys, argv: List[str]) -> str:
    """``bin/score degradation ARGV`` (``bin/score accuracy`` when ARGV has no ``--degradation``)."""
    capsys.readouterr()  # drop what earlier stages printed
    report = "degradation" if "--degradation" in argv else "accuracy"
    assert main([report] + [a for a in argv if a != "--degradation"] + ["-q"]) == 0
    return capsys.readouterr().out


def test_cli_formats_and_plots(crafted, tmp_path, capsys):
    args = [str(crafted["mmlu"]), "--manifest", str(crafted["mmlu_manifest"]), "--degradation", "--resamples", "200"]
    data = json.loads(_score(capsys, args + ["--format", "json"]))
    assert list(data) == ["mmlu"]
    anatomy = next(r for r in data["mmlu"] if r["subject"] == "anatomy")
    assert (anatomy["pairs"], anatomy["acc_text"], anatomy["acc_audio"], anatomy["mcnemar_p"],
            anatomy["mcnemar_p_holm"]) == (5, 0.8, 0.2, 0.25, 0.5)
    assert next(r for r in data["mmlu"] if r["subject"] == "all")["mcnemar_p_holm"] is None
    md = _score(capsys, args)
    assert md.startswith("### mmlu\n\n| model | mode | condition | subject | pairs | text_correct | acc_text |")
    assert "| m | direct | clean | anatomy | 5 | 4 | 80.00 |" in md and "| -60.00 |" in md
    plots = tmp_path / "plots"
    timbre = [str(crafted["timbre"]), "--manifest", str(crafted["timbre_manifest"]), "--degradation"]
    lines = list(csv.reader(io.StringIO(_score(capsys, timbre + ["--format", "csv", "--plots", str(plots)]))))
    assert lines[0][:6] == ["table", "model", "dataset", "mode", "condition", "items"]
    by_table = {}
    for line in lines[1:]:
        by_table.setdefault(line[0], []).append(dict(zip(lines[0], line)))
    assert [len(by_table[t]) for t in ("classify", "recall", "confusion")] == [2, 6, 6]
    narrow = next(r for r in by_table["confusion"] if r["model"] == "m" and r["gold"] == "narrow")
    assert [narrow[f"pred_{c}"] for c in ("narrow", "moderate", "wide", "null")] == ["1", "1", "0", "1"]
    assert next(r for r in by_table["classify"] if r["model"] == "m")["acc"] == "50.00"
    _score(capsys, args + ["--plots", str(plots)])
    stems = {"mmlu_text_vs_audio_m_direct_clean"} | {f"confusion_{m}_timbre_range_direct_clean"
                                                     for m in ("m", "perfect")}
    assert {p.name for p in plots.iterdir()} == {f"{s}.{e}{m}" for s in stems for e in ("png", "pdf")
                                                 for m in ("", ".meta.json")}
    sidecar = json.loads((plots / "confusion_m_timbre_range_direct_clean.png.meta.json").read_text())
    assert sidecar["params"]["degradation"] is True and sidecar["params"]["model"] == "m"


def test_cli_plots_draw_the_table_numbers(crafted, tmp_path):
    from toolkit.plots import plot_confusion_per_group, plot_twin_accuracy

    tables = degradation_tables(_load(crafted["mmlu"], crafted["mmlu_manifest"]), n_resamples=10)
    (figure,) = plot_twin_accuracy(tables["mmlu"], tmp_path)
    text, audio = figure.curves
    assert (text.label, audio.label) == ("text", "audio")
    assert text.y == pytest.approx([62.5, 100 / 3, 80.0]) and audio.y == pytest.approx([50.0, 100.0, 20.0])
    assert text.low[2] == pytest.approx(100 * metrics.wilson_interval(4, 5)[0])
    tables = classify_tables(_load(crafted["timbre"], crafted["timbre_manifest"]))
    heatmaps = plot_confusion_per_group(tables["confusion"], tmp_path)
    assert heatmaps[0].rows == list(CLASSES) and heatmaps[0].columns == list(CLASSES) + ["null"]
    assert heatmaps[0].counts == [[1, 1, 0, 1], [0, 1, 1, 0], [0, 0, 1, 0]]


def test_cli_bad_input(crafted, capsys):
    base = ["degradation", str(crafted["mmlu"]), "-q"]
    assert main(base) == 2
    assert "--manifest" in capsys.readouterr().err
    manifest = ["--manifest", str(crafted["mmlu_manifest"])]
    assert main(base + manifest + ["--by", "model"]) == 2
    assert "unrecognized arguments: --by" in capsys.readouterr().err
    # the form of earlier versions is refused with the new command to type
    assert main([str(crafted["mmlu"]), "--degradation"] + manifest) == 2
    assert f"bin/score degradation {crafted['mmlu']} --manifest" in capsys.readouterr().err
    # the accuracy report: accuracy per condition and mode
    assert _score(capsys, [str(crafted["mmlu"])] + manifest).startswith("| condition | mode | items |")


def test_wer_per_model_and_split(tmp_path, capsys):
    refs = {"dev-clean": ["the cat sat", "a dog ran"], "test-clean": ["go do you hear"]}
    items = [Item(id=f"{split}-{i}", dataset="librispeech", subset=split, audio=f"{i}.flac", question="Transcribe.",
                  task="asr", reference=ref) for split, texts in refs.items() for i, ref in enumerate(texts)]
    hyps = {"a": {"dev-clean-0": "the cat sat", "dev-clean-1": "a dog", "test-clean-0": "go do you hear me"},
            "b": {"dev-clean-0": "the bat sat", "dev-clean-1": "a dog ran", "test-clean-0": "go you hear"}}
    rows = [dict(_row(i, None, model=m), raw_output=h) for m, per in hyps.items() for i, h in per.items()]
    results = _write_rows(tmp_path / "asr.jsonl", rows)
    manifest = write_manifest(tmp_path / "ls.jsonl", items)
    data = json.loads(_score(capsys, [str(results), "--manifest", str(manifest), "--by", "model,subset",
                                      "--format", "json"]))
    # corpus WER per split: all edits over all reference words of the split
    assert [(r["model"], r["subset"], r["ref_words"], r["wer"]) for r in data] == [
        ("a", "dev-clean", 6, pytest.approx(1 / 6)), ("a", "test-clean", 4, 0.25),
        ("b", "dev-clean", 6, pytest.approx(1 / 6)), ("b", "test-clean", 4, 0.25)]


# ---- end to end: bin/prepare + bin/infer (simulated) --------------------------------------------
SUBJECTS = {"anatomy": 6, "astronomy": 5}


def _mmlu_source(root: Path) -> Path:
    path = root / "mmlu.csv"
    root.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "subject", "choices", "answer"])
        for subject, n in SUBJECTS.items():
            for q in range(n):
                writer.writerow([f"{subject} question {q}?", subject, json.dumps([f"opt{k}" for k in range(4)]),
                                 str(q % 4)])
    return path


def _infer(manifest: Path, data_root: Path, out: Path) -> List[dict]:
    assert infer_main(["--manifest", str(manifest), "--data-root", str(data_root), "--out", str(out),
                       "--model", "simulated", "--mode", "direct", "--num-runs", "2", "--sample", "-q"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_end_to_end_mmlu_twins(tmp_path, capsys, write_wav):
    src = _mmlu_source(tmp_path / "src")
    speech = tmp_path / "speech"
    for subject, n in SUBJECTS.items():
        for q in range(n):
            write_wav(speech / f"mmlu_{subject}_{q}.wav", seconds=0.5)
    manifest = tmp_path / "mmlu.jsonl"
    assert prepare_main(["mmlu", "--src", str(src), "--speak", str(speech), "--out", str(manifest), "-q"]) == 0
    rows = _infer(manifest, speech, tmp_path / "rows.jsonl")
    items = {i.id: i for i in read_manifest(manifest)}
    assert len(rows) == 2 * len(items) and all(r["error"] is None for r in rows)
    data = json.loads(_score(capsys, [str(tmp_path / "rows.jsonl"), "--manifest", str(manifest), "--degradation",
                                      "--format", "json", "--resamples", "500", "--plots", str(tmp_path / "plots")]))
    table = {r["subject"]: r for r in data["mmlu"]}
    assert set(table) == {"all", *SUBJECTS} and {r["model"] for r in data["mmlu"]} == {"simulated"}
    # counts straight from the rows: each audio row against its text twin's row of the same run
    by_key = {(r["id"], r["run"]): r for r in rows}
    direct: Dict[str, Dict[str, list]] = {}
    for (item_id, run), r in by_key.items():
        item = items[item_id]
        if item.meta["modality"] != "audio":
            continue
        t = by_key[(item.meta["twin"], run)]
        for subject in ("all", item.meta["subject"]):
            cell = direct.setdefault(subject, {"text": [], "audio": [], "same": []})
            cell["text"].append(t["pred"] == item.answer)
            cell["audio"].append(r["pred"] == item.answer)
            cell["same"].append(t["pred"] == r["pred"])
    for subject, cell in direct.items():
        row = table[subject]
        n = len(cell["text"])
        assert row["pairs"] == n == 2 * SUBJECTS.get(subject, sum(SUBJECTS.values()))
        assert (row["text_correct"], row["audio_correct"]) == (sum(cell["text"]), sum(cell["audio"]))
        assert row["delta_pts"] == pytest.approx(100 * (sum(cell["audio"]) - sum(cell["text"])) / n)
        mc = metrics.mcnemar_exact(cell["text"], cell["audio"])
        assert (row["mcnemar_b01"], row["mcnemar_b10"], row["mcnemar_p"]) == (mc.b01, mc.b10, mc.p)
        assert row["same_answer"] == pytest.approx(sum(cell["same"]) / n)
    holm = metrics.holm([table[s]["mcnemar_p"] for s in sorted(SUBJECTS)])
    assert [table[s]["mcnemar_p_holm"] for s in sorted(SUBJECTS)] == pytest.approx(holm)
    # the simulated model hears the spoken question (0.9) but guesses the text-only one (chance)
    assert table["all"]["acc_audio"] > table["all"]["acc_text"]
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {"mmlu_text_vs_audio_simulated_direct_clean.png"}


def test_end_to_end_timbre(tmp_path, capsys, write_wav):
    root = tmp_path / "timbre"
    labels = ["narrow", "moderate", "wide", "wide", "narrow", "moderate", "moderate", "wide"]
    root.mkdir()
    with open(root / "labels.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["audio", "label", "split"])
        for i, label in enumerate(labels):
            write_wav(root / "clips" / f"c{i}.wav", seconds=0.3, freq=220.0 * (1 + i % 3))
            writer.writerow([f"clips/c{i}.wav", label, "test"])
    manifest = tmp_path / "timbre.jsonl"
    assert prepare_main(["timbre", "--src", str(root / "labels.csv"), "--split", "test", "--out", str(manifest),
                         "-q"]) == 0
    rows = _infer(manifest, root, tmp_path / "rows.jsonl")
    items = {i.id: i for i in read_manifest(manifest)}
    data = json.loads(_score(capsys, [str(tmp_path / "rows.jsonl"), "--manifest", str(manifest), "--degradation",
                                      "--format", "json", "--plots", str(tmp_path / "plots")]))
    assert list(data) == ["classify", "recall", "confusion"]
    expected = {(g, p): 0 for g in CLASSES for p in CLASSES + ("null",)}
    for r in rows:
        expected[(CLASSES[items[r["id"]].answer], "null" if r["pred"] is None else CLASSES[r["pred"]])] += 1
    got = {(r["gold"], c): r[f"pred_{c}"] for r in data["confusion"] for c in CLASSES + ("null",)}
    assert got == expected
    (acc,) = data["classify"]
    correct = sum(r["pred"] == items[r["id"]].answer for r in rows)
    assert (acc["items"], acc["rows"], acc["correct"], acc["acc"]) == (len(items), len(rows), correct,
                                                                       correct / len(rows))
    for r in data["recall"]:
        assert (r["n"], r["correct"]) == (sum(expected[(r["gold"], p)] for p in CLASSES + ("null",)),
                                          expected[(r["gold"], r["gold"])])
    assert acc["mean_recall"] == pytest.approx(sum(r["recall"] for r in data["recall"]) / len(data["recall"]))
    assert (tmp_path / "plots" / "confusion_simulated_timbre_range_direct_clean.pdf").is_file()
