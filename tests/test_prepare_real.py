"""prepare on the real development data in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.cli.prepare import main
from toolkit.data.seed_legacy import read_seed_manifest
from toolkit.manifest import read_manifest

pytestmark = pytest.mark.shared_data

TRACKS = ("animal", "emotion", "gender", "language")


def seed_manifest(shared_data: Path, name: str) -> Path:
    return shared_data / "seed-results" / "manifests" / f"{name}_manifest.jsonl"


def prepare(argv: list[str], out: Path) -> list:
    assert main([*argv, "--out", str(out), "-q"]) == 0
    return read_manifest(out)


def test_sakura_mini_gives_96_items_with_audio(shared_data, tmp_path):
    items = prepare(["sakura", "--src", str(shared_data / "sakura-mini")], tmp_path / "s.jsonl")
    assert len(items) == 96
    assert {i.subset for i in items} == set(TRACKS)
    # the notes say 1-21 s, but one Emotion/Gender clip is 0.896 s
    clip_lengths = [i.meta["duration"] for i in items]
    assert {i.meta["sample_rate"] for i in items} == {16000}
    assert 0.5 < min(clip_lengths) and max(clip_lengths) <= 21.0
    assert {len(i.choices) for i in items if i.subset == "gender"} == {2}
    assert {len(i.choices) for i in items if i.subset != "gender"} == {4}
    assert all("gender" in i.meta for i in items if i.subset == "language")


def test_sakura_mini_seed_ids_agree_with_the_seed_manifests(shared_data, tmp_path):
    manifests = [seed_manifest(shared_data, t) for t in TRACKS]
    argv = ["sakura", "--src", str(shared_data / "sakura-mini"), "--ids", "seed"]
    for path in manifests:
        argv += ["--seed-manifest", str(path)]
    items = prepare(argv, tmp_path / "s.jsonl")
    seeds = {e.id: e for path in manifests for e in read_seed_manifest(path)}
    assert len(items) == 96 and all(i.id in seeds for i in items)
    for item in items:
        seed = seeds[item.id]
        assert item.question == seed.question  # identical, not just after strip()
        assert item.choices == seed.choices
        assert item.answer == seed.letter_index
        assert item.meta["audio_file"] == seed.audio_file


def test_mmau_answers_match_seed_true_letters(shared_data, tmp_path):
    items = prepare(["mmau", "--src", str(shared_data / "mmau" / "mmau-test-mini.json")], tmp_path / "m.jsonl")
    seeds = {e.id: e for e in read_seed_manifest(seed_manifest(shared_data, "mmau"))}
    assert len(items) == 1000 and {i.id for i in items} == set(seeds)
    assert all(i.answer == seeds[i.id].letter_index for i in items)
    assert sum("equivalent_answers" in i.meta for i in items) == 16
    assert all(isinstance(i.meta["category"], str) for i in items)


def test_mmar_gives_1000_items(shared_data, tmp_path):
    items = prepare(["mmar", "--src", str(shared_data / "mmar" / "MMAR-meta.jsonl")], tmp_path / "m.jsonl")
    assert len(items) == 1000
    assert len({i.subset for i in items}) == 7


@pytest.mark.parametrize("name, count", [*((t, 1000) for t in TRACKS), ("mmau", 1000)])
def test_seed_manifests_read_as_they_are(shared_data, tmp_path, name, count):
    items = prepare(["seed", "--src", str(seed_manifest(shared_data, name))], tmp_path / "s.jsonl")
    assert len(items) == count


def test_seed_mmar_manifest_has_15_answer_letter_mismatches(shared_data, tmp_path, capsys):
    """997 lines (ids mmar_43, mmar_894, mmar_983 absent); 15 true_letters disagree with the answer text."""
    src = seed_manifest(shared_data, "mmar")
    assert main(["seed", "--src", str(src), "--out", str(tmp_path / "bad.jsonl")]) == 2
    assert f"{src}:13 [mmar_12]: answer '(A) Affected by sour' disagrees" in capsys.readouterr().err
    items = prepare(["seed", "--src", str(src), "--on-mismatch", "text"], tmp_path / "s.jsonl")
    assert len(items) == 997
    assert sum("answer_mismatch" in i.meta for i in items) == 15
    official = {Path(i.audio).name: i for i in prepare(["mmar", "--src", str(shared_data / "mmar" / "MMAR-meta.jsonl")],
                                                       tmp_path / "m.jsonl")}
    for item in items:
        gold = official[item.meta["audio_file"]]
        assert item.choices[item.answer].strip() == gold.choices[gold.answer].strip()
