"""bin/score: group tables, baseline statistics, output formats, plots, the official matcher."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import REPO
from toolkit.cli.score import main
from toolkit.errors import InputError
from toolkit.manifest import Item, write_manifest
from toolkit.official import export_rows, string_match
from toolkit.results import seed_identity
from toolkit.score import load_scored, score_groups

CHOICES = ["cat", "dog", "cow"]
# Item i: clean and noise predictions (None = null); the answer is always 0 ("cat").
CLEAN = [0, 0, 0, 0, 0, 0, 1, 1, None, None]
NOISE = [0, 0, 0, 1, 1, 1, 0, 2, 2, 2]


def _row(i: int, pred: Optional[int], condition: str) -> dict:
    final = "I cannot tell." if pred is None else f"The answer is {CHOICES[pred]}."
    reasoning = "" if condition == "clean" and i >= 8 else "It meows."
    return {"id": f"it{i}", "model": "m", "condition": condition, "mode": "reasoning", "run": 0,
            "raw_output": f"{reasoning} {final}".strip(), "reasoning": reasoning, "pred": pred,
            "pred_source": None, "correct": pred == 0, "error": None}


def _write(path: Path, preds: List[Optional[int]], condition: str) -> Path:
    path.write_text("".join(json.dumps(_row(i, p, condition)) + "\n" for i, p in enumerate(preds)))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict:
    items = [Item(id=f"it{i}", dataset="demo", audio=f"{i}.wav", question="Which animal?", choices=CHOICES,
                  answer=0, hop="single" if i % 2 == 0 else "multi") for i in range(10)]
    return {"clean": _write(tmp_path / "clean.jsonl", CLEAN, "clean"),
            "noise": _write(tmp_path / "noise.jsonl", NOISE, "noise"),
            "manifest": write_manifest(tmp_path / "manifest.jsonl", items)}


def _json_table(capsys, argv: List[str]) -> List[dict]:
    assert main((argv if argv[:1] == ["accuracy"] else ["accuracy"] + argv) + ["--format", "json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


def test_counts_accuracy_and_wilson(files, capsys):
    assert main(["accuracy", str(files["clean"]), "-q"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| condition | mode | items | rows | nulls | correct | acc | acc_low | acc_high |")
    # 6 correct of 10 (2 nulls counted wrong), 6 of 8 answered; Wilson 95% of 6/10 = [31.27, 83.18]
    assert table[2] == "| clean | reasoning | 10 | 10 | 2 | 6 | 60.00 | 31.27 | 83.18 | 75.00 | 2 |"


def test_grouping_by_hop_with_manifest(files, capsys):
    rows = _json_table(capsys, [str(files["clean"]), str(files["noise"]), "--manifest", str(files["manifest"]),
                                "--by", "dataset,condition,hop"])
    got = {(r["condition"], r["hop"]): (r["items"], r["nulls"], r["correct"]) for r in rows}
    assert [r["dataset"] for r in rows] == ["demo"] * 4
    assert got == {("clean", "multi"): (5, 1, 3), ("clean", "single"): (5, 1, 3),
                   ("noise", "multi"): (5, 0, 1), ("noise", "single"): (5, 0, 3)}


def test_baseline_comparison(files, capsys):
    (row,) = _json_table(capsys, [str(files["noise"]), "--baseline", str(files["clean"])])
    # clean right / noise wrong on it3-5 (b10 = 3), clean wrong / noise right on it6 (b01 = 1):
    # p = 2 * P[Binom(4, 1/2) <= 1] = 2 * 5/16; delta = (4 - 6) / 10 = -20 points.
    assert (row["condition"], row["paired"], row["mcnemar_b01"], row["mcnemar_b10"]) == ("noise", 10, 1, 3)
    assert row["mcnemar_p"] == pytest.approx(0.625)
    assert row["mcnemar_p_holm"] == pytest.approx(0.625)
    assert row["delta_pts"] == pytest.approx(-20.0)
    assert row["delta_low_pts"] <= -20.0 <= row["delta_high_pts"]
    # non-null pairs it0-7: equal on it0-2 -> 3/8; kappa with marginals (6,2,0)/8 vs (4,3,1)/8
    assert row["consistency"] == pytest.approx(3 / 8)
    assert row["flip_rate"] == pytest.approx(5 / 8)
    p_e = 6 / 8 * 4 / 8 + 2 / 8 * 3 / 8
    assert row["kappa"] == pytest.approx((3 / 8 - p_e) / (1 - p_e))


def test_holm_across_groups(files):
    rows = load_scored([files["noise"]])
    base = load_scored([files["clean"]])
    for i, r in enumerate(rows):
        r.keys["hop"] = "single" if i < 5 else "multi"
    groups = score_groups(rows, by=("hop",), baseline=base)
    raw = sorted(g.mcnemar_p for g in groups)
    assert sorted(g.mcnemar_p_holm for g in groups) == pytest.approx([min(1.0, 2 * raw[0]), max(2 * raw[0], raw[1])])


def test_formats_parse_and_out_file(files, tmp_path, capsys):
    args = ["accuracy", str(files["clean"]), str(files["noise"]), "-q"]
    assert main(args + ["--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["condition"], r["acc"]) for r in rows] == [("clean", "60.00"), ("noise", "40.00")]
    out = tmp_path / "t.md"
    assert main(args + ["--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert json.loads((tmp_path / "t.md.meta.json").read_text())["stage"] == "score"


def test_plots(files, tmp_path, capsys):
    assert main(["accuracy", str(files["clean"]), str(files["noise"]), "--plots", str(tmp_path / "plots"), "-q"]) == 0
    png = tmp_path / "plots" / "accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "plots" / "accuracy.pdf").read_bytes()[:5] == b"%PDF-"
    assert json.loads((tmp_path / "plots" / "accuracy.png.meta.json").read_text())["params"]["plot"] == "accuracy"


@pytest.mark.parametrize("prediction, correct", [
    ("The answer is cat.", True),
    ("(A) Cat", True),
    ("cat, not a dog", False),  # a competing option's token
    ("a cow", False),
    ("", False),
])
def test_string_match(prediction, correct):
    assert string_match("cat", prediction, CHOICES) is correct


def test_string_match_shared_tokens():
    choices = ["a small dog", "a big dog", "a cat"]
    assert string_match("a small dog", "It is a small dog", choices)  # "a", "dog" are answer tokens
    assert not string_match("a small dog", "small dog", choices)  # answer token "a" missing
    assert not string_match("a small dog", "a small or big dog", choices)


def test_official_column_and_export(files, tmp_path, capsys):
    export = tmp_path / "mmar.json"
    (row,) = _json_table(capsys, [str(files["clean"]), "--manifest", str(files["manifest"]),
                                  "--official", "mmar", "--export", str(export)])
    assert row["official_acc"] == pytest.approx(0.6)
    data = json.loads(export.read_text())
    assert data[0]["answer_prediction"] == "The answer is cat." and data[0]["answer"] == "cat"
    rows = load_scored([files["clean"]], {f"it{i}": it for i, it in enumerate(_items(files))})
    assert export_rows(rows, "mmau")[6]["model_output"] == "The answer is dog."


def _items(files) -> List[Item]:
    from toolkit.manifest import read_manifest
    return read_manifest(files["manifest"])


def test_bad_input(files, tmp_path, capsys):
    assert main(["accuracy", str(files["clean"]), "--by", "colour", "-q"]) == 2
    assert main(["accuracy", str(files["clean"]), "--official", "mmau", "-q"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_row(0, 0, "clean")) + "\n{oops\n")
    assert main(["accuracy", str(bad), "-q"]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({**_row(0, 0, "clean"), "id": "zz"}) + "\n")
    with pytest.raises(InputError, match=r"other.jsonl:1.*not in the manifest"):
        load_scored([other], {item.id: item for item in _items(files)})


def test_seed_identity_from_the_file_name_and_folder():
    found = seed_identity("seed-results/qwen2.5-omni/animal/mask_p20_animal_REAS.jsonl")
    assert (found.model, found.dataset, found.condition, found.mode) == ("qwen2.5-omni", "animal", "mask_p20",
                                                                         "reasoning")
    found = seed_identity("old/baseline_mmau_No_REAS.jsonl")
    assert (found.model, found.condition, found.mode) == (None, "clean", "direct")
    with pytest.raises(InputError, match="cannot tell the condition"):
        seed_identity("clean.jsonl")


def test_bin_score_help():
    out = subprocess.run([sys.executable, str(REPO / "bin" / "score"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "accuracy,faithfulness,degradation" in out.stdout
    out = subprocess.run([sys.executable, str(REPO / "bin" / "score"), "accuracy", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "--baseline" in out.stdout and "--allow-mismatch" in out.stdout


def test_real_seed_animal(shared_data, capsys):
    path = shared_data / "seed-results" / "qwen2.5-omni" / "animal" / "baseline_animal_REAS.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open(path, encoding="utf-8") as fh:
        own = [json.loads(line)["accuracy"] for line in fh if line.strip()]
    (row,) = _json_table(capsys, [str(path)])
    assert (row["condition"], row["mode"], row["items"]) == ("clean", "reasoning", 1000)
    assert row["acc"] == pytest.approx(sum(own) / len(own))


# ---------------------------------------------------------------- ASR rows (WER), SAKURA judge export, curves


def _asr_files(tmp_path: Path, files: dict, reference_2: str = "Hello big world") -> dict:
    items = [Item(id="u0", dataset="libri", audio="u0.flac", question="Transcribe.", task="asr",
                  reference="The cat sat."),
             Item(id="u1", dataset="libri", audio="u1.flac", question="Transcribe.", task="asr",
                  reference=reference_2)]
    mcq = [Item(id=f"it{i}", dataset="demo", audio=f"{i}.wav", question="Which animal?", choices=CHOICES, answer=0)
           for i in range(10)]
    rows = [{"id": "u0", "model": "m", "condition": "clean", "mode": "direct", "run": 0,
             "raw_output": "the cat sat down", "reasoning": "", "pred": None, "correct": None, "error": None},
            {"id": "u1", "model": "m", "condition": "clean", "mode": "direct", "run": 0,
             "raw_output": None, "reasoning": None, "pred": None, "correct": None, "error": "audio unreadable"}]
    asr = tmp_path / "asr.jsonl"
    asr.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"asr": asr, "manifest": write_manifest(tmp_path / "mixed.jsonl", items + mcq), "clean": files["clean"]}


def test_asr_wer_table_and_per_item(files, tmp_path, capsys):
    f = _asr_files(tmp_path, files)
    per_item = tmp_path / "items.jsonl"
    (row,) = _json_table(capsys, [str(f["asr"]), "--manifest", str(f["manifest"]), "--per-item", str(per_item)])
    # u0: 3 hits + 1 insertion; u1 failed: its 3 reference words are deletions -> 4 / 6
    assert row == {"condition": "clean", "mode": "direct", "items": 2, "errors": 1, "ref_words": 6, "hits": 3,
                   "substitutions": 0, "deletions": 3, "insertions": 1, "wer": pytest.approx(4 / 6)}
    lines = [json.loads(line) for line in per_item.read_text().splitlines()]
    assert [(r["id"], r["hypothesis"], r["insertions"], r["deletions"], r["wer"]) for r in lines] == [
        ("u0", "the cat sat down", 1, 0, pytest.approx(1 / 3)), ("u1", "", 0, 3, 1.0)]
    assert json.loads((tmp_path / "items.jsonl.meta.json").read_text())["stage"] == "score"
    assert main(["accuracy", str(f["asr"]), "--manifest", str(f["manifest"]), "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| clean | direct | 2 | 1 | 6 | 3 | 0 | 3 | 1 | 66.67 |"


def test_mixed_mcq_and_asr(files, tmp_path, capsys):
    f = _asr_files(tmp_path, files)
    args = ["accuracy", str(f["clean"]), str(f["asr"]), "--manifest", str(f["manifest"]), "-q"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("### accuracy\n\n| condition | mode | items |") and "\n### WER\n\n| condition |" in text
    data = _json_table(capsys, args)
    assert [r["acc"] for r in data["accuracy"]] == [0.6] and [r["wer"] for r in data["wer"]] == [pytest.approx(4 / 6)]
    assert main(args + ["--format", "csv"]) == 2
    assert "CSV holds one table" in capsys.readouterr().err
    assert main(["accuracy", str(f["clean"]), "--manifest", str(f["manifest"]), "--per-item",
                 str(tmp_path / "x.jsonl"), "-q"]) == 2


def test_asr_empty_reference_names_item(files, tmp_path, capsys):
    f = _asr_files(tmp_path, files, reference_2="  ")
    assert main(["accuracy", str(f["asr"]), "--manifest", str(f["manifest"]), "-q"]) == 2
    assert "[u1]" in capsys.readouterr().err


def test_sakura_judge_export(tmp_path, capsys):
    items = [Item(id=f"sakura_animal_dog{i}_{hop}", dataset="sakura", subset="animal", hop=hop,
                  audio=f"Animal/audio/dog{i}.wav", question="What animal is it?", choices=["Dog", "Cat"], answer=0,
                  meta={"track": "Animal", "audio_file": f"dog{i}.wav"})
             for i in range(2) for hop in ("single", "multi")]
    outputs = ["<think>It barks.</think> (a) Dog", "The animal is a cat.", "A dog.", "I cannot tell."]
    rows = [{"id": item.id, "model": "qwen2-audio", "condition": "mask-p20-scattered-silence", "mode": "reasoning",
             "run": 0, "raw_output": out, "reasoning": "x", "pred": None, "correct": None, "error": None}
            for item, out in zip(items, outputs)]
    results = tmp_path / "sakura.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = write_manifest(tmp_path / "sakura-manifest.jsonl", items)
    out = tmp_path / "judge"
    assert main(["accuracy", str(results), "--manifest", str(manifest), "--official", "sakura", "-q"]) == 2  # --export
    assert main(["accuracy", str(results), "--manifest", str(manifest), "--official", "sakura", "--export", str(out),
                 "-q"]) == 0
    stem = "qwen2-audio_mask-p20-scattered-silence_reasoning_run0"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"Animal_multi_{stem}.json", f"Animal_multi_{stem}.json.meta.json",
                            f"Animal_single_{stem}.json", f"Animal_single_{stem}.json.meta.json"])
    single = json.loads((out / f"Animal_single_{stem}.json").read_text())
    assert single == {
        "attribute": "Animal", "type": "single", "model": "qwen2-audio", "condition": "mask-p20-scattered-silence",
        "mode": "reasoning", "run": 0,
        "results": {
            "dog0.wav": {"id": "sakura_animal_dog0_single", "instruction": "What animal is it? (a) Dog (b) Cat",
                         "response": "(a) Dog", "label": "(a) Dog"},
            "dog1.wav": {"id": "sakura_animal_dog1_single", "instruction": "What animal is it? (a) Dog (b) Cat",
                         "response": "A dog.", "label": "(a) Dog"}}}
    multi = json.loads((out / f"Animal_multi_{stem}.json").read_text())
    assert [r["response"] for r in multi["results"].values()] == ["The animal is a cat.", "I cannot tell."]
    assert json.loads((out / f"Animal_single_{stem}.json.meta.json").read_text())["params"]["export"] == "sakura"


def test_plots_curves_from_cli(tmp_path, capsys):
    items = [Item(id=f"it{i}", dataset="demo", audio=f"{i}.wav", question="Which animal?", choices=CHOICES, answer=0)
             for i in range(10)]
    manifest = write_manifest(tmp_path / "manifest.jsonl", items)
    paths = [_write(tmp_path / f"{c}.jsonl", preds, c) for c, preds in
             (("clean", CLEAN), ("mask-p40-scattered-silence", NOISE), ("noise-snr0-white", NOISE))]
    plots = tmp_path / "plots"
    # grouped by mode only: the curves still get one line per model and dataset
    assert main(["accuracy"] + [str(p) for p in paths] + ["--manifest", str(manifest), "--by", "mode",
                                                          "--plots", str(plots), "-q"]) == 0
    expected = {f"{stem}.{ext}{meta}" for stem in ("accuracy", "accuracy_vs_mask", "accuracy_vs_snr")
                for ext in ("png", "pdf") for meta in ("", ".meta.json")}
    assert {p.name for p in plots.iterdir()} == expected


# ---------------------------------------------------------------- results of different models are never pooled silently

def _model_file(path: Path, model: str, preds: List[Optional[int]], condition: str = "clean",
                prompt: str = "reasoning-v1") -> Path:
    rows = [{**_row(i, p, condition), "model": model, "prompt": prompt} for i, p in enumerate(preds)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_of_two_models_are_grouped_by_model_by_default(tmp_path, capsys):
    """Defect: two models' files printed one pooled row (192 items at 44.27%)."""
    a = _model_file(tmp_path / "a.jsonl", "sim", CLEAN)
    b = _model_file(tmp_path / "b.jsonl", "tiny", NOISE)
    table = _json_table(capsys, [str(a), str(b)])
    assert [(g["model"], g["condition"], g["items"], g["correct"]) for g in table] == [
        ("sim", "clean", 10, 6), ("tiny", "clean", 10, 4)]
    # an explicit --by that pools them is said so
    assert main(["accuracy", str(a), str(b), "--by", "condition"]) == 0
    assert "pools rows of several model" in capsys.readouterr().err


def test_a_baseline_of_another_model_is_refused_unless_allowed(tmp_path, capsys):
    """Defect: a baseline from another model gave a meaningless -88.54 point delta without a word."""
    rows = _model_file(tmp_path / "noise.jsonl", "sim", NOISE, condition="noise")
    other = _model_file(tmp_path / "clean.jsonl", "tiny", CLEAN)
    assert main(["accuracy", str(rows), "--baseline", str(other), "-q"]) == 2
    err = capsys.readouterr().err
    assert "model: rows sim; baseline tiny" in err and "--allow-mismatch" in err
    out = tmp_path / "t.md"
    assert main(["accuracy", str(rows), "--baseline", str(other), "--allow-mismatch", "--out", str(out), "-q"]) == 0
    text = out.read_text()
    assert text.startswith("> baseline mismatch (--allow-mismatch): model: rows sim; baseline tiny")
    assert json.loads(out.with_name("t.md.meta.json").read_text())["params"]["notes"]
    # the same model under another prompt is another result too; another mode is a comparison
    seed = _model_file(tmp_path / "seed.jsonl", "sim", CLEAN, prompt="seed-reasoning")
    assert main(["accuracy", str(rows), "--baseline", str(seed), "-q"]) == 2
    assert "prompt: rows reasoning-v1; baseline seed-reasoning" in capsys.readouterr().err
    direct = tmp_path / "direct.jsonl"
    direct.write_text("".join(json.dumps({**_row(i, p, "clean"), "model": "sim", "mode": "direct",
                                          "prompt": "direct-v1"}) + "\n" for i, p in enumerate(CLEAN)))
    (row,) = _json_table(capsys, [str(rows), "--baseline", str(direct)])
    assert row["paired"] == 10


def test_items_and_rows_are_counted_apart_when_a_group_pools_rows(files, capsys):
    (group,) = _json_table(capsys, [str(files["clean"]), str(files["noise"]), "--by", "mode"])
    assert (group["items"], group["rows"]) == (10, 20)  # 10 items, each under two conditions


def test_the_runs_dataset_name_wins_over_the_items(tmp_path):
    from toolkit.rows import ResultRow
    from toolkit.score import scored_from_row

    item = Item(id="a", dataset="sakura", audio="a.wav", question="Which?", choices=CHOICES, answer=0)
    row = ResultRow.from_dict({"id": "a", "run": 0, "model": "m", "condition": "clean", "mode": "direct",
                               "prompt": "direct-v1", "raw_output": "(A)", "pred": 0, "pred_source": "letter",
                               "correct": True, "error": None, "dataset": "sakura-mini"})
    assert scored_from_row(row, item).keys["dataset"] == "sakura-mini"
    assert scored_from_row(row.replace(dataset=None), item).keys["dataset"] == "sakura"


def test_groups_sort_the_numbers_in_their_names_as_numbers(tmp_path, capsys):
    conditions = ["mask-p100", "mask-p20", "noise-snr10", "noise-snr-10", "noise-snr0", "clean"]
    files = [str(_write(tmp_path / f"{c}.jsonl", CLEAN, c)) for c in conditions]
    table = _json_table(capsys, [*files, "--by", "condition"])
    assert [g["condition"] for g in table] == ["clean", "mask-p20", "mask-p100", "noise-snr-10", "noise-snr0",
                                               "noise-snr10"]
