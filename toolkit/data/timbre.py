"""Timbre range (``ccmusic-database/timbre_range``, config ``range``) -> 3-class items.

The hub copy is an ``datasets`` arrow dump with the audio inside; the toolkit reads the
recordings as files, in one of two layouts (export the hub copy to either):

- a CSV (``--src labels.csv``) with a header naming the audio column (``audio``, ``file``,
  ``path`` or ``filename``) and ``label``: ``0``/``1``/``2`` or the class name (any case);
  optional ``split`` and ``id`` columns. Audio paths are relative to the CSV's folder.
- class folders (``--src DIR``): ``DIR/{narrow,moderate,wide}/*.wav`` (any case; also
  ``.flac``, ``.mp3``, ``.ogg``), or ``DIR/<split>/{narrow,...}/`` with ``split``.

Labels are the source's ClassLabel order: 0 narrow, 1 moderate, 2 wide. Items are
``task: classify`` with the three class names as choices and the label as the answer; ids
are ``timbre_<id column>`` or ``timbre_<audio path without extension, / as _>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from toolkit.data._common import iter_csv_rows, strip_dot_slash
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, check_items

log = logging.getLogger(__name__)

CLASSES = ("narrow", "moderate", "wide")
QUESTION = "Is the vocal range of the singing in this recording narrow, moderate or wide?"
AUDIO_COLUMNS = ("audio", "file", "path", "filename")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def prepare_timbre(src: Pathlike, split: Optional[str] = None) -> list[Item]:
    """Read the timbre range labels.

    Args:
        src: the label CSV or the folder of class folders (see the module docstring).
        split: keep this split only (CSV ``split`` column, or the ``DIR/<split>/`` folder).

    Returns:
        Items in CSV order, or sorted by path for folders; ``audio`` is relative to the
        CSV's folder or ``src``; ``subset`` is the split (or None); ``meta.label`` is the
        class name.

    Raises:
        FileNotFoundError: ``src`` (or ``src/<split>``) does not exist.
        InputError: a CSV without the needed columns, an unknown label or an empty path
            (file and line), a split asked of a CSV without a ``split`` column, or a folder
            with no class folder.

    Example:
        >>> items = prepare_timbre("timbre_range/labels.csv", split="test")  # doctest: +SKIP
        >>> items[0].choices, items[0].answer
        (['narrow', 'moderate', 'wide'], 2)
    """
    src = Path(src)
    if src.is_file():
        items = _from_csv(src, split)
    elif src.is_dir():
        items = _from_folders(src, split)
    else:
        raise FileNotFoundError(f"timbre range source not found: {src}")
    log.debug("%s: %d items", src, len(items))
    return check_items(items, source=str(src))


def _label_index(value: str, path: Path, line: int) -> int:
    text = value.strip().lower()
    if text.isdigit() and int(text) < len(CLASSES):
        return int(text)
    if text in CLASSES:
        return CLASSES.index(text)
    raise InputError(f"label {value!r} is none of 0-{len(CLASSES) - 1} or {list(CLASSES)}", path, line)


def _item(relative: str, label: int, split: Optional[str], item_id: Optional[str] = None, **meta: object) -> Item:
    stem = item_id or relative.rsplit(".", 1)[0].replace("/", "_")
    return Item(id=f"timbre_{stem}", dataset="timbre_range", subset=split, audio=relative, question=QUESTION,
                choices=list(CLASSES), answer=label, task="classify",
                meta={"label": CLASSES[label], **({"split": split} if split else {}), **meta})


def _from_csv(path: Path, split: Optional[str]) -> list[Item]:
    rows = iter_csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise InputError("empty CSV; expected a header with an audio column and 'label'", path)
    header = [f.strip().lower() for f in first[1]]
    audio_column = next((c for c in AUDIO_COLUMNS if c in header), None)
    if audio_column is None or "label" not in header:
        raise InputError(f"header {first[1]} needs one of {list(AUDIO_COLUMNS)} and 'label'", path, first[0])
    if split is not None and "split" not in header:
        raise InputError(f"split {split!r} asked but the CSV has no 'split' column", path, first[0])
    items = []
    for line, fields in rows:
        if len(fields) != len(header):
            raise InputError(f"row has {len(fields)} fields, header has {len(header)}", path, line)
        record = dict(zip(header, fields))
        row_split = record.get("split", "").strip() or None
        if split is not None and row_split != split:
            continue
        relative = strip_dot_slash(record[audio_column].strip())
        if not relative:
            raise InputError(f"empty {audio_column!r}", path, line)
        items.append(_item(relative, _label_index(record["label"], path, line), row_split,
                           record.get("id", "").strip() or None, source_line=line))
    return items


def _from_folders(src: Path, split: Optional[str]) -> list[Item]:
    base = src / split if split else src
    if not base.is_dir():
        raise FileNotFoundError(f"timbre range split folder not found: {base}")
    folders = {p.name.lower(): p for p in base.iterdir() if p.is_dir() and p.name.lower() in CLASSES}
    if not folders:
        raise InputError(f"no class folder {list(CLASSES)} (any case) in the folder", base)
    files = sorted((p for folder in folders.values() for p in folder.rglob("*")
                    if p.suffix.lower() in AUDIO_EXTENSIONS), key=lambda p: p.relative_to(src).as_posix())
    if not files:
        raise InputError(f"no audio file ({', '.join(AUDIO_EXTENSIONS)}) in the class folders", base)
    return [_item(p.relative_to(src).as_posix(), CLASSES.index(p.relative_to(base).parts[0].lower()), split)
            for p in files]
