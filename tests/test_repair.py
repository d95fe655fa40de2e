"""bin/repair and toolkit.repair / toolkit.results on small literal files of both formats, and on the seed files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from toolkit.cli.repair import main
from toolkit.errors import InputError
from toolkit.manifest import Item, write_manifest
from toolkit.repair import repair_rows, seed_accuracy
from toolkit.results import SEED, TOOLKIT, read_results

CHOICES = ["dog", "cat", "bird"]
TOOLKIT_FIELDS = ["id", "model", "condition", "mode", "run", "prompt", "raw_output", "reasoning", "pred",
                  "pred_source", "correct", "error", "n_new_tokens", "seconds"]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _trow(item_id: str, raw: str, pred, mode: str = "reasoning", reasoning: str = "thinking", run: int = 0) -> dict:
    return {"id": item_id, "model": "m", "condition": "clean", "mode": mode, "run": run, "prompt": "reasoning-v1",
            "raw_output": raw, "reasoning": reasoning, "pred": pred, "pred_source": None if pred is None else "old",
            "correct": pred == 1, "error": None, "n_new_tokens": 5, "seconds": 0.1}


@pytest.fixture
def toolkit_files(tmp_path: Path) -> dict:
    """A toolkit manifest (gold: cat) and 3 rows: a fillable null, a non-null, a refusal with no reasoning."""
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        Item(id=f"t{i}", dataset="demo", audio=f"t{i}.wav", question="Which animal?", choices=CHOICES, answer=1)
        for i in range(1, 4)])
    results = _write_jsonl(tmp_path / "results.jsonl", [
        _trow("t1", "<Reasoning>It meows.</Reasoning>\nThe answer is (B).", None),
        _trow("t2", "The answer is (B).", 0),
        _trow("t3", "I'm sorry, I can't hear the audio.", None, reasoning=""),
    ])
    return {"manifest": manifest, "results": results}


@pytest.fixture
def seed_files(tmp_path: Path) -> dict:
    """An earlier-scripts manifest and result file (REAS): a fillable null and a non-null label."""
    manifest = _write_jsonl(tmp_path / "animal_manifest.jsonl", [
        {"id": f"sakura_animal_{n}_single", "question": "Which animal?", "choices": "(A) dog (B) cat (C) bird",
         "choices_list": CHOICES, "audio_path": "{DATA_ROOT}/a.wav", "answer": answer, "true_letter": gold}
        for n, answer, gold in ((0, "(b) cat", "B"), (1, "(c) bird", "C"))])
    results = _write_jsonl(tmp_path / "baseline_animal_REAS.jsonl", [
        {"id": "sakura_animal_0_single", "true_answer": "(b) cat", "true_letter": "B",
         "predicted_letters": [None, "A"], "reasoning": ["It meows.", ""],
         "raw_model_outputs": ["<Reasoning>It meows.</Reasoning>\nThe answer is (B).", "(A)"], "accuracy": 0.0},
        {"id": "sakura_animal_1_single", "true_answer": "(c) bird", "true_letter": "C",
         "predicted_letters": ["A"], "reasoning": ["It chirps."],
         "raw_model_outputs": ["<Reasoning>It chirps.</Reasoning>\nThe answer is (C)."], "accuracy": 0.0},
    ])
    return {"manifest": manifest, "results": results}


def _items(manifest: Path) -> dict:
    from toolkit.manifest import load_items

    return {item.id: item for item in load_items(manifest)}


# ---- library -------------------------------------------------------------------------------

def test_read_results_detects_formats(toolkit_files, seed_files):
    assert read_results(toolkit_files["results"])[0] == TOOLKIT
    fmt, rows = read_results(seed_files["results"])
    assert fmt == SEED and [r.line for r in rows] == [1, 2]
    assert rows[0].data["predicted_letters"] == [None, "A"]


_T1 = '{"id": "t1", "model": "m", "condition": "clean", "mode": "direct", "raw_output": "B", "pred": null}'


@pytest.mark.parametrize("lines, where, message", [
    ([_T1, '{"id": "t2", "raw_output": "B"'], 2, "malformed JSON"),
    ([_T1, '{"id": "t2"}'], 2, "not a result row"),
    ([_T1, '{"id": "t2", "predicted_letters": [], "raw_model_outputs": [], "true_letter": "A"}'], 2,
     "seed row in a toolkit"),
    ([_T1, _T1.replace('"t1"', '"t2"').replace('"pred": null', '"pred": "B"')], 2, "pred' must be an integer or null"),
    ([_T1.replace('"model": "m", ', '')], 1, "no 'model'"),
    (['{"id": "s", "predicted_letters": ["A"], "raw_model_outputs": [], "true_letter": "A"}'], 1, "1 predicted_letters"),
])
def test_read_results_errors_name_the_line(tmp_path, lines, where, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=message) as info:
        read_results(path)
    assert info.value.line == where and info.value.path == str(path)


def test_toolkit_fills_nulls_only(toolkit_files):
    fmt, rows = read_results(toolkit_files["results"])
    report = repair_rows(rows, fmt, _items(toolkit_files["manifest"]))
    t1, t2, t3 = (r.row for r in rows)
    assert (t1.pred, t1.pred_source, t1.correct) == (1, "answer-statement", True)
    assert (t2.pred, t2.pred_source, t2.correct) == (0, "old", False)  # non-null left alone
    assert (t3.pred, t3.pred_source) == (None, "refusal")
    assert (report.nulls_before, report.nulls_after, report.filled, report.items_changed) == (2, 1, 1, 1)
    assert report.by_rule == {"answer-statement": 1, "refusal": 1}
    assert report.missed_reasoning == 1 and report.relabelled == 0 and report.examples == []


def test_toolkit_reparse_all_changes_labels(toolkit_files):
    fmt, rows = read_results(toolkit_files["results"])
    report = repair_rows(rows, fmt, _items(toolkit_files["manifest"]), reparse_all=True)
    assert (rows[1].row.pred, rows[1].row.pred_source, rows[1].row.correct) == (1, "answer-statement", True)
    assert report.relabelled == 1 and report.relabel_reasons == {"answer-statement": 1}
    assert report.examples == [{"id": "t2", "run": 0, "old": "A", "new": "B", "rule": "answer-statement"}]
    assert report.by_rule == {"answer-statement": 2, "refusal": 1} and report.items_changed == 2


def test_seed_rows_update_letters_and_accuracy(seed_files):
    fmt, rows = read_results(seed_files["results"])
    report = repair_rows(rows, fmt, _items(seed_files["manifest"]), mode="reasoning")
    assert rows[0].data["predicted_letters"] == ["B", "A"] and rows[0].data["accuracy"] == 0.5
    assert rows[1].data["predicted_letters"] == ["A"] and rows[1].data["accuracy"] == 0.0
    assert (report.predictions, report.nulls_before, report.nulls_after, report.filled) == (3, 1, 0, 1)
    assert report.missed_reasoning == 1
    assert repair_rows(rows, fmt, _items(seed_files["manifest"]), mode="direct").missed_reasoning == 0


def test_seed_helpers():
    assert seed_accuracy(["B", None, "A", "B"], "B") == 0.5


# ---- CLI -----------------------------------------------------------------------------------

def test_cli_seed_keeps_format(seed_files, tmp_path, capsys):
    out = tmp_path / "out" / "repaired.jsonl"
    assert main(["--in", str(seed_files["results"]), "--manifest", str(seed_files["manifest"]),
                 "--out", str(out)]) == 0
    rows = _read_jsonl(out)
    assert set(rows[0]) == {"id", "true_answer", "true_letter", "predicted_letters", "reasoning",
                            "raw_model_outputs", "accuracy"}
    assert [r["predicted_letters"] for r in rows] == [["B", "A"], ["A"]]
    assert [r["accuracy"] for r in rows] == [0.5, 0.0]
    printed = capsys.readouterr().out
    assert "nulls 1 -> 0" in printed and "answer-statement 1" in printed and "missed reasoning 1" in printed
    assert "existing labels changed" not in printed
    sidecar = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert sidecar["stage"] == "repair" and sidecar["params"]["report"]["filled"] == 1


def test_cli_seed_reparse_all(seed_files, tmp_path, capsys):
    out = tmp_path / "repaired.jsonl"
    assert main(["--in", str(seed_files["results"]), "--manifest", str(seed_files["manifest"]),
                 "--out", str(out), "--reparse-all"]) == 0
    rows = _read_jsonl(out)
    assert [r["predicted_letters"] for r in rows] == [["B", "A"], ["C"]]
    assert [r["accuracy"] for r in rows] == [0.5, 1.0]
    printed = capsys.readouterr().out
    assert "existing labels changed 1 (answer-statement 1)" in printed
    assert "sakura_animal_1_single run 0: A -> C (answer-statement)" in printed


def test_cli_toolkit_keeps_format(toolkit_files, tmp_path):
    out = tmp_path / "repaired.jsonl"
    assert main(["--in", str(toolkit_files["results"]), "--manifest", str(toolkit_files["manifest"]),
                 "--out", str(out), "--to", "toolkit"]) == 0
    rows = _read_jsonl(out)
    assert [list(r) for r in rows] == [TOOLKIT_FIELDS] * 2 + [TOOLKIT_FIELDS + ["flags"]]
    assert [r["pred"] for r in rows] == [1, 0, None]
    assert rows[2]["flags"] == {"no_answer": "refusal: I'm sorry"}  # every null keeps its reason


def test_cli_to_toolkit(seed_files, tmp_path, capsys):
    out = tmp_path / "converted.jsonl"
    assert main(["--in", str(seed_files["results"]), "--manifest", str(seed_files["manifest"]), "--out", str(out),
                 "--to", "toolkit", "--model", "qwen2.5-omni"]) == 0
    rows = _read_jsonl(out)
    assert [list(r) for r in rows] == [TOOLKIT_FIELDS + ["dataset"]] * 3
    assert [(r["id"][-8:], r["run"], r["pred"], r["pred_source"], r["correct"]) for r in rows] == [
        ("0_single", 0, 1, "answer-statement", True), ("0_single", 1, 0, "seed", False),
        ("1_single", 0, 0, "seed", False)]
    assert {(r["model"], r["dataset"], r["condition"], r["mode"], r["prompt"]) for r in rows} == {
        ("qwen2.5-omni", "animal", "clean", "reasoning", "seed-reasoning")}
    assert "nulls 1 -> 0" in capsys.readouterr().out


def test_cli_to_toolkit_takes_condition_and_model_from_the_name_and_folder(seed_files, tmp_path, capsys):
    """Defect: --to toolkit on mask_p40_animal_REAS.jsonl wrote condition clean and model unknown."""
    masked = tmp_path / "qwen2.5-omni" / "animal" / "mask_p40_animal_REAS.jsonl"
    masked.parent.mkdir(parents=True)
    masked.write_text(seed_files["results"].read_text())
    out = tmp_path / "converted.jsonl"
    argv = ["--in", str(masked), "--manifest", str(seed_files["manifest"]), "--out", str(out), "--to", "toolkit"]
    assert main(argv) == 0
    assert {(r["model"], r["dataset"], r["condition"], r["mode"]) for r in _read_jsonl(out)} == {
        ("qwen2.5-omni", "animal", "mask_p40", "reasoning")}
    assert main(argv + ["--condition", "clean"]) == 2  # a flag may not relabel what the name says
    assert "--condition clean contradicts the file name" in capsys.readouterr().err
    unnamed = tmp_path / "results.jsonl"
    unnamed.write_text(seed_files["results"].read_text())
    argv = ["--in", str(unnamed), "--manifest", str(seed_files["manifest"]), "--out", str(tmp_path / "u.jsonl"),
            "--to", "toolkit"]
    assert main(argv) == 2  # nothing to read the condition from: refused, not guessed
    assert "cannot tell the condition" in capsys.readouterr().err and not (tmp_path / "u.jsonl").exists()
    assert main(argv + ["--model", "m", "--condition", "noise_snr10", "--mode", "reasoning"]) == 0
    assert {(r["model"], r["condition"]) for r in _read_jsonl(tmp_path / "u.jsonl")} == {("m", "noise_snr10")}


def test_cli_id_not_in_manifest(seed_files, tmp_path, capsys):
    results = seed_files["results"]
    lines = results.read_text().splitlines()
    results.write_text(lines[0] + "\n" + lines[1].replace("sakura_animal_1_single", "sakura_animal_9_single") + "\n")
    out = tmp_path / "never.jsonl"
    assert main(["--in", str(results), "--manifest", str(seed_files["manifest"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{results}:2" in err and "sakura_animal_9_single" in err and "not in the manifest" in err
    assert not out.exists()


def test_cli_malformed_line(toolkit_files, tmp_path, capsys):
    results = toolkit_files["results"]
    results.write_text(results.read_text() + '{"id": "t4", "raw_output": \n')
    assert main(["--in", str(results), "--manifest", str(toolkit_files["manifest"]),
                 "--out", str(tmp_path / "never.jsonl")]) == 2
    assert f"{results}:4: malformed JSON" in capsys.readouterr().err


def test_bin_repair_help():
    out = subprocess.run([sys.executable, str(REPO / "bin" / "repair"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--reparse-all" in out.stdout and "--to" in out.stdout


# ---- the earlier scripts' real files ---------------------------------------------------------

def test_real_mmau_reasoning_file(shared_data, tmp_path, capsys):
    seed = shared_data / "seed-results"
    src = seed / "qwen2.5-omni" / "mmau" / "baseline_mmau_REAS.jsonl"
    out = tmp_path / "mmau_REAS.jsonl"
    before = _read_jsonl(src)
    assert main(["--in", str(src), "--manifest", str(seed / "manifests" / "mmau_manifest.jsonl"),
                 "--out", str(out)]) == 0
    after = _read_jsonl(out)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    old = [p for r in before for p in r["predicted_letters"]]
    new = [p for r in after for p in r["predicted_letters"]]
    assert sum(p is None for p in new) <= sum(p is None for p in old)
    assert all(n == o for o, n in zip(old, new) if o is not None)  # no non-null label changed
    printed = capsys.readouterr().out
    report = json.loads(out.with_name(out.name + ".meta.json").read_text())["params"]["report"]
    assert report["rows"] == len(before) and report["relabelled"] == 0
    assert f"nulls {report['nulls_before']} -> {report['nulls_after']}" in printed
    assert f"missed reasoning {report['missed_reasoning']} (reasoning-mode predictions whose reasoning is empty" \
        in printed


# ---- flags and --explain (issue 15) ---------------------------------------------------------

def test_toolkit_flags_follow_the_new_extraction(tmp_path):
    """A re-parse rewrites flags.no_answer / flags.letter_text_conflict and keeps other flags."""
    choices = ["Basso profundo", "Coloratura soprano"]
    manifest = write_manifest(tmp_path / "m.jsonl", [
        Item(id=f"g{i}", dataset="demo", audio="a.wav", question="Which range?", choices=choices, answer=0)
        for i in (1, 2)])
    stale = dict(_trow("g1", "The voice is deep, like a \"basso profundo\". The other options, such as "
                             "\"Coloratura soprano,\" are clearly not the case here. Therefore, the best match is "
                             "B) Basso profundo.", None),
                 flags={"no_answer": "old reason", "audio_truncated_from_s": 31.0})
    results = _write_jsonl(tmp_path / "r.jsonl", [stale, _trow("g2", "The clip is silent.", 0)])
    fmt, rows = read_results(results)
    report = repair_rows(rows, fmt, _items(manifest), reparse_all=True)
    g1, g2 = (r.row for r in rows)
    assert (g1.pred, g1.pred_source) == (0, "conclusion-letter")
    assert g1.flags == {"audio_truncated_from_s": 31.0, "letter_text_conflict":
                        "letter B, text 'basso profundo' (A): text taken, the output names it elsewhere"}
    assert g2.pred is None and g2.flags == {"no_answer": "no rule matched"}
    assert report.letter_text_conflicts == 1
    assert any("letter/text conflicts 1" in line for line in report.lines())


def test_cli_explain_prints_every_rule_in_order(seed_files, capsys):
    assert main(["--in", str(seed_files["results"]), "--manifest", str(seed_files["manifest"]),
                 "--explain", "sakura_animal_0_single"]) == 0
    printed = capsys.readouterr().out
    from toolkit.answers import RULES

    positions = [printed.index(f". {rule.name} ") for rule in RULES]
    assert positions == sorted(positions)  # one line per rule, in cascade order
    assert "sakura_animal_0_single run 0" in printed and "sakura_animal_0_single run 1" in printed
    assert "answer-statement     B  <- decides" in printed and "result: B (answer-statement)" in printed
    assert "lone-letter          A  <- decides" in printed  # run 1 is "(A)"
    assert "options: (A) dog (B) cat (C) bird" in printed


def test_cli_explain_needs_a_known_id_and_out_otherwise(seed_files, capsys):
    argv = ["--in", str(seed_files["results"]), "--manifest", str(seed_files["manifest"])]
    assert main(argv + ["--explain", "nope"]) == 2
    assert "no row with id 'nope'" in capsys.readouterr().err
    assert main(argv) == 2
    assert "give --out" in capsys.readouterr().err
