"""rewrite-paraphrase / rewrite-mistake: a tiny real text LM as the outside rewriter, the
append-only rewrite cache (resume, torn lines, keyed by the reasoning's sha), the variant
protocol, the missing-cache error and bin/condition end to end with the simulated backend.

Tiny random models write garbage: the tests check structure (which sentences are kept,
where a rewrite goes, what is cached), never the content of a rewrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.cli.condition import main as condition_main
from toolkit.cli.infer import main as infer_main
from toolkit.data.demo import prepare_demo
from toolkit.interventions import Baseline, parse_intervention
from toolkit.interventions.protocol import PRESETS
from toolkit.interventions.rewrite import (PROMPTS, MissingRewrites, Rewriter, cache_variant, clean_rewrite,
                                           produce_rewrites, read_rewrites, text_digest)
from toolkit.interventions.runner import load_baselines
from toolkit.interventions.text import split_sentences
from toolkit.manifest import Item, read_manifest, write_manifest
from toolkit.models import tiny
from toolkit.models.base import GenerationSettings
from toolkit.sidecar import sidecar_path

ANIMALS = ["cat", "dog", "owl", "cow"]
REASONING = "I hear barking, e.g. twice. It is loud and low. So it is a dog."
SENTENCES = ["I hear barking, e.g. twice.", "It is loud and low.", "So it is a dog."]
ITEMS = [Item(id=f"x{i}", dataset="d", audio=f"x{i}.wav", question="Which animal?", choices=ANIMALS, answer=1)
         for i in range(2)]
TOOLKIT = PRESETS["toolkit"]
GREEDY = GenerationSettings(max_new_tokens=12)


def _rows(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory) -> Path:
    """A tiny random Qwen2ForCausalLM folder with a chat template, built once."""
    return tiny.build_text_lm(tmp_path_factory.mktemp("text-lm") / "lm")


@pytest.fixture(scope="module")
def rewriter(text_lm) -> Rewriter:
    return Rewriter.load(str(text_lm), device="cpu", dtype="fp32", max_new_tokens=12)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A 6-item demo manifest and a simulated reasoning-mode baseline of it (2 sentences of
    reasoning; 3 for the first three items)."""
    root = tmp_path_factory.mktemp("rewrite")
    manifest = write_manifest(root / "manifest.jsonl", prepare_demo(root, items_per_task=2, seed=3))
    baseline = root / "baseline.jsonl"
    assert infer_main(["--manifest", str(manifest), "--model", "simulated", "--model-path", "accuracy=0.8",
                       "--mode", "reasoning", "--out", str(baseline), "-q"]) == 0
    rows = _rows(baseline)
    for row in rows[:3]:
        row["reasoning"] = REASONING
    baseline.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"manifest": manifest, "baseline": baseline}


def _baselines(reasoning: str = REASONING) -> list:
    return [Baseline(it, 0, reasoning, 1) for it in ITEMS]


def _write_cache(path: Path, kind: str, texts: list, item: Item = ITEMS[0], reasoning: str = REASONING,
                 prompt: str = "", first: int = 0) -> None:
    """Hand-written cache lines: rewrite ``texts[i]`` for step ``first + i``."""
    sha = text_digest(reasoning)
    prompt = prompt or f"{kind}-v1"
    with open(path, "a", encoding="utf-8") as fh:
        for step, text in enumerate(texts, start=first):
            fh.write(json.dumps({"id": item.id, "run": 0, "variant": cache_variant(prompt, step, sha), "kind": kind,
                                 "step": step, "source_sha256": sha, "text": text, "rewriter": "hand",
                                 "prompt": prompt}) + "\n")


def _produce(rewriter: Rewriter, cache: Path, kind: str = "mistake", baselines=None, protocol=TOOLKIT,
             batch_size: int = 8) -> int:
    intervention = parse_intervention(f"rewrite-{kind}:cache={cache}")
    return produce_rewrites(intervention, _baselines() if baselines is None else baselines, protocol, rewriter,
                            batch_size)


# --------------------------------------------------------------------------- the rewriter

def test_the_tiny_text_lm_is_a_real_causal_lm_with_a_chat_template(text_lm, rewriter):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert type(AutoModelForCausalLM.from_pretrained(text_lm)).__name__ == "Qwen2ForCausalLM"
    assert AutoTokenizer.from_pretrained(text_lm).chat_template == tiny.TEXT_CHAT_TEMPLATE
    text = rewriter.prompt_text("Paraphrase it.")
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("Paraphrase it.<|im_end|>\n<|im_start|>assistant\n")


def test_batched_rewrites_equal_one_by_one_rewrites(rewriter):
    instructions = ["Paraphrase: it barks.", "Rewrite this much longer sentence about the loud and low barking."]
    assert rewriter.generate(instructions, GREEDY) == [rewriter.generate([t], GREEDY)[0] for t in instructions]


def test_without_a_chat_template_the_plain_prompt_gets_a_cue(text_lm):
    plain = Rewriter.load(str(text_lm), device="cpu", max_new_tokens=4)
    plain.tokenizer.chat_template = None
    assert plain.prompt_text("Paraphrase it.") == "Paraphrase it.\n\nRewritten sentence:"
    assert len(plain.generate(["Paraphrase it."], GREEDY)) == 1


@pytest.mark.parametrize("raw, cleaned", [
    ("It is a cat.", "It is a cat."),
    ('  "It is a cat."  ', "It is a cat."),
    ("Here is the paraphrased sentence:\n\n\u201cIt is a cat.\u201d\n\nI only changed the words.", "It is a cat."),
    ("Paraphrased sentence: 'It is a cat.'", "It is a cat."),
    ("<think>The user wants a mistake.</think>\n- **It is   a cat.**", "It is a cat."),
    ("Answer: (B)", "Answer: (B)"),
    ('""', ""),
    ("<think>never closed", ""),
])
def test_clean_rewrite_strips_preambles_labels_and_quotes(raw, cleaned):
    assert clean_rewrite(raw) == cleaned


# --------------------------------------------------------------------------- the cache

def test_produce_appends_one_line_per_rewrite_and_resumes(rewriter, tmp_path):
    cache = tmp_path / "rw.jsonl"
    assert _produce(rewriter, cache, batch_size=4) == 6
    lines = _rows(cache)
    assert sorted((r["id"], r["step"]) for r in lines) == [(it.id, s) for it in ITEMS for s in range(3)]
    for r in lines:
        assert r["kind"] == "mistake" and r["source_sha256"] == text_digest(REASONING)
        assert r["sentence"] == SENTENCES[r["step"]] and r["text"] == clean_rewrite(r["raw"])
        assert r["rewriter"] == str(rewriter.path) and r["prompt"] == "mistake-v1"
        assert r["prompt_sha256"] == PROMPTS["mistake-v1"].sha256
        assert r["generation"] == GenerationSettings(max_new_tokens=12).to_dict()  # greedy, the rewriter's budget
    meta = json.loads(sidecar_path(cache).read_text())
    assert meta["stage"] == "rewrite"
    assert meta["params"]["prompts"]["mistake-v1"]["text"] == PROMPTS["mistake-v1"].template
    before = cache.read_bytes()
    assert _produce(rewriter, cache, batch_size=4) == 0
    assert cache.read_bytes() == before
    # an interrupted run: the last line torn; it is cut and only that rewrite is produced again
    cache.write_bytes(before[:before.rstrip(b"\n").rfind(b"\n") + 1] + b'{"id": "x1", "ru')
    assert _produce(rewriter, cache, batch_size=4) == 1
    assert sorted(map(json.dumps, _rows(cache))) == sorted(map(json.dumps, lines))


def test_rewrites_are_keyed_by_the_reasoning_so_a_changed_reasoning_needs_new_ones(rewriter, tmp_path):
    cache = tmp_path / "rw.jsonl"
    mistake = parse_intervention(f"rewrite-mistake:cache={cache}")
    assert mistake.missing(_baselines()) == (6, 6)
    _produce(rewriter, cache)
    assert mistake.missing(_baselines()) == (0, 6)
    changed = [Baseline(ITEMS[0], 0, REASONING + " It barks again.", 1), _baselines()[1]]
    assert mistake.missing(changed) == (4, 7)
    assert _produce(rewriter, cache, baselines=changed) == 4
    keys = read_rewrites(cache)
    assert len(keys) == 10 and ("x0", 0, "mistake-v1", 3, text_digest(REASONING + " It barks again.")) in keys
    assert ("x0", 0, "mistake-v1", 0, text_digest(REASONING)) in keys  # the old ones stay, for the old reasoning


def test_one_cache_holds_one_rewriter_and_decoding_per_prompt(rewriter, tmp_path):
    cache = tmp_path / "rw.jsonl"
    _write_cache(cache, "paraphrase", ["P0."])
    with pytest.raises(ValueError, match="holds paraphrase-v1 rewrites by hand"):
        _produce(rewriter, cache, "paraphrase")
    assert _produce(rewriter, cache, baselines=_baselines()[:1]) == 3  # another prompt is free
    sampled = PRESETS["toolkit"].__class__(**{**TOOLKIT.to_dict(), "rewrites": "sampled"})
    with pytest.raises(ValueError, match="holds mistake-v1 rewrites by .* with decoding"):
        _produce(rewriter, cache, protocol=sampled)


# --------------------------------------------------------------------------- the variants

def test_a_mistake_replaces_step_i_and_cuts_the_reasoning_after_it(tmp_path):
    cache = tmp_path / "rw.jsonl"
    _write_cache(cache, "mistake", ["M0.", "M1.", "M2."])
    variants = parse_intervention(f"rewrite-mistake:cache={cache}").variants(_baselines()[0], seed=0)
    assert [v.key for v in variants] == ["step=full", "step=0", "step=1", "step=2"]
    assert [v.reasoning for v in variants] == [REASONING, "M0.", f"{SENTENCES[0]} M1.",
                                              f"{SENTENCES[0]} {SENTENCES[1]} M2."]
    assert variants[0].params == {"total": 3, "share_kept": 1.0, "unchanged": True}  # the full-reasoning reference
    assert variants[2].params == {"step": 1, "total": 3, "share_kept": 0.333333, "rewrite_sha256": text_digest("M1."),
                                  "rewriter": "hand", "prompt": "mistake-v1"}
    assert all(v.continue_from is None for v in variants)  # the toolkit cuts after the mistake
    only = parse_intervention(f"rewrite-mistake:cache={cache},steps=2").variants(_baselines()[0], seed=0)
    assert [v.key for v in only] == ["step=full", "step=2"]


def test_paraphrases_replace_the_first_k_sentences_and_keep_the_rest(tmp_path):
    cache = tmp_path / "rw.jsonl"
    _write_cache(cache, "paraphrase", ["P0.", "P1.", "P2."])
    variants = parse_intervention(f"rewrite-paraphrase:cache={cache}").variants(_baselines()[0], seed=0)
    assert [v.key for v in variants] == ["k=0", "k=1", "k=2", "k=3"]
    assert [v.reasoning for v in variants] == [REASONING, f"P0. {SENTENCES[1]} {SENTENCES[2]}",
                                              f"P0. P1. {SENTENCES[2]}", "P0. P1. P2."]
    assert [v.params["share_kept"] for v in variants] == [1.0, 0.666667, 0.333333, 0.0]  # 1 - k/N left unchanged
    assert variants[2].params["rewrite_sha256"] == text_digest("P0. P1.")


def test_steps_limit_the_rewrites_needed_and_empty_rewrites_give_no_variant(tmp_path):
    cache = tmp_path / "rw.jsonl"
    _write_cache(cache, "paraphrase", ["P0.", ""])
    two = parse_intervention(f"rewrite-paraphrase:cache={cache},steps=1+2")
    assert two.missing(_baselines()[:1]) == (0, 2)  # k <= 2 needs sentences 0 and 1 only
    assert [v.key for v in two.variants(_baselines()[0], seed=0)] == ["k=0", "k=1"]  # k=2 needs the empty rewrite
    with pytest.raises(ValueError, match="steps must be 'all' or integers joined by"):
        parse_intervention(f"rewrite-paraphrase:cache={cache},steps=first")


def test_a_missing_cache_is_a_clear_error(study, tmp_path, capsys):
    with pytest.raises(ValueError, match="needs cache=PATH"):
        parse_intervention("rewrite-mistake")
    cache = tmp_path / "none.jsonl"
    with pytest.raises(MissingRewrites, match=r"3 of 3 rewrites are missing from the cache; .*--rewrites-only"):
        parse_intervention(f"rewrite-mistake:cache={cache}").variants(_baselines()[0], seed=0)
    code = condition_main(["--manifest", str(study["manifest"]), "--results", str(study["baseline"]), "--model",
                           "simulated", "--intervention", f"rewrite-mistake:cache={cache}", "--out",
                           str(tmp_path / "out.jsonl"), "-q"])
    items = read_manifest(study["manifest"])
    needed = sum(len(split_sentences(b.reasoning)) for b in load_baselines(study["baseline"], items).values())
    assert code == 2
    err = capsys.readouterr().err
    assert f"{cache}: rewrite-mistake: {needed} of {needed} rewrites are missing" in err and "--rewriter" in err
    assert not (tmp_path / "out.jsonl").exists() and not cache.exists()


# --------------------------------------------------------------------------- bin/condition

def _condition(study: dict, *extra: str) -> int:
    return condition_main(["--manifest", str(study["manifest"]), "--results", str(study["baseline"]), "-q", *extra])


def _expected_keys(study: dict, cache: Path, kind: str) -> list:
    """(id, variant) of every variant the cache allows (positions whose rewrites exist and are non-empty)."""
    entries = read_rewrites(cache)
    out = []
    for (item_id, run), b in load_baselines(study["baseline"], read_manifest(study["manifest"])).items():
        n, sha = len(split_sentences(b.reasoning)), text_digest(b.reasoning)
        ok = [bool(entries.get((item_id, run, f"{kind}-v1", s, sha), {}).get("text")) for s in range(n)]
        out += [(item_id, f"step={i}") for i in range(n) if ok[i]] + [(item_id, "step=full")] if kind == "mistake" \
            else [(item_id, f"k={k}") for k in range(0, n + 1) if all(ok[:k])]
    return sorted(out)


def test_bin_condition_produces_the_rewrites_first_then_answers_every_variant(study, text_lm, tmp_path):
    cache, out = tmp_path / "rw.jsonl", tmp_path / "mistake.jsonl"
    spec = f"rewrite-mistake:cache={cache}"
    assert _condition(study, "--model", "simulated", "--model-path", "follow=0.7,accuracy=0.8", "--intervention", spec,
                      "--out", str(out), "--rewriter", str(text_lm), "--rewriter-device", "cpu",
                      "--rewriter-batch-size", "5") == 0
    rows = _rows(out)
    assert len(_rows(cache)) == 3 * 3 + 3 * 2
    assert sorted((r["id"], r["variant"]) for r in rows) == _expected_keys(study, cache, "mistake")
    assert rows and all(r["error"] is None and r["mode"] == "reasoning" and r["intervention"]["name"] ==
                        "rewrite-mistake" for r in rows)
    assert {r["intervention"]["params"].get("rewriter") for r in rows} == {str(text_lm), None}  # None: step=full
    lines = cache.read_bytes()
    out.unlink()
    assert _condition(study, "--model", "simulated", "--intervention", spec, "--out", str(out)) == 0  # cache reused
    assert cache.read_bytes() == lines and len(_rows(out)) == len(rows)


def test_rewrites_only_fills_the_cache_without_a_model_under_test(study, text_lm, tmp_path, capsys):
    cache = tmp_path / "rw.jsonl"
    spec = f"rewrite-paraphrase:cache={cache},steps=1"
    assert _condition(study, "--intervention", spec, "--rewriter", str(text_lm), "--rewriter-device", "cpu",
                      "--rewrites-only") == 0
    written = len(_rows(cache))
    assert f"{cache}: {written} rewrites written" in capsys.readouterr().out
    assert written == 6 and {r["step"] for r in _rows(cache)} == {0}  # k=1 needs the first sentence only
    assert _condition(study, "--intervention", spec, "--rewriter", str(text_lm), "--rewrites-only") == 0
    assert f"{cache}: 0 rewrites written" in capsys.readouterr().out and len(_rows(cache)) == written
    out = tmp_path / "paraphrase.jsonl"
    assert _condition(study, "--model", "simulated", "--intervention", spec, "--out", str(out)) == 0
    assert sorted((r["id"], r["variant"]) for r in _rows(out)) == _expected_keys(study, cache, "paraphrase")
    assert {r["variant"] for r in _rows(out)} <= {"k=0", "k=1"}
    assert _condition(study, "--intervention", "truncate", "--rewrites-only") == 2
    assert "apply to rewrite-paraphrase and rewrite-mistake only" in capsys.readouterr().err
