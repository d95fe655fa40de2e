"""Exclusive writers: one process at a time appends to a result file.

:class:`WriterLock` takes an exclusive, non-blocking ``flock`` on ``<file>.lock`` (a file
that is never deleted, so two processes can never lock two different inodes of it) and
writes who holds it there: pid, host, start time and command line. A second writer fails at
once with :class:`FileBusy`, naming the file and the holder. The kernel releases the lock
when the holder exits, however it exits (a ``kill -9`` included), so a stale ``.lock`` file
never blocks anyone; the holder text it still holds is only informative.

File systems without ``flock`` support (some Lustre mounts) get a warning and no lock.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from toolkit.errors import InputError, Pathlike

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


class FileBusy(InputError):
    """Another live process is writing the file.

    Attributes:
        holder: what the holder wrote into the lock file (pid, host, since, argv), when readable.
    """

    def __init__(self, path: Pathlike, holder: Dict[str, Any]) -> None:
        self.holder = holder
        who = (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
               if holder else "another process (no holder recorded)")
        stop = f"; stop it with: kill {holder['pid']} (on {holder.get('host')})" if holder.get("pid") else ""
        super().__init__(f"is being written by {who}; a result file has one writer at a time: wait for it to "
                         f"finish{stop}", path)


def lock_path(path: Pathlike) -> Path:
    """``x.jsonl`` -> ``x.jsonl.lock``."""
    p = Path(path)
    return p.with_name(p.name + LOCK_SUFFIX)


def read_holder(path: Pathlike) -> Dict[str, Any]:
    """What the last holder of ``path``'s lock wrote ({} when nothing readable)."""
    try:
        return json.loads(lock_path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


class WriterLock:
    """The exclusive lock of one file, held from :meth:`acquire` to :meth:`release`.

    Args:
        path: the file to write (the lock is ``<path>.lock`` beside it).

    Example:
        >>> with WriterLock("runs/x.jsonl"):  # doctest: +SKIP
        ...     append_rows()
    """

    def __init__(self, path: Pathlike) -> None:
        self.path = Path(path)
        self._fd: Optional[int] = None

    def acquire(self) -> "WriterLock":
        """Take the lock or fail at once.

        Raises:
            FileBusy: another process holds it.
        """
        import fcntl

        target = lock_path(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileBusy(self.path, read_holder(self.path)) from None
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            log.warning("%s: this file system does not support flock (%s): exclusive writing is not enforced",
                        target, exc.strerror)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (the lock file stays)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
