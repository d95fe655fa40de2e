"""Manifest schema, reader errors (file + line), atomic writes and sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.errors import InputError
from toolkit.manifest import Item, format_choices, read_manifest, resolve_audio, validate_item, write_manifest
from toolkit.sidecar import sidecar_path, write_sidecar


def _item(i: int, **kw) -> Item:
    base = dict(id=f"it-{i}", dataset="demo", audio=f"a/{i}.wav", question="Which?", choices=["x", "y", "z"], answer=i % 3)
    base.update(kw)
    return Item(**base)


def _write_lines(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_round_trip_keeps_every_field(tmp_path):
    items = [_item(0, subset="s", hop="multi", meta={"k": [1, 2]}), _item(1, task="classify")]
    out = write_manifest(tmp_path / "m.jsonl", items)
    assert read_manifest(out) == items
    first = json.loads(out.read_text().splitlines()[0])
    assert list(first) == ["id", "dataset", "subset", "hop", "audio", "question", "choices", "answer", "task", "reference", "meta"]


def test_letters_are_derived_from_the_index():
    assert _item(0, answer=2).answer_letter == "C"
    assert format_choices(["cat", "dog"]) == "(A) cat (B) dog"


@pytest.mark.parametrize(
    "bad_line, expected",
    [
        ("{not json", "malformed JSON"),
        (json.dumps({**_item(9).to_dict(), "answer": 3}), "answer: index 3 is out of range for 3 choices"),
        (json.dumps({**_item(9).to_dict(), "choices": ["only"]}), "choices"),
        (json.dumps({**_item(9).to_dict(), "choices": [str(i) for i in range(11)]}), "choices"),
        (json.dumps({**_item(9).to_dict(), "hop": "triple"}), "hop"),
        (json.dumps({**_item(9).to_dict(), "id": "a/b"}), "id"),
        (json.dumps({**_item(9).to_dict(), "colour": "red"}), "colour"),
        (json.dumps(_item(0).to_dict()), "duplicate id 'it-0' (first on line 1)"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad_line, expected):
    path = _write_lines(tmp_path / "m.jsonl", [_item(0).to_dict(), _item(1).to_dict(), bad_line])
    with pytest.raises(InputError) as info:
        read_manifest(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:3")
    assert expected in msg


def test_asr_items_need_a_reference_not_choices():
    asr = Item(id="u1", dataset="librispeech", audio="u1.flac", question="", task="asr", reference="HELLO")
    assert validate_item(asr.to_dict()) is None
    missing = Item(id="u1", dataset="librispeech", audio="u1.flac", question="", task="asr")
    assert "reference" in validate_item(missing.to_dict())


def test_write_is_atomic_and_refuses_invalid_items(tmp_path):
    dest = tmp_path / "m.jsonl"
    write_manifest(dest, [_item(0)])
    before = dest.read_bytes()
    with pytest.raises(InputError, match="duplicate id"):
        write_manifest(dest, [_item(1), _item(1)])
    assert dest.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_resolve_audio(tmp_path):
    assert resolve_audio(_item(0), tmp_path) == tmp_path / "a/0.wav"
    assert resolve_audio(_item(0, audio="/abs/x.wav"), tmp_path) == Path("/abs/x.wav")
    assert resolve_audio(_item(0, audio=None), tmp_path) is None


def test_sidecar_records_provenance(tmp_path):
    out = tmp_path / "m.jsonl"
    out.write_text("")
    side = write_sidecar(out, "prepare", argv=["bin/prepare", "x"], seed=3)
    assert side == sidecar_path(out) == tmp_path / "m.jsonl.meta.json"
    meta = json.loads(side.read_text())
    assert meta["stage"] == "prepare" and meta["params"] == {"seed": 3} and meta["argv"] == ["bin/prepare", "x"]
    assert meta["packages"]["numpy"]
    assert meta["toolkit_version"]


def test_atomic_outputs_get_the_usual_file_mode(tmp_path):
    from toolkit.atomic import UMASK

    path = write_manifest(tmp_path / "m.jsonl", [_item(0)])
    assert path.stat().st_mode & 0o777 == 0o666 & ~UMASK
