"""Append-only result files that resume: one writer at a time, no broken line ever kept.

A result file holds one JSON row per finished key (id, run, variant), appended and flushed
line by line. :class:`ShardWriter` takes the file's exclusive lock
(:class:`toolkit.runs.lock.WriterLock`), first cuts off a torn last line (a process killed
mid-write leaves one without its newline), reads which keys are done, and appends only new
rows.

Retrying errors (``--retry-errors``) keeps the file append-only: a key whose row carries an
``error`` is not done, its new row is appended, and a later row of a key supersedes an
earlier error row of it (:func:`toolkit.rows.superseded`); merge, score and every reader take the latest.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Set, Union

from toolkit.errors import InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects
from toolkit.rows import ResultRow, RowKey, row_key
from toolkit.runs.lock import WriterLock

log = logging.getLogger(__name__)


def cut_torn_tail(path: Pathlike) -> int:
    """Truncate ``path`` after its last newline (drop a line torn by a kill mid-write).

    Returns:
        The number of bytes removed (0 when the file ends with a newline or is empty).
    """
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
        return size - keep


def read_done(path: Pathlike, retry_errors: bool = False) -> Set[RowKey]:
    """The (id, run, variant) keys already in a result file (after :func:`cut_torn_tail`).

    Args:
        path: the result file.
        retry_errors: leave out keys whose latest row carries an error (they are run again).

    Raises:
        InputError: a complete line that is not a JSON row with ``id`` and ``run``.
    """
    failed: dict = {}
    for lineno, row in iter_jsonl_objects(path):
        try:
            failed[row_key(row)] = row.get("error") is not None
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a result row (no valid {exc}); bin/merge RUN_DIR --dedupe moves such lines out "
                             "of a run folder's shard files, or move the file aside", path, lineno) from None
    return {key for key, error in failed.items() if not (retry_errors and error)}


class ShardWriter:
    """Append-only writer of result rows that resumes where a previous process stopped.

    Args:
        path: the result file (created with its folders if absent).
        before_open: called once the lock is held and before the file is touched (e.g. to
            check or write its sidecar); what it raises releases the lock and propagates.
        retry_errors: keys whose latest row carries an error are not done (a new row is
            appended for them and supersedes the error row).

    Raises:
        FileBusy: another live process is writing ``path``.

    Attributes:
        done: (id, run, variant) keys present in the file, including those appended since opening.
        torn_bytes: bytes cut off a torn last line when the file was opened.

    Example:
        >>> with ShardWriter("out.jsonl") as w:  # doctest: +SKIP
        ...     if ("item-1", 0, "") not in w.done:
        ...         w.append({"id": "item-1", "run": 0, "pred": 2})
    """

    def __init__(self, path: Pathlike, before_open: Optional[Callable[[], None]] = None,
                 retry_errors: bool = False) -> None:
        self.path = Path(path)
        self.retry_errors = retry_errors
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock(self.path).acquire()
        try:
            if before_open is not None:
                before_open()
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        self.torn_bytes = cut_torn_tail(self.path) if self.path.exists() else 0
        if self.torn_bytes:
            log.warning("%s: cut a torn last line (%d bytes) left by an interrupted run", self.path, self.torn_bytes)
        self.done: Set[RowKey] = read_done(self.path, self.retry_errors) if self.path.exists() else set()
        self._fh: Optional[IO[str]] = open(self.path, "a", encoding="utf-8")

    def append(self, row: Union[ResultRow, Mapping]) -> None:
        """Write one row (a :class:`ResultRow`, or a JSON object with ``id`` and ``run``) as a line
        and flush it.

        Raises:
            ValueError: the writer is closed, or the row's key is already in the file.
        """
        if self._fh is None:
            raise ValueError(f"{self.path}: writer is closed")
        if isinstance(row, ResultRow):
            row = row.to_dict()
        key = row_key(row)
        if key in self.done:
            raise ValueError(f"{self.path}: row for id {key[0]!r} run {key[1]} {key[2]} already written")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done.add(key)

    def close(self) -> None:
        """Flush to disk, close and release the lock."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        self._lock.release()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
