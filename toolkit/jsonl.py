"""Reading JSONL files with errors that name the file and line."""

from __future__ import annotations

import json
from typing import Iterator, Tuple

from toolkit.errors import InputError, Pathlike


def iter_jsonl_objects(path: Pathlike) -> Iterator[Tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file.

    Args:
        path: the file (UTF-8).

    Yields:
        1-based line numbers with the decoded JSON objects, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        InputError: malformed JSON or a line that is not a JSON object, naming file and line.
    """
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:  # without its newline: an error at the end of the line is in it, not at column 1 of the next
                obj = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON: {exc.msg} (column {exc.pos + 1})", path, lineno) from None
            if not isinstance(obj, dict):
                raise InputError(f"expected a JSON object, got {type(obj).__name__}", path, lineno)
            yield lineno, obj
