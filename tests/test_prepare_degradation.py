"""prepare for the degradation study: LibriSpeech (ASR), MMLU as speech (+ text twins), timbre range.

Every fixture is generated in ``tmp_path``: flac/wav clips, ``trans.txt`` files, CSV and
parquet question files, label CSVs and class folders.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli.prepare import main
from toolkit.data.librispeech import prepare_librispeech
from toolkit.data.mmlu_speech import AUDIO_CHOICES, SPEECH_INDEX, prepare_mmlu, spoken_text
from toolkit.data.timbre import CLASSES, prepare_timbre
from toolkit.errors import InputError
from toolkit.manifest import read_manifest
from toolkit.sidecar import sidecar_path

HAVE_ESPEAK = shutil.which("espeak-ng") is not None


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- LibriSpeech --------------------------------------------------------------------------
TRANSCRIPTS = {
    ("84", "121123"): {"0000": "GO DO YOU HEAR", "0001": "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED"},
    ("251", "136532"): {"0002": "THIS WAS AT THE MARCH ELECTION"},
}


def write_flac(path: Path, seconds: float = 0.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(str(path), 0.3 * np.sin(2 * np.pi * 300 * t), 16000, format="FLAC")
    return path


def write_librispeech(root: Path, split: str = "dev-clean", transcripts: dict | None = None) -> Path:
    """A tiny LibriSpeech tree under ``root/<split>``; returns ``root``."""
    for (speaker, chapter), utts in (transcripts or TRANSCRIPTS).items():
        folder = root / split / speaker / chapter
        lines = []
        for utt, text in utts.items():
            write_flac(folder / f"{speaker}-{chapter}-{utt}.flac")
            lines.append(f"{speaker}-{chapter}-{utt} {text}\n")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines), encoding="utf-8")
    return root


def test_librispeech_end_to_end(tmp_path, capsys):
    root = write_librispeech(tmp_path / "LibriSpeech")
    out = tmp_path / "ls.jsonl"
    code, stdout, _ = run(["librispeech", "--src", str(root), "--split", "dev-clean", "--out", str(out)], capsys)
    assert code == 0, stdout
    items = read_manifest(out)
    # speakers sorted numerically (84 before 251), utterances in order
    assert [i.id for i in items] == ["84-121123-0000", "84-121123-0001", "251-136532-0002"]
    assert items[1].reference == "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED"
    assert items[0].audio == "dev-clean/84/121123/84-121123-0000.flac"
    assert {i.task for i in items} == {"asr"} and all(i.choices is None and i.answer is None for i in items)
    assert items[2].meta["speaker"] == "251" and items[2].meta["chapter"] == "136532"
    assert items[0].meta["sample_rate"] == 16000 and items[0].meta["duration"] == 0.2
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["params"]["source"] == "librispeech" and sidecar["params"]["audio_check"]["readable"] == 3
    assert "audio: 3/3 file(s) readable" in stdout


def test_librispeech_src_may_be_the_split_folder(tmp_path):
    root = write_librispeech(tmp_path / "LibriSpeech", split="test-clean")
    items = prepare_librispeech(root / "test-clean", "test-clean")
    assert items[0].audio == "test-clean/84/121123/84-121123-0000.flac"
    assert {i.subset for i in items} == {"test-clean"}


def test_librispeech_malformed_line_names_file_and_line(tmp_path, capsys):
    root = write_librispeech(tmp_path / "LibriSpeech")
    trans = root / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001\n", encoding="utf-8")
    code, _, err = run(["librispeech", "--src", str(root), "--split", "dev-clean",
                        "--out", str(tmp_path / "ls.jsonl")], capsys)
    assert code == 2
    assert f"{trans}:2:" in err
    assert not (tmp_path / "ls.jsonl").exists()


def test_librispeech_utterance_of_another_chapter_and_repeats(tmp_path):
    root = write_librispeech(tmp_path / "LibriSpeech")
    trans = root / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text("84-121123-0000 A\n84-999-0001 B\n", encoding="utf-8")
    with pytest.raises(InputError, match="not of speaker 84, chapter 121123") as exc:
        prepare_librispeech(root, "dev-clean")
    assert (exc.value.path, exc.value.line) == (str(trans), 2)
    trans.write_text("84-121123-0000 A\n\n84-121123-0000 B\n", encoding="utf-8")
    with pytest.raises(InputError, match="repeated \\(first on line 1\\)") as exc:
        prepare_librispeech(root, "dev-clean")
    assert exc.value.line == 3


def test_librispeech_flac_without_transcript_and_missing_split(tmp_path):
    root = write_librispeech(tmp_path / "LibriSpeech")
    write_flac(root / "dev-clean" / "84" / "121123" / "84-121123-0007.flac")
    with pytest.raises(InputError, match="without a transcript line, e.g. 84-121123-0007.flac"):
        prepare_librispeech(root, "dev-clean")
    with pytest.raises(FileNotFoundError, match=r"test-other \(folders there: \['dev-clean'\]\)"):
        prepare_librispeech(root, "test-other")


# ---- MMLU as speech -------------------------------------------------------------------------
ANATOMY = [["Which bone is the longest?", "Femur", "Tibia", "Ulna", "Radius", "A"],
           ["How many chambers does the heart have?", "Two", "Three", "Four", "Five", "C"]]
ALGEBRA = [["Find the order of Z_4.", "1", "2", "3", "4", "D"]]


def write_rows(path: Path, rows: list, header: list | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_mmlu_release(root: Path) -> Path:
    """The original release: ``<split>/<subject>_<split>.csv``, no header, answer letters."""
    write_rows(root / "test" / "anatomy_test.csv", ANATOMY)
    write_rows(root / "test" / "abstract_algebra_test.csv", ALGEBRA)
    write_rows(root / "dev" / "anatomy_dev.csv", [["A dev question?", "a", "b", "c", "d", "B"]])
    return root


def test_mmlu_twins_ids_answers_with_a_user_tts_folder(tmp_path, capsys, write_wav):
    src = write_mmlu_release(tmp_path / "mmlu")
    speech = tmp_path / "my-tts"
    speech.mkdir()
    out = tmp_path / "mmlu.jsonl"
    # empty folder: a metadata-only manifest that lists what each recording must say
    code, stdout, _ = run(["mmlu", "--src", str(src), "--speak", str(speech), "--out", str(out)], capsys)
    assert code == 0 and "none of 3 file(s) found (metadata only)" in stdout
    items = {i.id: i for i in read_manifest(out)}
    assert sorted(items) == sorted(f"mmlu_{s}_{n}_{m}" for s, n in
                                   [("abstract_algebra", 0), ("anatomy", 0), ("anatomy", 1)] for m in ("text", "audio"))
    text, audio = items["mmlu_anatomy_1_text"], items["mmlu_anatomy_1_audio"]
    assert text.audio is None and text.question == "How many chambers does the heart have?"
    assert text.choices == ["Two", "Three", "Four", "Five"] and text.answer == 2
    assert (text.meta["twin"], text.meta["modality"]) == ("mmlu_anatomy_1_audio", "text")
    assert (audio.meta["twin"], audio.meta["modality"]) == ("mmlu_anatomy_1_text", "audio")
    assert audio.audio == "mmlu_anatomy_1.wav" and audio.answer == 2 and audio.choices == AUDIO_CHOICES
    assert "recording" in audio.question and "heart" not in audio.question
    assert audio.meta["options"] == text.choices and audio.meta["speech"] == "folder"
    assert audio.meta["spoken_text"] == ("Question: How many chambers does the heart have? Option A: Two. "
                                         "Option B: Three. Option C: Four. Option D: Five.")
    assert text.meta["source_file"] == "anatomy_test.csv" and text.meta["source_line"] == 2
    assert items["mmlu_abstract_algebra_0_text"].answer == 3
    # the user records the texts (here: tones; one as flac), then prepares again
    for item in items.values():
        if item.audio is not None and item.id != "mmlu_anatomy_0_audio":
            write_wav(speech / item.audio, seconds=0.5)
    write_flac(speech / "mmlu_anatomy_0.flac")
    code, stdout, _ = run(["mmlu", "--src", str(src), "--speak", str(speech), "--out", str(out),
                           "--check-audio", "yes"], capsys)
    assert code == 0 and "3/3 file(s) readable" in stdout
    again = {i.id: i for i in read_manifest(out)}
    assert again["mmlu_anatomy_0_audio"].audio == "mmlu_anatomy_0.flac"
    assert json.loads(sidecar_path(out).read_text())["params"]["data_root"] == str(speech)


def test_mmlu_split_subjects_and_per_subject(tmp_path):
    src = write_mmlu_release(tmp_path / "mmlu")
    speech = tmp_path / "speech"
    speech.mkdir()
    dev = prepare_mmlu(src, speech, split="dev")
    assert [i.id for i in dev] == ["mmlu_anatomy_0_text", "mmlu_anatomy_0_audio"]
    assert dev[0].question == "A dev question?"
    some = prepare_mmlu(src, speech, subjects=["anatomy"], per_subject=1)
    assert [i.id for i in some] == ["mmlu_anatomy_0_text", "mmlu_anatomy_0_audio"]
    valid = r"valid: \['abstract_algebra', 'anatomy'\]"
    with pytest.raises(InputError, match=r"unknown subject\(s\) \['biology'\]; " + valid):
        prepare_mmlu(src, speech, subjects=["biology"])


def test_mmlu_csv_with_header_choices_list_and_index_answers(tmp_path):
    rows = [["What is 2 + 2?", "elementary_mathematics", json.dumps(["3", "4", "5", "6"]), "1"],
            ["Largest planet?", "astronomy", str(["Mars", "Venus", "Jupiter", "Earth"]), "2"]]
    src = write_rows(tmp_path / "test.csv", rows, header=["question", "subject", "choices", "answer"])
    speech = tmp_path / "speech"
    speech.mkdir()
    items = prepare_mmlu(src, speech)
    by_id = {i.id: i for i in items}
    assert by_id["mmlu_elementary_mathematics_0_text"].choices == ["3", "4", "5", "6"]
    assert by_id["mmlu_astronomy_0_audio"].answer == 2
    assert by_id["mmlu_astronomy_0_audio"].meta["options"][2] == "Jupiter"


@pytest.mark.parametrize("row, message", [
    (["Q?", "a", "b", "c", "d", "E"], "answer should be 0-3 or A-D, got 'E'"),
    (["Q?", "a", "b", "c", "d"], "expected 6 fields"),
    (["Q?", "a", "", "c", "d", "A"], "expected 4 non-empty option texts"),
    (["  ", "a", "b", "c", "d", "A"], "missing or empty field 'question'"),
])
def test_mmlu_bad_rows_name_file_and_line(tmp_path, capsys, row, message):
    src = write_rows(tmp_path / "mmlu" / "test" / "anatomy_test.csv", [ANATOMY[0], row])
    speech = tmp_path / "speech"
    speech.mkdir()
    code, _, err = run(["mmlu", "--src", str(tmp_path / "mmlu"), "--speak", str(speech),
                        "--out", str(tmp_path / "m.jsonl")], capsys)
    assert code == 2
    assert f"{src}:2: {message}" in err


def test_mmlu_bad_choices_list_and_two_recordings(tmp_path):
    src = write_rows(tmp_path / "q.csv", [["Q?", "[1, 2", "0"]], header=["question", "choices", "answer"])
    speech = tmp_path / "speech"
    speech.mkdir()
    with pytest.raises(InputError, match="field 'choices' should be a list") as exc:
        prepare_mmlu(src, speech)
    assert exc.value.line == 2
    write_rows(src, [["Q?", "a", "b", "c", "d", "A"]])
    for ext in (".wav", ".flac"):
        write_flac(speech / f"mmlu_q_0{ext}")
    with pytest.raises(InputError, match=r"more than one recording for mmlu_q_0"):
        prepare_mmlu(src, speech)


def test_mmlu_hub_layout_skips_the_all_copy(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"question": ["Which bone is the longest?"], "subject": ["anatomy"],
                          "choices": [["Femur", "Tibia", "Ulna", "Radius"]], "answer": [0]})
    for folder in ("anatomy", "all"):
        (tmp_path / "mmlu" / folder).mkdir(parents=True)
        frame.to_parquet(tmp_path / "mmlu" / folder / "test-00000-of-00001.parquet")
    speech = tmp_path / "speech"
    speech.mkdir()
    items = prepare_mmlu(tmp_path / "mmlu", speech)
    assert [i.id for i in items] == ["mmlu_anatomy_0_text", "mmlu_anatomy_0_audio"]
    assert items[0].choices == ["Femur", "Tibia", "Ulna", "Radius"] and items[0].meta["source_row"] == 0


@pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed")
def test_mmlu_espeak_speech_is_16k_non_silent_and_reused(tmp_path, capsys):
    src = write_mmlu_release(tmp_path / "mmlu")
    out = tmp_path / "out" / "mmlu.jsonl"
    code, stdout, _ = run(["mmlu", "--src", str(src), "--speak", "espeak", "--subjects", "anatomy",
                           "--out", str(out)], capsys)
    assert code == 0, stdout
    speech = tmp_path / "out" / "mmlu-speech"
    items = read_manifest(out)
    audio_items = [i for i in items if i.meta["modality"] == "audio"]
    assert [i.audio for i in audio_items] == ["mmlu_anatomy_0.wav", "mmlu_anatomy_1.wav"]
    for item in audio_items:
        x, sr = sf.read(str(speech / item.audio))
        assert sr == 16000 and x.ndim == 1
        assert np.sqrt(np.mean(x ** 2)) > 0.01 and item.meta["duration"] > 1.0
        assert item.meta["speech"] == "espeak-ng" and item.meta["sample_rate"] == 16000
    index = [json.loads(line) for line in (speech / SPEECH_INDEX).read_text().splitlines()]
    assert [row["text"] for row in index] == [spoken_text(q[0], q[1:5]) for q in ANATOMY]
    # a rerun leaves the recordings alone; another rate re-synthesises them
    before = {p.name: p.stat().st_mtime_ns for p in speech.glob("*.wav")}
    assert prepare_mmlu(src, "espeak", speech_dir=speech, subjects=["anatomy"]) == items_without_audio_meta(items)
    assert {p.name: p.stat().st_mtime_ns for p in speech.glob("*.wav")} == before
    prepare_mmlu(src, "espeak", speech_dir=speech, subjects=["anatomy"], rate=220)
    assert {p.name: p.stat().st_mtime_ns for p in speech.glob("*.wav")} != before


def items_without_audio_meta(items: list) -> list:
    """Items as ``prepare_mmlu`` returns them, before the audio check adds duration etc."""
    for item in items:
        for key in ("duration", "sample_rate", "channels"):
            item.meta.pop(key, None)
    return items


def test_mmlu_espeak_needs_a_speech_folder(tmp_path):
    src = write_rows(tmp_path / "q.csv", [ANATOMY[0]])
    with pytest.raises(InputError, match="needs a speech folder"):
        prepare_mmlu(src, "espeak")


def test_mmlu_text_twins_run_text_only_with_the_simulated_backend(tmp_path, capsys, write_wav):
    from toolkit.cli.infer import main as infer_main

    src = write_mmlu_release(tmp_path / "mmlu")
    speech = tmp_path / "speech"
    for name in ("mmlu_anatomy_0", "mmlu_anatomy_1", "mmlu_abstract_algebra_0"):
        write_wav(speech / f"{name}.wav", seconds=0.5)
    out = tmp_path / "mmlu.jsonl"
    assert main(["mmlu", "--src", str(src), "--speak", str(speech), "--out", str(out)]) == 0
    results = tmp_path / "rows.jsonl"
    assert infer_main(["--manifest", str(out), "--data-root", str(speech), "--out", str(results),
                       "--model", "simulated", "--mode", "direct"]) == 0
    capsys.readouterr()
    rows = {r["id"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert len(rows) == 6
    assert all(r["error"] is None and r["pred"] is not None for r in rows.values())


# ---- timbre range ---------------------------------------------------------------------------
def test_timbre_csv_end_to_end(tmp_path, capsys, write_wav):
    root = tmp_path / "timbre"
    rows = [["clips/a1.wav", "2", "test"], ["./clips/a2.wav", "Narrow", "test"], ["clips/a3.wav", "moderate", "train"]]
    src = write_rows(root / "labels.csv", rows, header=["audio", "label", "split"])
    for name in ("a1", "a2", "a3"):
        write_wav(root / "clips" / f"{name}.wav", seconds=0.3, sr=44100)
    out = tmp_path / "timbre.jsonl"
    code, stdout, _ = run(["timbre", "--src", str(src), "--split", "test", "--out", str(out)], capsys)
    assert code == 0, stdout
    items = read_manifest(out)
    assert [i.id for i in items] == ["timbre_clips_a1", "timbre_clips_a2"]
    assert [i.answer for i in items] == [2, 0] and [i.meta["label"] for i in items] == ["wide", "narrow"]
    assert items[0].choices == list(CLASSES) and items[0].task == "classify" and items[0].subset == "test"
    assert items[1].audio == "clips/a2.wav" and items[0].meta["sample_rate"] == 44100
    assert len(prepare_timbre(src)) == 3


def test_timbre_class_folders(tmp_path, write_wav):
    root = tmp_path / "timbre"
    write_wav(root / "test" / "Wide" / "001.wav", seconds=0.1)
    write_wav(root / "test" / "narrow" / "002.wav", seconds=0.1)
    write_wav(root / "train" / "moderate" / "003.wav", seconds=0.1)
    items = prepare_timbre(root, split="test")
    assert [(i.id, i.answer, i.audio) for i in items] == [("timbre_test_Wide_001", 2, "test/Wide/001.wav"),
                                                          ("timbre_test_narrow_002", 0, "test/narrow/002.wav")]
    with pytest.raises(InputError, match=r"no class folder \['narrow', 'moderate', 'wide'\]"):
        prepare_timbre(root)


@pytest.mark.parametrize("rows, header, message, line", [
    ([["a.wav", "huge"]], ["audio", "label"], "label 'huge' is none of 0-2 or ['narrow', 'moderate', 'wide']", 2),
    ([["a.wav", "3"]], ["file", "label"], "label '3' is none of 0-2", 2),
    ([["a.wav", "1"]], ["audio", "class"],
     "header ['audio', 'class'] needs one of ['audio', 'file', 'path', 'filename'] and 'label'", 1),
    ([["a.wav", "1", "x"]], ["audio", "label"], "row has 3 fields, header has 2", 2),
])
def test_timbre_bad_csv_names_file_and_line(tmp_path, capsys, rows, header, message, line):
    src = write_rows(tmp_path / "labels.csv", rows, header=header)
    code, _, err = run(["timbre", "--src", str(src), "--out", str(tmp_path / "t.jsonl")], capsys)
    assert code == 2
    assert f"{src}:{line}: {message}" in err


def test_timbre_split_needs_a_split_column(tmp_path):
    src = write_rows(tmp_path / "labels.csv", [["a.wav", "1"]], header=["audio", "label"])
    with pytest.raises(InputError, match="split 'test' asked but the CSV has no 'split' column"):
        prepare_timbre(src, split="test")


def test_mmlu_unreadable_parquet_names_the_file(tmp_path):
    from toolkit.data.mmlu_speech import prepare_mmlu

    bad = tmp_path / "mmlu" / "anatomy" / "test-00000-of-00001.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"test-00000-of-00001\.parquet: not a readable parquet file"):
        prepare_mmlu(tmp_path / "mmlu", tmp_path / "mmlu")
