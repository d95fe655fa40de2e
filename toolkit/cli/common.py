"""What every ``bin/`` entry point shares: logging set-up and error-to-exit-code mapping."""

from __future__ import annotations

import argparse
import errno
import os
import logging
import sys
from typing import Callable, Optional, Sequence

from toolkit.errors import InputError

log = logging.getLogger("toolkit")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by Ctrl-C

#: a write that stopped part way: what happened (the rows written so far stay, a rerun resumes)
_FULL = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit is reached",
         errno.EDQUOT: "the disk quota is exceeded"}
#: a path that cannot be used as given
_REFUSED = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "not permitted (an immutable file or folder?)", errno.EISDIR: "is a folder, not a file",
            errno.ENOTDIR: "a part of the path is a file, not a folder"}


def os_error_line(exc: OSError) -> Optional[str]:
    """The one-line message of a file-system error a stage reports with exit 2 (None: not one
    of those, let it propagate). Names the destination of a failed rename (atomic writes), not
    its temporary file."""
    where = exc.filename2 or exc.filename or "output"
    if exc.errno in _FULL:
        return (f"{where}: {_FULL[exc.errno]} ({exc.strerror}); rows already written are kept and a rerun of the "
                "same command resumes")
    if exc.errno in _REFUSED:
        name = os.path.basename(str(where))
        if name.startswith(".") and name.endswith(".tmp"):  # an atomic write's temporary file: its folder is refused
            return f"{os.path.dirname(str(where))}: cannot create a file there: {_REFUSED[exc.errno]}"
        return f"{where}: {_REFUSED[exc.errno]}"
    return None


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose`` / ``--quiet`` to a stage parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr as ``stage: LEVEL message``; only entry points call this."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def run_cli(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int],
    argv: Optional[Sequence[str]] = None,
) -> int:
    """Parse ``argv``, configure logging and run ``body``, mapping bad input to exit code 2.

    Args:
        parser: the stage's parser (must have had :func:`add_common_args`).
        body: does the work; returns an exit code.
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 ok, 1 finished with failures, 2 bad input (one-line message on stderr).
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, printed by argparse): an exit code, not an exit
        return int(exc.code or 0)
    configure_logging(args.verbose, args.quiet)
    try:
        return body(args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; every row written so far is kept (result files are appended line by "
              "line); run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, FileNotFoundError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        message = os_error_line(exc)
        if message is None:
            raise
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
