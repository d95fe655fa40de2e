"""MMAU test-mini (``mmau-test-mini.json``, a JSON list) -> items.

Audio paths are the ``audio_id`` values without ``./`` (``test-mini-audios/<id>.wav``),
relative to the JSON's folder by default. The answer is the exact choice text; 16 real
items list it twice among the choices: the first index is the answer and every matching
index is kept in ``meta.equivalent_answers``.
"""

from __future__ import annotations

import logging

from toolkit.data._common import get_field, get_string_list, load_json, matching_choices, strip_dot_slash
from toolkit.errors import InputError, Pathlike
from toolkit.manifest import Item, check_items

log = logging.getLogger(__name__)

# source key -> meta key
META_FIELDS = {"category": "category", "sub-category": "sub_category", "difficulty": "difficulty",
               "task": "task", "dataset": "source_dataset", "split": "split"}


def prepare_mmau(src_json: Pathlike) -> list[Item]:
    """Read the official MMAU list.

    Args:
        src_json: ``mmau-test-mini.json`` (or another split in the same format).

    Returns:
        Items in file order with the official ids; ``subset`` and ``meta.modality`` are the
        ``task`` (sound/music/speech); ``meta`` also keeps category (a one-element list is
        flattened), sub_category, difficulty, task, source_dataset and split.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: malformed JSON (with its line), a missing or mistyped field, or an
            answer that is none of the choices, naming the item id and list index.

    Example:
        >>> items = prepare_mmau("mmau/mmau-test-mini.json")  # doctest: +SKIP
        >>> items[0].subset, items[0].answer, items[0].audio
        ('sound', 0, 'test-mini-audios/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav')
    """
    data = load_json(src_json)
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of items, got {type(data).__name__}", src_json)
    items = [_item(record, index, src_json) for index, record in enumerate(data)]
    repeated = sum("equivalent_answers" in item.meta for item in items)
    if repeated:
        log.warning("%s: %d item(s) list the answer text more than once; the first is taken", src_json, repeated)
    return check_items(items, source=str(src_json))


def _flatten(value: object) -> object:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _item(record: object, index: int, path: Pathlike) -> Item:
    where = f"item {index}"
    if not isinstance(record, dict):
        raise InputError(f"expected an object, got {type(record).__name__}", path, key=where)
    item_id = get_field(record, "id", str, path, key=where)
    key = f"{item_id} (item {index})"
    choices = get_string_list(record, "choices", path, key=key)
    answer = get_field(record, "answer", str, path, key=key)
    matches = matching_choices(answer, choices)
    if not matches:
        raise InputError(f"answer {answer!r} is not among the choices {choices}", path, key=key)
    meta = {dst: _flatten(record[src]) for src, dst in META_FIELDS.items() if src in record}
    meta["modality"] = meta.get("task")
    if len(matches) > 1:
        meta["equivalent_answers"] = matches
    return Item(id=item_id, dataset="mmau", subset=meta["modality"],
                audio=strip_dot_slash(get_field(record, "audio_id", str, path, key=key)),
                question=get_field(record, "question", str, path, key=key), choices=choices,
                answer=matches[0], meta=meta)
