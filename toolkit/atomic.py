"""Whole-file atomic writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from toolkit.errors import Pathlike


@contextlib.contextmanager
def atomic_output(path: Pathlike, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on success rename it onto ``path``.

    Args:
        path: destination; its parent folders are created.
        fsync: flush to disk before the rename, so the file survives a machine crash too
            (not only a killed process). Costly on network file systems; bulk outputs that
            can be regenerated bit-identically (perturbed audio) skip it.

    Yields:
        A binary file object. If the ``with`` body raises, the temporary file is removed and
        ``path`` is left as it was.

    Example:
        >>> with atomic_output("out/data.bin") as fh:  # doctest: +SKIP
        ...     fh.write(b"complete or absent")
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once at import: setting the umask to read it is a process-wide race with writer threads.
UMASK = _read_umask()


def atomic_write_bytes(path: Pathlike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); returns the destination."""
    with atomic_output(path) as fh:
        fh.write(data)
    return Path(path)


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
