"""SAKURA in its official repository layout -> items (two per clip: single- and multi-hop).

Layout: ``<src>/{Animal,Emotion,Gender,Language}/`` with ``audio/*.wav`` and
``metadata.csv`` (columns ``file, attribute_label, single_instruction, single_answer,
multi_instruction, multi_answer``), or only ``metadata.json`` (keyed by
``data/<Track>/audio/<file>``). When both exist the CSV rows are used and fields the CSV
lacks are taken from the JSON (the Language CSV has no ``gender`` column; the JSON does).
``src`` may also be the repository root holding ``data/``.

Options live inside the instruction (``"... (a) Feathers (b) Scales"``) and answers are
``"(c) Claws"`` (often with a leading space); both are checked against each other.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from toolkit.data._common import check_lettered_answer, load_json, parse_options
from toolkit.data.seed_legacy import SeedEntry, read_seed_manifest
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, check_items, letter

log = logging.getLogger(__name__)

TRACKS = ("Animal", "Emotion", "Gender", "Language")
HOPS = ("single", "multi")
ID_SCHEMES = ("native", "seed")
META_FIELDS = ("attribute_label", "gender")
_SEED_ID = re.compile(r"^sakura_([a-z]+)_\d+_(single|multi)$")


@dataclass(frozen=True)
class _Row:
    """One clip's metadata with where it came from (``line`` is None for metadata.json)."""

    path: Path
    line: int | None
    ref: str
    fields: dict

    def where(self, field: str) -> tuple[int | None, str]:
        """(line, key) locating ``field`` for an error message."""
        return self.line, field if self.line is not None else f"{self.ref}.{field}"


def prepare_sakura(
    src: Pathlike,
    tracks: Sequence[str] | None = None,
    ids: str = "native",
    seed_manifests: Sequence[Pathlike] | None = None,
) -> list[Item]:
    """Read SAKURA metadata into items.

    Args:
        src: the folder holding the track folders, or the repository root with ``data/``.
        tracks: track names (any case); default all four.
        ids: ``"native"`` (``sakura_<track>_<file stem>_<hop>``) or ``"seed"`` (the earlier
            scripts' ids, matched on (track, audio file name, hop)).
        seed_manifests: earlier-scripts manifests, needed for ``ids="seed"``.

    Returns:
        Items ordered by track, then metadata row, single before multi; ``audio`` is
        relative to ``src``.

    Raises:
        InputError: unknown track or id scheme, malformed metadata (naming file, line and
            field), an item absent from the seed manifests or disagreeing with them.
        FileNotFoundError: a track folder or its metadata is missing.

    Example:
        >>> items = prepare_sakura("sakura/data", tracks=["Gender"])  # doctest: +SKIP
        >>> items[0].id, items[0].choices
        ('sakura_gender_en_test_0_common_voice_en_22335218_single', ['Female', 'Male'])
    """
    if ids not in ID_SCHEMES:
        raise InputError(f"unknown id scheme {ids!r}; valid: {list(ID_SCHEMES)}")
    if ids == "seed" and not seed_manifests:
        raise InputError("ids='seed' needs at least one seed manifest")
    src = Path(src)
    base = _data_folder(src)
    pairs = [pair for track in _select_tracks(tracks) for pair in _track_items(src, base, track)]
    if ids == "seed":
        _apply_seed_ids(pairs, _seed_index(seed_manifests or ()))
    return check_items([item for item, _ in pairs], source=str(src))


def _select_tracks(tracks: Sequence[str] | None) -> list[str]:
    if not tracks:
        return list(TRACKS)
    wanted = {t.lower() for t in tracks}
    unknown = [t for t in tracks if t.lower() not in {v.lower() for v in TRACKS}]
    if unknown:
        raise InputError(f"unknown track(s) {unknown}; valid: {list(TRACKS)}")
    return [t for t in TRACKS if t.lower() in wanted]


def _data_folder(src: Path) -> Path:
    """``src`` itself, or ``src/data`` when ``src`` is the repository root."""
    if src.exists() and not src.is_dir():
        raise InputError(f"--src {src}: a file; give the SAKURA folder (the repository root or its data/)")
    if not src.is_dir():
        raise FileNotFoundError(f"SAKURA folder not found: {src}")
    if not any((src / t).is_dir() for t in TRACKS) and (src / "data").is_dir():
        return src / "data"
    return src


def _track_items(src: Path, base: Path, track: str) -> list[tuple[Item, _Row]]:
    folder = base / track
    if not folder.is_dir():
        raise FileNotFoundError(f"SAKURA track folder not found: {folder} (choose the tracks present with "
                                f"--tracks, e.g. --tracks {','.join(t for t in TRACKS if (base / t).is_dir()) or 'Animal'})")
    audio_prefix = (folder / "audio").relative_to(src).as_posix()
    rows = _read_rows(folder, track)
    log.debug("%s: %d clips", folder, len(rows))
    return [(_item(row, track, hop, audio_prefix), row) for row in rows for hop in HOPS]


def _read_rows(folder: Path, track: str) -> list[_Row]:
    csv_path, json_path = folder / "metadata.csv", folder / "metadata.json"
    if csv_path.is_file():
        rows = _read_csv(csv_path)
        return _fill_from_json(rows, json_path, track) if json_path.is_file() else rows
    if json_path.is_file():
        return [_Row(json_path, None, key, {"file": Path(key).name, **fields})
                for key, fields in _read_json(json_path).items()]
    raise FileNotFoundError(f"no metadata.csv or metadata.json in {folder}")


def _read_csv(path: Path) -> list[_Row]:
    rows: list[_Row] = []
    with open(path, "r", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        start = 2
        for record in reader:
            if None in record or None in record.values():
                raise InputError(f"row has {len(record)} fields, header has {len(reader.fieldnames or [])}",
                                 path, start)
            rows.append(_Row(path, start, "", record))
            start = reader.line_num + 1
    return rows


def _read_json(path: Path) -> dict:
    data = load_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError("expected an object mapping audio paths to metadata objects", path)
    return data


def _fill_from_json(rows: list[_Row], json_path: Path, track: str) -> list[_Row]:
    extra = _read_json(json_path)
    return [_Row(r.path, r.line, r.ref, {**extra.get(f"data/{track}/audio/{r.fields.get('file')}", {}), **r.fields})
            for r in rows]


def _text(row: _Row, field: str) -> str:
    line, key = row.where(field)
    value = row.fields.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"missing or empty field {field!r}", row.path, line, key)
    return value


def _item(row: _Row, track: str, hop: str, audio_prefix: str) -> Item:
    file_name = _text(row, "file")
    line, key = row.where(f"{hop}_instruction")
    question, choices = parse_options(_text(row, f"{hop}_instruction"), row.path, line, key)
    line, key = row.where(f"{hop}_answer")
    answer = check_lettered_answer(_text(row, f"{hop}_answer"), choices, row.path, line, key)
    meta = {k: row.fields[k] for k in META_FIELDS if row.fields.get(k) is not None}
    meta.update(audio_file=file_name, track=track)
    return Item(id=f"sakura_{track.lower()}_{Path(file_name).stem}_{hop}", dataset="sakura",
                subset=track.lower(), hop=hop, audio=f"{audio_prefix}/{file_name}", question=question,
                choices=choices, answer=answer, meta=meta)


def _seed_key(track: str, audio_file: str, hop: str) -> tuple[str, str, str]:
    return track.lower(), audio_file, hop


def _seed_index(paths: Iterable[Pathlike]) -> dict[tuple[str, str, str], SeedEntry]:
    index: dict[tuple[str, str, str], SeedEntry] = {}
    for path in paths:
        for entry in read_seed_manifest(path):
            m = _SEED_ID.match(entry.id)
            if not m:
                raise InputError("seed id should look like sakura_<track>_<n>_<single|multi>",
                                 entry.path, entry.line, entry.id)
            key = _seed_key(m.group(1), entry.audio_file, m.group(2))
            if key in index:
                first = index[key]
                raise InputError(f"(track, file, hop) {key} already given by {first.id} "
                                 f"({first.path}:{first.line})", entry.path, entry.line, entry.id)
            index[key] = entry
    return index


def _apply_seed_ids(pairs: list[tuple[Item, _Row]], index: dict[tuple[str, str, str], SeedEntry]) -> None:
    for item, row in pairs:
        key = _seed_key(item.meta["track"], item.meta["audio_file"], item.hop or "")
        entry = index.get(key)
        if entry is None:
            raise InputError(f"no seed manifest line for (track, file, hop) {key}", row.path, row.line, item.id)
        _check_against_seed(item, row, entry)
        item.meta["native_id"] = item.id
        item.id = entry.id


def _check_against_seed(item: Item, row: _Row, entry: SeedEntry) -> None:
    problems = []
    if item.question != entry.question.strip():
        problems.append(f"question {item.question!r} vs {entry.question.strip()!r}")
    if item.choices != [c.strip() for c in entry.choices]:
        problems.append(f"choices {item.choices} vs {entry.choices}")
    if item.answer != entry.letter_index:
        problems.append(f"answer {item.answer_letter} vs true_letter {letter(entry.letter_index)}")
    if problems:
        raise InputError(f"disagrees with seed {entry.id} ({entry.path}:{entry.line}): " + "; ".join(problems),
                         row.path, row.line, item.id)
