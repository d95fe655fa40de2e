"""Manifest items: the schema, reading with line-numbered errors, validation, writing.

A manifest is a JSONL file, one :class:`Item` per line, validated against
``manifests/schema.json``. Letters are derived from the 0-based answer index.
"""

from __future__ import annotations

import functools
import json
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence

from toolkit.atomic import atomic_write_jsonl
from toolkit.errors import InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects

LETTERS = string.ascii_uppercase
TASKS = ("mcq", "asr", "classify")
HOPS = ("single", "multi", None)


@dataclass
class Item:
    """One question (or utterance) with its audio.

    Example:
        >>> item = Item(id="demo-0", dataset="demo", audio="clips/0.wav",
        ...             question="How many beeps?", choices=["2", "3"], answer=1)
        >>> item.answer_letter
        'B'
    """

    id: str
    dataset: str
    audio: Optional[str]
    question: str
    choices: Optional[List[str]] = None
    answer: Optional[int] = None
    subset: Optional[str] = None
    hop: Optional[str] = None
    task: str = "mcq"
    reference: Optional[str] = None
    meta: dict = field(default_factory=dict)

    @property
    def answer_letter(self) -> Optional[str]:
        """The gold answer as a letter (``A`` for index 0), or None when there is none."""
        return None if self.answer is None else letter(self.answer)

    def accepts(self, pred: Optional[int]) -> bool:
        """Whether option ``pred`` counts as correct: the answer or one of ``meta.equivalent_answers``
        (MMAU items that list their answer text twice). A null prediction is never correct.

        Example:
            >>> item = Item(id="x", dataset="d", audio=None, question="?", choices=["a", "b", "a"], answer=0,
            ...             meta={"equivalent_answers": [0, 2]})
            >>> [item.accepts(p) for p in (0, 1, 2, None)]
            [True, False, True, False]
        """
        if pred is None or self.answer is None:
            return False
        return pred == self.answer or pred in self.meta.get("equivalent_answers", ())

    def to_dict(self) -> dict:
        """All fields in schema order, as written to JSONL (``choices`` and ``meta`` are shallow copies)."""
        d = {k: getattr(self, k) for k in FIELD_ORDER}
        d["choices"] = None if self.choices is None else list(self.choices)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Item":
        """Build an item from a schema-valid dict (see :func:`validate_item`)."""
        return cls(**{k: d[k] for k in FIELD_ORDER if k in d})


FIELD_ORDER = ("id", "dataset", "subset", "hop", "audio", "question", "choices",
               "answer", "task", "reference", "meta")


def letter(index: int) -> str:
    """0 -> 'A', 1 -> 'B', ... (at most 26 options)."""
    return LETTERS[index]


def format_choices(choices: Sequence[str]) -> str:
    """Options as the earlier scripts rendered them: ``"(A) x (B) y"``."""
    return " ".join(f"({letter(i)}) {c}" for i, c in enumerate(choices))


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(resources.files("toolkit").joinpath("manifest_schema.json").read_text("utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_item(d: Any) -> Optional[str]:
    """Check one manifest record against the schema and the cross-field rules.

    Args:
        d: the decoded JSON object of one line.

    Returns:
        None when valid, else a one-line message naming the offending key.
    """
    errors = sorted(_validator().iter_errors(d), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "item"
        return f"{where}: {err.message}"
    choices, answer = d.get("choices"), d.get("answer")
    if choices is not None and answer is not None and answer >= len(choices):
        return f"answer: index {answer} is out of range for {len(choices)} choices"
    return None


def iter_manifest(path: Pathlike) -> Iterator[Item]:
    """Read a manifest lazily, validating every line.

    Args:
        path: a JSONL manifest.

    Yields:
        Items in file order.

    Raises:
        InputError: naming the file and line for malformed JSON, a schema violation or a
            duplicate id. Blank lines are skipped.
    """
    seen: dict = {}
    for lineno, d in iter_jsonl_objects(path):
        problem = validate_item(d)
        if problem:
            raise InputError(problem, path, lineno, key=d.get("id"))
        if d["id"] in seen:
            raise InputError(f"duplicate id {d['id']!r} (first on line {seen[d['id']]})", path, lineno)
        seen[d["id"]] = lineno
        yield Item.from_dict(d)


def read_manifest(path: Pathlike) -> List[Item]:
    """Read and validate a whole manifest; see :func:`iter_manifest` for the errors raised."""
    return list(iter_manifest(path))


def read_manifest_ids(path: Pathlike) -> List[str]:
    """Item ids in manifest order (only ids: the stage that wrote rows validated the items;
    full validation is slow).

    Raises:
        InputError: an item without a string id, or an id used twice (naming file and line).
    """
    ids: List[str] = []
    seen: dict = {}
    for lineno, d in iter_jsonl_objects(path):
        item_id = d.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise InputError("manifest item without a string id", path, lineno)
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r} (first on line {seen[item_id]})", path, lineno)
        seen[item_id] = lineno
        ids.append(item_id)
    return ids


def load_items(path: Pathlike) -> List[Item]:
    """Read a toolkit manifest, or an earlier-scripts one when that is what ``path`` holds.

    Earlier-scripts manifests are read with :func:`toolkit.data.seed_legacy.prepare_seed`,
    keeping ``true_letter`` as the gold answer (what their results were scored against).

    Args:
        path: the manifest (JSONL).

    Returns:
        The items.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: the file is neither kind of manifest (the toolkit reader's error).

    Example:
        >>> items = load_items("seed-results/manifests/animal_manifest.jsonl")  # doctest: +SKIP
    """
    from toolkit.data.seed_legacy import looks_like_seed_manifest, prepare_seed

    try:
        return read_manifest(path)
    except InputError:
        if not looks_like_seed_manifest(path):
            raise
    return prepare_seed(path, on_mismatch="letter")


def check_items(items: Iterable[Item], source: str = "items") -> List[Item]:
    """Validate items built in memory (by a ``prepare_<source>``) before they are written.

    Args:
        items: the items.
        source: a name for messages (usually the source file).

    Returns:
        The items as a list.

    Raises:
        InputError: for the first invalid item or duplicate id, naming the item id.
    """
    out: List[Item] = []
    seen: set = set()
    for item in items:
        d = item.to_dict()
        problem = validate_item(d)
        if problem:
            raise InputError(problem, source, key=item.id)
        if item.id in seen:
            raise InputError(f"duplicate id {item.id!r}", source, key=item.id)
        seen.add(item.id)
        out.append(item)
    return out


def write_manifest(path: Pathlike, items: Iterable[Item]) -> Path:
    """Validate ``items`` and write them atomically as JSONL.

    Args:
        path: destination manifest.
        items: items to write, in order.

    Returns:
        The destination path.
    """
    checked = check_items(items, source=str(path))
    return atomic_write_jsonl(path, (it.to_dict() for it in checked))


def resolve_audio(item: Item, data_root: Optional[Pathlike]) -> Optional[Path]:
    """Absolute location of an item's audio.

    Args:
        item: the item.
        data_root: folder that relative ``audio`` paths are relative to.

    Returns:
        The path (not checked for existence), or None for text-only items.
    """
    if item.audio is None:
        return None
    p = Path(item.audio)
    if p.is_absolute() or data_root is None:
        return p
    return Path(data_root) / p
