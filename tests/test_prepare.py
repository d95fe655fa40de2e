"""prepare stage on small generated fixtures: every source format, bad input, audio checks."""

from __future__ import annotations

import csv
import json
import shutil
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.cli.prepare import main
from toolkit.data._common import parse_options
from toolkit.data.sakura import prepare_sakura
from toolkit.data.seed_legacy import prepare_seed
from toolkit.errors import InputError
from toolkit.manifest import read_manifest
from toolkit.sidecar import sidecar_path

REPO = Path(__file__).resolve().parent.parent
HEADER = ["file", "attribute_label", "single_instruction", "single_answer", "multi_instruction", "multi_answer"]

SAKURA_ROWS = {
    "Animal": [
        ["dog1.wav", "dog", "Which animal is it? (a) dog (b) cat (c) cow (d) hen", "(a) dog",
         "What feature does it have? (a) Feathers (b) Scales (c) Claws (d) Horns", "(c) Claws"],
        ["cat2.wav", "cat", "Is the sound (a)typical of a pet? Pick one. (a) pig (b) cat (c) dog (d) cow", "(b) cat",
         "How does it reproduce? (a) Eggs (b) Spores (c) Budding (d) Live birth", "(d) Live birth"],
    ],
    "Emotion": [
        ["e1.wav", "angry", "What emotion? (a) sad (b) angry (c) fear (d) happy", " (b) angry",
         "Which response fits? (a) Calm them   down. (b) Laugh (c) Leave (d) Shout", "(a) calm them down."],
    ],
    "Gender": [
        ["g1.wav", "female", "What is the speaker's gender? (a) Female (b) Male", "(a) Female",
         "Which address fits? (a) Sir (b) Madam", "(b) Madam"],
    ],
    "Language": [
        ["l1.wav", "German", "Which language? (a) German (b) English (c) French (d) Korean", "(a) German",
         "Which code? (a) en (b) de (c) fr (d) ko", "(b) de"],
    ],
}
LANGUAGE_GENDER = {"data/Language/audio/l1.wav": {"gender": "female"}}


def write_sakura(root: Path, write_wav, rows: dict | None = None, audio: bool = True) -> Path:
    """A tiny SAKURA layout under ``root``; returns ``root``."""
    for track, track_rows in (rows or SAKURA_ROWS).items():
        folder = root / track
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows(track_rows)
        if audio:
            for row in track_rows:
                write_wav(folder / "audio" / row[0], seconds=0.25)
    (root / "Language" / "metadata.json").write_text(json.dumps(LANGUAGE_GENDER), encoding="utf-8")
    return root


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seed_line(item_id: str, track: str, file_name: str, question: str, choices: list[str], letter: str,
              answer: str, with_list: bool = True) -> dict:
    d = {"id": item_id, "question": question,
         "choices": " ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices)),
         "audio_path": f"{{DATA_ROOT}}/sakura/data/{track}/audio/{file_name}", "answer": answer, "true_letter": letter}
    if with_list:
        d["choices_list"] = choices
    return d


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# --- option parsing -------------------------------------------------------------------------

def test_parse_options_uses_last_run_of_markers_starting_at_a():
    question, options = parse_options("Is it (a)typical? (a) yes (b) no", "f", 1, "k")
    assert question == "Is it (a)typical?"
    assert options == ["yes", "no"]


def test_parse_options_accepts_upper_case_markers():
    assert parse_options("(A) x (B) y (C) z", "f", 1, "k") == ("", ["x", "y", "z"])


def test_parse_options_needs_two_markers():
    with pytest.raises(InputError, match=r"f:3 \[single_instruction\]: no option list"):
        parse_options("Pick (a) only", "f", 3, "single_instruction")


# --- SAKURA ---------------------------------------------------------------------------------

def test_sakura_end_to_end(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "sakura", write_wav)
    out = tmp_path / "out" / "sakura.jsonl"
    code, stdout, _ = run(["sakura", "--src", str(src), "--out", str(out)], capsys)
    assert code == 0
    items = read_manifest(out)
    assert [i.id for i in items[:4]] == ["sakura_animal_dog1_single", "sakura_animal_dog1_multi",
                                         "sakura_animal_cat2_single", "sakura_animal_cat2_multi"]
    assert len(items) == 10 and [i.subset for i in items[-2:]] == ["language", "language"]
    cat = items[2]
    assert cat.question == "Is the sound (a)typical of a pet? Pick one." and cat.answer == 1
    emotion = items[4]
    assert emotion.answer == 1 and emotion.audio == "Emotion/audio/e1.wav"
    assert items[5].answer == 0  # answer text differs only in case and spaces
    gender = items[6]
    assert gender.choices == ["Female", "Male"]
    assert items[8].meta["gender"] == "female"  # taken from metadata.json, the CSV has no column
    assert items[0].meta == {"attribute_label": "dog", "audio_file": "dog1.wav", "track": "Animal",
                             "duration": 0.25, "sample_rate": 16000, "channels": 1}
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["params"]["counts"]["by_subset"]["animal"] == 4
    assert sidecar["params"]["audio_check"]["readable"] == 5
    assert "wrote 10 items" in stdout and "5/5 file(s) readable" in stdout


def test_sakura_tracks_option_and_repo_root(tmp_path, write_wav, capsys):
    write_sakura(tmp_path / "repo" / "data", write_wav)
    out = tmp_path / "g.jsonl"
    code, _, _ = run(["sakura", "--src", str(tmp_path / "repo"), "--tracks", "gender", "--out", str(out)], capsys)
    assert code == 0
    items = read_manifest(out)
    assert [i.hop for i in items] == ["single", "multi"]
    assert items[0].audio == "data/Gender/audio/g1.wav"


def test_sakura_reads_metadata_json_without_csv(tmp_path, write_wav):
    src = write_sakura(tmp_path, write_wav, {"Gender": SAKURA_ROWS["Gender"], "Language": SAKURA_ROWS["Language"]})
    (src / "Gender" / "metadata.csv").unlink()
    row = dict(zip(HEADER[1:], SAKURA_ROWS["Gender"][0][1:]))
    (src / "Gender" / "metadata.json").write_text(json.dumps({"data/Gender/audio/g1.wav": row}))
    items = prepare_sakura(src, tracks=["Gender"])
    assert [i.id for i in items] == ["sakura_gender_g1_single", "sakura_gender_g1_multi"]
    assert items[1].answer == 1


def test_sakura_answer_not_matching_option_names_file_line_field(tmp_path, write_wav, capsys):
    cat_row = SAKURA_ROWS["Animal"][1][:3] + ["(b) dog"] + SAKURA_ROWS["Animal"][1][4:]
    src = write_sakura(tmp_path / "s", write_wav, {**SAKURA_ROWS, "Animal": [SAKURA_ROWS["Animal"][0], cat_row]})
    out = tmp_path / "o.jsonl"
    code, _, err = run(["sakura", "--src", str(src), "--out", str(out)], capsys)
    assert code == 2
    assert f"{src / 'Animal' / 'metadata.csv'}:3 [single_answer]: answer '(b) dog' does not match option 'cat'" in err
    assert not out.exists()


@pytest.mark.parametrize("instruction, expected", [
    ("Pick one (a) dog", "no option list"),
    ("Pick one " + " ".join(f"({chr(97 + i)}) o{i}" for i in range(11)), "is too long"),
])
def test_sakura_option_count_out_of_range(tmp_path, write_wav, capsys, instruction, expected):
    row = ["dog1.wav", "dog", instruction, "(a) dog" if "o0" not in instruction else "(a) o0",
           *SAKURA_ROWS["Animal"][0][4:]]
    src = write_sakura(tmp_path / "s", write_wav, {**SAKURA_ROWS, "Animal": [row]})
    code, _, err = run(["sakura", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and expected in err and str(src) in err
    assert "metadata.csv:2" in err or "[sakura_animal_dog1_single]" in err


def test_sakura_unknown_track_lists_valid_ones(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav)
    code, _, err = run(["sakura", "--src", str(src), "--tracks", "Animal,Birds", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "unknown track(s) ['Birds']; valid: ['Animal', 'Emotion', 'Gender', 'Language']" in err


def test_sakura_missing_track_folder_names_path(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav, {"Animal": SAKURA_ROWS["Animal"], "Language": []})
    code, _, err = run(["sakura", "--src", str(src), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and str(src / "Emotion") in err


def _seed_manifest(path: Path) -> Path:
    """Seed lines for Animal + Gender, numbered in another order than the metadata."""
    return write_jsonl(path, [
        seed_line("sakura_animal_0_single", "Animal", "cat2.wav", "Is the sound (a)typical of a pet? Pick one.",
                  ["pig", "cat", "dog", "cow"], "B", "(b) cat"),
        seed_line("sakura_animal_0_multi", "Animal", "cat2.wav", "How does it reproduce?",
                  ["Eggs", "Spores", "Budding", "Live birth"], "D", "(d) Live birth"),
        seed_line("sakura_animal_1_single", "Animal", "dog1.wav", "Which animal is it?",
                  ["dog", "cat", "cow", "hen"], "A", "(a) dog"),
        seed_line("sakura_animal_1_multi", "Animal", "dog1.wav", "What feature does it have?",
                  ["Feathers", "Scales", "Claws", "Horns"], "C", "(c) Claws", with_list=False),
    ])


def test_sakura_seed_ids_map_by_file_and_hop(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav)
    seed = _seed_manifest(tmp_path / "animal_manifest.jsonl")
    out = tmp_path / "o.jsonl"
    code, _, _ = run(["sakura", "--src", str(src), "--tracks", "Animal", "--ids", "seed",
                      "--seed-manifest", str(seed), "--out", str(out)], capsys)
    assert code == 0
    items = read_manifest(out)
    assert [i.id for i in items] == ["sakura_animal_1_single", "sakura_animal_1_multi",
                                     "sakura_animal_0_single", "sakura_animal_0_multi"]
    assert items[0].meta["native_id"] == "sakura_animal_dog1_single"


def test_sakura_seed_ids_missing_item_fails(tmp_path, write_wav):
    src = write_sakura(tmp_path / "s", write_wav)
    seed = _seed_manifest(tmp_path / "animal_manifest.jsonl")
    with pytest.raises(InputError, match=r"metadata.csv:2 \[sakura_emotion_e1_single\]: no seed manifest line"):
        prepare_sakura(src, tracks=["Animal", "Emotion"], ids="seed", seed_manifests=[seed])


def test_sakura_seed_disagreement_names_both(tmp_path, write_wav):
    src = write_sakura(tmp_path / "s", write_wav)
    seed = write_jsonl(tmp_path / "gender_manifest.jsonl", [
        seed_line("sakura_gender_0_single", "Gender", "g1.wav", "What is the speaker's gender?",
                  ["Female", "Male"], "B", "(b) Male"),
        seed_line("sakura_gender_0_multi", "Gender", "g1.wav", "Which address fits?",
                  ["Sir", "Madam"], "B", "(b) Madam"),
    ])
    with pytest.raises(InputError) as exc:
        prepare_sakura(src, tracks=["Gender"], ids="seed", seed_manifests=[seed])
    message = str(exc.value)
    assert "Gender/metadata.csv:2 [sakura_gender_g1_single]" in message
    assert f"{seed}:1" in message and "answer A vs true_letter B" in message


def test_sakura_seed_ids_need_a_manifest(tmp_path, write_wav):
    with pytest.raises(InputError, match="needs at least one seed manifest"):
        prepare_sakura(write_sakura(tmp_path, write_wav), ids="seed")


# --- MMAU -----------------------------------------------------------------------------------

def mmau_record(item_id: str, choices: list[str], answer: str, **extra) -> dict:
    record = {"id": item_id, "audio_id": f"./test-mini-audios/{item_id}.wav", "question": "What is heard?",
              "choices": choices, "answer": answer, "dataset": "AudioSet", "task": "sound", "split": "test-mini",
              "category": "Reasoning", "sub-category": "Acoustic Source Inference", "difficulty": "easy"}
    record.update(extra)
    return record


def test_mmau_end_to_end(tmp_path, capsys):
    src = tmp_path / "mmau" / "mmau-test-mini.json"
    src.parent.mkdir()
    src.write_text(json.dumps([
        mmau_record("a1", ["Man", "Woman"], "Woman"),
        mmau_record("a2", ["thirteen", "twenty", "thirteen", "five"], "thirteen", task="music", category=["Music"]),
        mmau_record("a3", ["Dog barking ", "Cat"], "dog  barking", task="speech"),
    ]))
    out = tmp_path / "mmau.jsonl"
    code, stdout, _ = run(["mmau", "--src", str(src), "--out", str(out)], capsys)
    assert code == 0 and "none of 3 file(s) found (metadata only)" in stdout
    a1, a2, a3 = read_manifest(out)
    assert (a1.answer, a1.audio, a1.subset, a1.dataset) == (1, "test-mini-audios/a1.wav", "sound", "mmau")
    assert a1.meta == {"category": "Reasoning", "sub_category": "Acoustic Source Inference", "difficulty": "easy",
                       "task": "sound", "source_dataset": "AudioSet", "split": "test-mini", "modality": "sound"}
    assert a2.answer == 0 and a2.meta["equivalent_answers"] == [0, 2] and a2.meta["category"] == "Music"
    assert a3.answer == 0 and a3.subset == "speech"


def test_mmau_answer_not_among_choices(tmp_path, capsys):
    src = tmp_path / "m.json"
    src.write_text(json.dumps([mmau_record("a1", ["Man", "Woman"], "Woman"), mmau_record("a2", ["x", "y"], "z")]))
    out = tmp_path / "o.jsonl"
    code, _, err = run(["mmau", "--src", str(src), "--out", str(out)], capsys)
    assert code == 2 and f"{src} [a2 (item 1)]: answer 'z' is not among the choices" in err
    assert not out.exists()


def test_mmau_duplicate_id(tmp_path, capsys):
    src = tmp_path / "m.json"
    src.write_text(json.dumps([mmau_record("a1", ["x", "y"], "x"), mmau_record("a1", ["x", "y"], "y")]))
    code, _, err = run(["mmau", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and f"{src} [a1]: duplicate id 'a1'" in err


def test_mmau_malformed_json_names_line(tmp_path, capsys):
    src = tmp_path / "m.json"
    src.write_text('[\n  {"id": "a1",\n  "oops",\n  "x": 1}\n]')
    code, _, err = run(["mmau", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and f"{src}:3: malformed JSON: Expecting ':' delimiter" in err


def test_mmau_choice_count_out_of_range(tmp_path, capsys):
    src = tmp_path / "m.json"
    src.write_text(json.dumps([mmau_record("a1", ["only"], "only")]))
    code, _, err = run(["mmau", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and f"{src} [a1]: choices" in err


# --- MMAR -----------------------------------------------------------------------------------

def mmar_record(item_id: str, answer: str = "Open Grassland") -> dict:
    return {"id": item_id, "audio_path": f"./audio/{item_id}.wav", "question": "Where is this from\n",
            "choices": ["Mountain Canyon", "Open Grassland"], "answer": answer, "modality": "music",
            "category": "Cultural Layer", "sub-category": "Professional Knowledge", "language": None,
            "source": "youtube", "url": "https://example.org/v", "timestamp": "00:01:32,00:02:02",
            "thinking": "Throat singing.", "cue": ["Throat Singing"], "rubric": [{"name": "cue", "choices": [0, 1]}]}


def test_mmar_jsonl_and_json_give_the_same_items(tmp_path, capsys):
    records = [mmar_record("m1"), mmar_record("m2", "Mountain Canyon")]
    jsonl = write_jsonl(tmp_path / "MMAR-meta.jsonl", records[:1] + [""] + records[1:])
    legacy = tmp_path / "MMAR-meta.json"
    legacy.write_text(json.dumps(records, indent=2))
    outputs = []
    for src in (jsonl, legacy):
        out = tmp_path / f"{src.suffix[1:]}.jsonl"
        assert run(["mmar", "--src", str(src), "--out", str(out)], capsys)[0] == 0
        outputs.append([i.to_dict() for i in read_manifest(out)])
    assert outputs[0] == outputs[1]
    first = outputs[0][0]
    assert (first["answer"], first["audio"], first["subset"], first["question"]) == \
        (1, "audio/m1.wav", "music", "Where is this from\n")
    assert first["meta"]["sub_category"] == "Professional Knowledge" and first["meta"]["rubric"][0]["name"] == "cue"
    assert first["meta"]["language"] is None


def test_mmar_malformed_line_names_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "MMAR-meta.jsonl", [mmar_record("m1"), '{"id": "m2", "question": ', mmar_record("m3")])
    out = tmp_path / "o.jsonl"
    code, _, err = run(["mmar", "--src", str(src), "--out", str(out)], capsys)
    assert code == 2 and f"{src}:2: malformed JSON" in err and not out.exists()


def test_mmar_missing_field_names_line_and_key(tmp_path, capsys):
    record = mmar_record("m2")
    del record["choices"]
    src = write_jsonl(tmp_path / "MMAR-meta.jsonl", [mmar_record("m1"), record])
    code, _, err = run(["mmar", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and f"{src}:2 [m2]: missing field 'choices'" in err


# --- earlier scripts' manifests -------------------------------------------------------------

def test_seed_manifest_end_to_end(tmp_path, capsys):
    src = _seed_manifest(tmp_path / "animal_manifest.jsonl")
    out = tmp_path / "o.jsonl"
    code, _, _ = run(["seed", "--src", str(src), "--out", str(out)], capsys)
    assert code == 0
    items = read_manifest(out)
    assert [i.id for i in items][:2] == ["sakura_animal_0_single", "sakura_animal_0_multi"]
    last = items[-1]
    assert (last.dataset, last.subset, last.hop, last.answer) == ("sakura", "animal", "multi", 2)
    assert last.choices == ["Feathers", "Scales", "Claws", "Horns"]  # parsed from the choices string
    assert last.audio == "sakura/data/Animal/audio/dog1.wav"
    assert last.meta == {"seed_id": "sakura_animal_1_multi", "audio_file": "dog1.wav"}


def test_seed_data_root_replaces_placeholder_and_name_from_file(tmp_path):
    src = write_jsonl(tmp_path / "mmau_manifest.jsonl", [
        {"id": "u1", "question": "Q", "choices": "(A) Man (B) Woman", "audio_path": "{DATA_ROOT}/audio/u1.wav",
         "answer": "(B) Woman", "true_letter": "B"}])
    (item,) = prepare_seed(src, data_root="/data/mmau")
    assert (item.dataset, item.subset, item.hop, item.audio) == ("mmau", None, None, "/data/mmau/audio/u1.wav")
    (item,) = prepare_seed(src, dataset="other", subset="x")
    assert (item.dataset, item.subset, item.audio) == ("other", "x", "audio/u1.wav")


def test_seed_answer_letter_mismatch_policies(tmp_path, capsys):
    src = write_jsonl(tmp_path / "mmar_manifest.jsonl", [
        {"id": "mmar_0", "question": "Q", "choices": "(A) Not affected (B) Affected", "audio_path": "{DATA_ROOT}/a.wav",
         "answer": "(A) Affected", "true_letter": "A"}])
    code, _, err = run(["seed", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2
    assert f"{src}:1 [mmar_0]: answer '(A) Affected' disagrees with true_letter A ('Not affected')" in err
    (by_letter,) = prepare_seed(src, on_mismatch="letter")
    (by_text,) = prepare_seed(src, on_mismatch="text")
    assert (by_letter.answer, by_text.answer) == (0, 1)
    assert by_text.meta["answer_mismatch"] == {"answer": "(A) Affected", "true_letter": "A"}


def test_seed_bad_true_letter_names_line(tmp_path):
    src = write_jsonl(tmp_path / "x_manifest.jsonl", [
        {"id": "x0", "question": "Q", "choices": "(A) a (B) b", "audio_path": "a.wav", "answer": "(c) c",
         "true_letter": "C"}])
    with pytest.raises(InputError, match=r"x_manifest.jsonl:1 \[x0\]: true_letter 'C' is not one of \['A', 'B'\]"):
        prepare_seed(src)


# --- audio check ----------------------------------------------------------------------------

def test_missing_audio_with_some_present_fails_without_output(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav)
    (src / "Animal" / "audio" / "dog1.wav").unlink()
    out = tmp_path / "o.jsonl"
    out.write_text("old\n")
    code, _, err = run(["sakura", "--src", str(src), "--out", str(out)], capsys)
    assert code == 2
    assert f"{src / 'Animal' / 'audio' / 'dog1.wav'} [sakura_animal_dog1_single]: file not found" in err
    assert "2 audio problem(s)" in err
    assert out.read_text() == "old\n"
    code, stdout, _ = run(["sakura", "--src", str(src), "--out", str(out), "--allow-missing-audio"], capsys)
    assert code == 0 and "4/5 file(s) readable, 1 missing" in stdout
    assert "duration" not in read_manifest(out)[0].meta


def test_no_audio_at_all_is_metadata_only_in_auto_but_fails_in_yes(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav, audio=False)
    out = tmp_path / "o.jsonl"
    code, stdout, _ = run(["sakura", "--src", str(src), "--out", str(out)], capsys)
    assert code == 0 and "none of 5 file(s) found (metadata only)" in stdout
    assert json.loads(sidecar_path(out).read_text())["params"]["audio_check"]["metadata_only"] is True
    code, _, err = run(["sakura", "--src", str(src), "--out", str(tmp_path / "y.jsonl"), "--check-audio", "yes"],
                       capsys)
    assert code == 2 and "10 audio problem(s) (5 more not shown)" in err
    code, stdout, _ = run(["sakura", "--src", str(src), "--out", str(out), "--check-audio", "no"], capsys)
    assert code == 0 and "audio: not checked" in stdout


def test_empty_and_unreadable_audio_fail_even_when_missing_is_allowed(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav)
    write_wav(src / "Gender" / "audio" / "g1.wav", seconds=0.0)
    (src / "Emotion" / "audio" / "e1.wav").write_bytes(b"")
    code, _, err = run(["sakura", "--src", str(src), "--out", str(tmp_path / "o"), "--allow-missing-audio"], capsys)
    assert code == 2
    assert "[sakura_gender_g1_single]: no audio samples (a header-only file)" in err
    assert "[sakura_emotion_e1_single]: cannot read audio: empty file (0 bytes)" in err


def test_other_sample_rates_warn_and_are_recorded(tmp_path, write_wav, capsys):
    src = write_sakura(tmp_path / "s", write_wav)
    write_wav(src / "Gender" / "audio" / "g1.wav", seconds=0.5, sr=8000, channels=2)
    out = tmp_path / "o.jsonl"
    code, _, err = run(["sakura", "--src", str(src), "--out", str(out)], capsys)
    assert code == 0
    gender = [i for i in read_manifest(out) if i.subset == "gender"][0]
    assert (gender.meta["duration"], gender.meta["sample_rate"], gender.meta["channels"]) == (0.5, 8000, 2)
    assert "1 audio file(s) not at 16000 Hz (1 at 8000 Hz)" in err


# --- the script itself ----------------------------------------------------------------------

def test_bin_prepare_runs_as_a_script(tmp_path):
    src = write_jsonl(tmp_path / "MMAR-meta.jsonl", [mmar_record("m1")])
    out = tmp_path / "o.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "bin" / "prepare"), "mmar", "--src", str(src), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wrote 1 items" in done.stdout and len(read_manifest(out)) == 1
    bad = subprocess.run([sys.executable, str(REPO / "bin" / "prepare"), "mmar", "--src", str(tmp_path / "nope.jsonl"),
                          "--out", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("prepare: error:") and "nope.jsonl" in bad.stderr


def test_help_does_not_import_torch():
    code = ("import sys\nfrom toolkit.cli.prepare import main\ntry:\n    main(['sakura', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "--seed-manifest" in done.stdout


def test_sakura_source_errors_say_what_to_give(tmp_path, write_wav, capsys):
    (tmp_path / "small.jsonl").write_text("{}\n")
    code, _, err = run(["sakura", "--src", str(tmp_path / "small.jsonl"), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "small.jsonl: a file; give the SAKURA folder" in err
    src = write_sakura(tmp_path / "s", write_wav)
    shutil.rmtree(src / "Emotion")
    code, _, err = run(["sakura", "--src", str(src), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "(choose the tracks present with --tracks, e.g. --tracks Animal,Gender,Language)" in err
