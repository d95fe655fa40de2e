"""Units of work on disk: shard naming and slicing, append-only result files that resume.

A result file holds one JSON row per finished (item, run), appended and flushed line by
line. :class:`ShardWriter` reopens an existing file, first cuts off a torn last line (a
process killed mid-write leaves one without its newline), reads which (id, run) pairs are
done, and appends only new rows. No file ever holds a broken line.

Layout used by ``launch`` (``bin/infer --out`` accepts any path)::

    runs/<experiment>/<model>/<dataset>/<condition>/<mode>/shard-00003-of-00016.jsonl
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import IO, List, Optional, Sequence, Set, Tuple, TypeVar

from toolkit.errors import InputError, Pathlike
from toolkit.jsonl import iter_jsonl_objects

log = logging.getLogger(__name__)

T = TypeVar("T")
DoneKey = Tuple[str, int, str]
_SHARD_SPEC = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str) -> Tuple[int, int]:
    """``"3/16"`` -> ``(3, 16)``: shard K (0-based, like a SLURM array task id) of N.

    Raises:
        ValueError: malformed spec or K outside 0..N-1.
    """
    match = _SHARD_SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"shard must look like K/N (e.g. 0/4), not {spec!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"shard {spec!r}: need N >= 1 and 0 <= K < N")
    return k, n


def select_shard(items: Sequence[T], k: int, n: int) -> List[T]:
    """Shard ``k`` of ``n``: every n-th item starting at position k (round robin).

    Round robin keeps shards the same size and mixes short and long clips; the slice
    depends only on the manifest order, so every node computes the same one.

    Example:
        >>> select_shard(list("abcdefg"), 1, 3)
        ['b', 'e']
    """
    return list(items[k::n])


def shard_path(root: Pathlike, experiment: str, model: str, dataset: str, condition: str, mode: str,
               k: int, n: int) -> Path:
    """``root/<experiment>/<model>/<dataset>/<condition>/<mode>/shard-0000k-of-0000n.jsonl``."""
    for name, value in (("experiment", experiment), ("model", model), ("dataset", dataset),
                        ("condition", condition), ("mode", mode)):
        if not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{name} {value!r} cannot be a path component")
    return Path(root, experiment, model, dataset, condition, mode.replace(":", "_"),
                f"shard-{k:05d}-of-{n:05d}.jsonl")


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


def row_key(row: dict) -> DoneKey:
    """What identifies a row in a result file: ``(id, run, variant)``; ``variant`` is ``""``
    for plain inference rows and names the intervention variant for ``bin/condition`` rows."""
    return str(row["id"]), int(row["run"]), str(row.get("variant") or "")


def read_done(path: Pathlike) -> Set[DoneKey]:
    """The (id, run, variant) keys already in a result file (after :func:`cut_torn_tail`).

    Raises:
        InputError: a complete line that is not a JSON row with ``id`` and ``run``.
    """
    done: Set[DoneKey] = set()
    for lineno, row in iter_jsonl_objects(path):
        try:
            done.add(row_key(row))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not a result row (no valid {exc}); move the file aside or fix the line", path,
                             lineno) from None
    return done


class ShardWriter:
    """Append-only writer of result rows that resumes where a previous process stopped.

    Args:
        path: the result file (created with its folders if absent).

    Attributes:
        done: (id, run, variant) keys present in the file, including those appended since opening.
        torn_bytes: bytes cut off a torn last line when the file was opened.

    Example:
        >>> with ShardWriter("out.jsonl") as w:  # doctest: +SKIP
        ...     if ("item-1", 0, "") not in w.done:
        ...         w.append({"id": "item-1", "run": 0, "pred": 2})
    """

    def __init__(self, path: Pathlike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn_bytes = cut_torn_tail(self.path) if self.path.exists() else 0
        if self.torn_bytes:
            log.warning("%s: cut a torn last line (%d bytes) left by an interrupted run", self.path, self.torn_bytes)
        self.done: Set[DoneKey] = read_done(self.path) if self.path.exists() else set()
        self._fh: Optional[IO[str]] = open(self.path, "a", encoding="utf-8")

    def append(self, row: dict) -> None:
        """Write one row as a line and flush it; the row must carry ``id`` and ``run``."""
        if self._fh is None:
            raise ValueError(f"{self.path}: writer is closed")
        key = row_key(row)
        if key in self.done:
            raise ValueError(f"{self.path}: row for id {key[0]!r} run {key[1]} {key[2]} already written")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done.add(key)

    def close(self) -> None:
        """Flush to disk and close."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
