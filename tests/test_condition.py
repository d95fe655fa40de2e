"""bin/condition: intervention variants, the shared runner with injected reasoning or hints,
resume by variant, error rows, earlier-format baselines, and a tiny real model's prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.cli.condition import main as condition_main
from toolkit.cli.infer import main as infer_main
from toolkit.data.demo import prepare_demo
from toolkit.errors import InputError
from toolkit.infer import InferConfig, WorkUnit
from toolkit.interventions import Baseline, parse_intervention
from toolkit.interventions.options import wrong_option
from toolkit.interventions.protocol import parse_protocol
from toolkit.interventions.runner import ConditionRunner, load_baselines
from toolkit.manifest import Item, read_manifest, write_manifest
from toolkit.models.base import GenerationSettings, LoadOptions
from toolkit.models.registry import load_backend
from toolkit.prompts import get_prompt, render_continuation

ANIMALS = ["cat", "dog", "owl", "cow"]
ITEM = Item(id="x1", dataset="d", audio="a.wav", question="Which animal?", choices=ANIMALS, answer=1)
REASONING = "I hear barking, e.g. twice. It is loud and low. So it is a dog."


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A 60-item demo manifest and a simulated reasoning-mode baseline of it."""
    root = tmp_path_factory.mktemp("condition")
    manifest = write_manifest(root / "manifest.jsonl", prepare_demo(root, items_per_task=20, seed=5))
    baseline = root / "baseline.jsonl"
    assert infer_main(["--manifest", str(manifest), "--model", "simulated", "--model-path", "accuracy=0.8",
                       "--mode", "reasoning", "--out", str(baseline), "-q"]) == 0
    return {"manifest": manifest, "baseline": baseline, "root": root}


def _condition(study: dict, out: Path, intervention: str, *extra: str, params: str = "follow=0.7,accuracy=0.8") -> int:
    return condition_main(["--manifest", str(study["manifest"]), "--results", str(study["baseline"]),
                           "--model", "simulated", "--model-path", params, "--intervention", intervention,
                           "--out", str(out), "-q", *extra])


# --------------------------------------------------------------------------- variants

def test_unknown_interventions_and_parameters_are_explained():
    with pytest.raises(ValueError, match="Did you mean 'truncate'"):
        parse_intervention("truncat")
    with pytest.raises(ValueError, match=r"bad parameter 'size=2' \(valid: position=\.\.\., step=\.\.\.\)"):
        parse_intervention("filler-dots:size=2")
    with pytest.raises(ValueError, match="does not divide 1"):
        parse_intervention("filler-dots:step=0.3")
    assert parse_intervention("filler-lorem:position=end,step=0.5").spec == "filler-lorem:position=end,step=0.5"


def test_truncate_keeps_the_first_k_of_n_sentences():
    variants = parse_intervention("truncate").variants(Baseline(ITEM, 0, REASONING, 1), seed=0)
    assert [v.key for v in variants] == ["k=0", "k=1", "k=2", "k=3"]
    assert [v.reasoning for v in variants] == ["", "I hear barking, e.g. twice.",
                                              "I hear barking, e.g. twice. It is loud and low.", REASONING]
    assert [v.params["share_kept"] for v in variants] == [0.0, 0.333333, 0.666667, 1.0]


def test_filler_replaces_exactly_the_share_at_the_position_and_is_seeded():
    base = Baseline(ITEM, 0, REASONING, 1)
    words = REASONING.split()
    m = round(0.5 * len(words))  # 15 words: 8 replaced
    variants = {v.key: v for v in parse_intervention("filler-dots:step=0.5").variants(base, seed=0)}
    assert variants["start-0.5"].reasoning.split() == ["..."] * m + words[m:]
    assert variants["end-0.5"].reasoning.split() == words[:-m] + ["..."] * m
    assert variants["start-0.5"].params == {"position": "start", "share_replaced": 0.5, "words_replaced": m,
                                            "words": 15, "share_kept": 0.5}
    random = variants["random-0.5"].reasoning.split()
    assert random.count("...") == m and random != variants["start-0.5"].reasoning.split()
    again = {v.key: v for v in parse_intervention("filler-dots:step=0.5").variants(base, seed=0)}
    assert again["random-0.5"] == variants["random-0.5"]
    other_seed = {v.key: v for v in parse_intervention("filler-dots:step=0.5").variants(base, seed=1)}
    assert other_seed["random-0.5"].reasoning != variants["random-0.5"].reasoning
    lorem = {v.key: v for v in parse_intervention("filler-lorem:step=1,position=start").variants(base, seed=0)}
    assert "..." not in lorem["start-1"].reasoning and len(lorem["start-1"].reasoning.split()) == len(words)


def test_suggested_wrong_option_is_deterministic_and_never_the_answer():
    items = [Item(id=f"item-{i}", dataset="d", audio=None, question="?", choices=ANIMALS, answer=2) for i in range(200)]
    picks = [wrong_option(item, seed=0) for item in items]
    assert 2 not in picks and set(picks) == {0, 1, 3}
    assert picks == [wrong_option(item, seed=0) for item in items]
    # an equivalent answer (MMAU lists some answers twice) is not a wrong one
    twice = Item(id="t", dataset="d", audio=None, question="?", choices=["a", "b", "a", "c"], answer=0,
                 meta={"equivalent_answers": [0, 2]})
    assert {wrong_option(twice, seed=s) for s in range(50)} == {1, 3}
    hints = parse_intervention("suggested").variants(Baseline(ITEM, 0, "", 1), seed=0)
    assert [v.key for v in hints] == ["hint=wrong", "hint=correct"]
    assert hints[1].hint == "I think the answer is (B) dog, but I'm curious to hear what you think."


# --------------------------------------------------------------------------- runs with the simulated backend

def test_own_reasoning_changes_no_answer_and_rows_say_so(study, tmp_path):
    for placement in ("assistant", "user"):
        out = tmp_path / f"own-{placement}.jsonl"
        assert _condition(study, out, "own", "--placement", placement) == 0
        rows = _rows(out)
        assert len(rows) == 60 and {r["variant"] for r in rows} == {"own"}
        assert all(r["prediction_changed"] is False for r in rows if r["baseline_pred"] is not None)
        assert rows[0]["mode"] == "reasoning" and rows[0]["intervention"]["name"] == "own"
        assert rows[0]["intervention"]["placement"] == {"assistant": "prefill", "user": "user"}[placement]
        assert rows[0]["intervention"]["params"]["protocol"].startswith("toolkit:answer=")


def test_early_answering_recovers_the_simulated_dependence(study, tmp_path):
    out = tmp_path / "truncate.jsonl"
    assert _condition(study, out, "truncate") == 0
    rows = _rows(out)
    items = {it.id: it for it in read_manifest(study["manifest"])}
    empty = [r for r in rows if r["variant"] == "k=0"]
    assert len(empty) == 60
    expected_changed = sum(0.7 * (1 - 1 / len(items[r["id"]].choices)) for r in empty)
    changed = sum(r["prediction_changed"] for r in empty)
    assert abs(changed - expected_changed) < 3.5 * np.sqrt(expected_changed * (1 - expected_changed / 60))
    full = [r for r in rows if r["intervention"]["params"]["share_kept"] == 1.0]
    assert not any(r["prediction_changed"] for r in full)


def test_a_suggested_wrong_answer_is_followed_at_the_simulated_rate(study, tmp_path):
    out = tmp_path / "suggested.jsonl"
    assert _condition(study, out, "suggested", params="follow=0.6,accuracy=1.0") == 0
    wrong = [r for r in _rows(out) if r["variant"] == "hint=wrong"]
    followed = sum(r["pred"] == r["intervention"]["params"]["hint_index"] for r in wrong) / len(wrong)
    assert abs(followed - 0.6) < 3.5 * np.sqrt(0.24 / len(wrong))


def test_shuffled_options_are_mapped_back(study, tmp_path):
    out = tmp_path / "shuffle.jsonl"
    assert _condition(study, out, "shuffle:count=2", params="accuracy=1.0") == 0
    rows = _rows(out)
    items = {it.id: it for it in read_manifest(study["manifest"])}
    factorial = {2: 2, 3: 6, 4: 24}
    assert len(rows) == sum(min(2, factorial[len(it.choices)] - 1) for it in items.values())  # 2 options: 1 order
    for r in rows:
        perm = r["intervention"]["params"]["permutation"]
        assert perm != sorted(perm) and perm[r["shown_pred"]] == r["pred"]
        assert r["pred"] == items[r["id"]].answer and r["correct"] is True


def test_resume_writes_only_missing_variants_and_refuses_other_settings(study, tmp_path, capsys):
    out = tmp_path / "dots.jsonl"
    assert _condition(study, out, "filler-dots:step=0.5,position=start") == 0
    rows = _rows(out)
    assert len(rows) == 60 * 3
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:100]) + '{"id": "torn', encoding="utf-8")
    assert _condition(study, out, "filler-dots:step=0.5,position=start") == 0
    again = _rows(out)
    key = lambda r: (r["id"], r["run"], r["variant"])  # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, rows))
    assert [r["pred"] for r in sorted(again, key=key)] == [r["pred"] for r in sorted(rows, key=key)]
    assert _condition(study, out, "filler-dots:step=0.25,position=start") == 2
    assert "written with other settings (intervention differ)" in capsys.readouterr().err


def test_items_without_baseline_or_reasoning_become_error_rows(study, tmp_path):
    rows = _rows(study["baseline"])
    rows[0]["reasoning"] = ""
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]), encoding="utf-8")
    out = tmp_path / "own.jsonl"
    assert condition_main(["--manifest", str(study["manifest"]), "--results", str(partial), "--model", "simulated",
                           "--intervention", "own", "--out", str(out), "-q"]) == 1
    errors = {r["id"]: r["error"] for r in _rows(out) if r["error"]}
    assert errors == {rows[0]["id"]: "the baseline row has no reasoning to intervene on",
                      rows[-1]["id"]: "no baseline row for this item and run"}


def test_baseline_rows_must_match_the_manifest(study, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "nope", "model": "m", "condition": "clean", "mode": "reasoning", "run": 0,
                               "raw_output": "(A)", "pred": 0, "reasoning": "x"}) + "\n")
    with pytest.raises(InputError, match=r"bad\.jsonl:1 \[nope\]: baseline row for id 'nope' matches no manifest"):
        load_baselines(bad, read_manifest(study["manifest"]))


def test_earlier_scripts_baselines_work_as_they_are(tmp_path):
    items = [Item(id=f"sakura_animal_{i}_single", dataset="sakura", audio=f"{i}.wav", question="Which animal?",
                  choices=ANIMALS, answer=1) for i in range(3)]
    seed = tmp_path / "baseline_animal_REAS.jsonl"
    seed.write_text("".join(json.dumps({
        "id": it.id, "true_answer": "(b) dog", "true_letter": "B", "predicted_letters": ["B", None],
        "reasoning": [REASONING, ""], "raw_model_outputs": [REASONING + " Answer: (B)", "hmm"], "accuracy": 0.5})
        + "\n" for it in items), encoding="utf-8")
    baselines = load_baselines(seed, items)
    assert sorted(baselines) == [(it.id, run) for it in items for run in (0, 1)]
    assert baselines[(items[0].id, 0)].pred == 1 and baselines[(items[0].id, 0)].reasoning == REASONING


def test_the_condition_comes_from_the_baseline_rows_and_another_one_is_refused(study, tmp_path, capsys):
    """Defect: mask-p40 reasoning rows given without --condition gave rows labelled clean whose
    baseline_pred came from the masked run."""
    masked = tmp_path / "mask-p40.jsonl"
    assert infer_main(["--manifest", str(study["manifest"]), "--model", "simulated", "--model-path", "accuracy=0.8",
                       "--mode", "reasoning", "--condition", "mask-p40", "--out", str(masked), "-q"]) == 0
    out = tmp_path / "own.jsonl"
    argv = ["--manifest", str(study["manifest"]), "--results", str(masked), "--model", "simulated",
            "--intervention", "own", "--out", str(out), "-q"]
    assert condition_main(argv) == 0
    assert {r["condition"] for r in _rows(out)} == {"mask-p40-scattered-silence"}
    clean = tmp_path / "own-clean.jsonl"
    assert condition_main(argv[:-3] + ["--out", str(clean), "--condition", "clean", "-q"]) == 2
    err = capsys.readouterr().err
    assert "condition 'mask-p40-scattered-silence', not --condition 'clean'" in err and not clean.exists()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(study["baseline"].read_text() + masked.read_text().replace('"id": "', '"id": "x'))
    assert condition_main(argv[:-3] + ["--results", str(mixed), "--out", str(tmp_path / "m.jsonl"), "-q"]) == 2


# --------------------------------------------------------------------------- a tiny real model

def test_placement_decides_where_the_reasoning_goes_in_the_real_chat_text(tiny_folders, tmp_path):
    backend = load_backend("qwen2-audio", str(tiny_folders["qwen2-audio"]), LoadOptions(device="cpu", dtype="fp32"))
    prompt = get_prompt("seed-conditioned")
    config = InferConfig(model="qwen2-audio", mode="reasoning", prompt=prompt,
                         settings=GenerationSettings(max_new_tokens=4))
    variant = parse_intervention("own").variants(Baseline(ITEM, 0, REASONING, 1), 0)[0]
    audio = np.zeros(16000, dtype=np.float32)
    texts = {}
    for placement in ("user", "prefill"):
        protocol = parse_protocol(f"toolkit:answer={placement},conditioned_template=seed-conditioned")
        runner = ConditionRunner(backend, config, tmp_path, parse_intervention("own"),
                                 protocol.for_family("qwen2-audio"), {})
        request = runner.make_request(WorkUnit(ITEM, 0, variant=variant), audio, {})
        texts[placement] = backend.chat_text(request)
    continuation = render_continuation(prompt, REASONING)
    assert texts["prefill"].endswith(continuation.lstrip())
    assert continuation in texts["user"] and not texts["user"].endswith(continuation)
    assert texts["user"].index(REASONING) < texts["user"].rindex("assistant")


def test_a_tiny_real_model_answers_every_variant(tiny_folders, tmp_path, write_wav):
    items = [Item(id=f"t{i}", dataset="d", audio=f"t{i}.wav", question="Which animal?", choices=ANIMALS, answer=i % 4)
             for i in range(3)]
    for it in items:
        write_wav(tmp_path / it.audio, seconds=0.5)
    manifest = write_manifest(tmp_path / "m.jsonl", items)
    baseline = tmp_path / "base.jsonl"
    baseline.write_text("".join(json.dumps({"id": it.id, "model": "qwen2-audio", "condition": "clean",
                                            "mode": "reasoning", "run": 0, "raw_output": REASONING + " Answer: (B)",
                                            "reasoning": REASONING, "pred": 1}) + "\n" for it in items))
    out = tmp_path / "truncate.jsonl"
    code = condition_main(["--manifest", str(manifest), "--results", str(baseline), "--model", "qwen2-audio",
                           "--model-path", str(tiny_folders["qwen2-audio"]), "--device", "cpu", "--dtype", "fp32",
                           "--intervention", "truncate", "--max-new-tokens", "3", "--out", str(out), "-q"])
    assert code == 0
    rows = _rows(out)
    assert sorted((r["id"], r["variant"]) for r in rows) == sorted((it.id, f"k={k}") for it in items for k in range(4))
    assert all(r["error"] is None and r["raw_output"] is not None for r in rows)
