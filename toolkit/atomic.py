"""Whole-file atomic writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from toolkit.errors import Pathlike


def atomic_write_bytes(path: Pathlike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Args:
        path: destination; its parent folders are created.
        data: the full file content.

    Returns:
        The destination as a ``Path``.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def atomic_write_text(path: Pathlike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``; returns the destination."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Pathlike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (UTF-8, key order kept); returns the destination."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: Pathlike, rows: Iterable[dict]) -> Path:
    """Atomically write one JSON object per line (UTF-8); returns the destination."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return atomic_write_text(path, text)
