"""MMAR (``MMAR-meta.jsonl``, one object per line; ``MMAR-meta.json``, a list, before 2026-02) -> items.

The format is detected from the content, not the file name. Audio paths are the
``audio_path`` values without ``./`` (``audio/<id>.wav``), relative to the file's folder
by default.

``meta`` keeps every source field that is not part of the item: modality, category,
sub_category, language, source, url, timestamp, thinking, cue and rubric. The rubric is
the largest (about 1.5 KB per item) but it is the official judge's scoring guide and a
later stage reads only the manifest, so it stays.
"""

from __future__ import annotations

import logging

from toolkit.data._common import (get_field, get_string_list, load_json, load_jsonl, matching_choices,
                                  strip_dot_slash)
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, check_items

log = logging.getLogger(__name__)

ITEM_FIELDS = ("id", "audio_path", "question", "choices", "answer")


def prepare_mmar(src: Pathlike) -> list[Item]:
    """Read the official MMAR metadata.

    Args:
        src: ``MMAR-meta.jsonl`` or the older ``MMAR-meta.json``.

    Returns:
        Items in file order with the official ids; ``subset`` is the modality.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: malformed JSON (with its line), a missing or mistyped field, or an
            answer that is none of the choices, naming the line (JSONL) or item. An answer
            listed twice is the first index, all of them in ``meta.equivalent_answers``.

    Example:
        >>> items = prepare_mmar("mmar/MMAR-meta.jsonl")  # doctest: +SKIP
        >>> items[0].subset, items[0].audio
        ('music', 'audio/qx8hrhBZJ98_00-01-32_00-02-02.wav')
    """
    items = [_item(record, line, key, src) for line, key, record in _records(src)]
    log.debug("%s: %d items", src, len(items))
    return check_items(items, source=str(src))


def _records(src: Pathlike) -> list[tuple[int | None, str | None, dict]]:
    """(line, key, object) triples: lines for JSONL, ``item <n>`` keys for a JSON list."""
    with open(src, "r", encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith("["):
        return [(line, None, record) for line, record in load_jsonl(src)]
    data = load_json(src)
    records = []
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise InputError(f"expected an object, got {type(record).__name__}", src, key=f"item {index}")
        records.append((None, f"item {index}", record))
    return records


def _item(record: dict, line: int | None, key: str | None, path: Pathlike) -> Item:
    item_id = get_field(record, "id", str, path, line, key)
    key = item_id if key is None else f"{item_id} ({key})"
    choices = get_string_list(record, "choices", path, line, key)
    answer = get_field(record, "answer", str, path, line, key)
    matches = matching_choices(answer, choices)
    if not matches:
        raise InputError(f"answer {answer!r} is not among the choices {choices}", path, line, key)
    meta = {k.replace("-", "_"): v for k, v in record.items() if k not in ITEM_FIELDS}
    if len(matches) > 1:
        meta["equivalent_answers"] = matches
    return Item(id=item_id, dataset="mmar", subset=get_field(record, "modality", str, path, line, key),
                audio=strip_dot_slash(get_field(record, "audio_path", str, path, line, key)),
                question=get_field(record, "question", str, path, line, key), choices=choices,
                answer=matches[0], meta=meta)
