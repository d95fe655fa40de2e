"""What every ``bin/`` entry point shares: logging set-up and error-to-exit-code mapping."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from typing import Callable, Optional, Sequence

from toolkit.errors import InputError

log = logging.getLogger("toolkit")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by Ctrl-C

#: write failures a stage reports in one line (exit 2) instead of a traceback
_WRITE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit is reached",
                 errno.EDQUOT: "the disk quota is exceeded", errno.EROFS: "the file system is read-only",
                 errno.EACCES: "permission denied", errno.EPERM: "not permitted (immutable?)",
                 errno.EISDIR: "is a folder"}


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
    except (InputError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        print(f"{parser.prog}: error: {exc.filename or 'output'}: {_WRITE_ERRNOS[exc.errno]} ({exc.strerror}); "
              "rows already written are kept and a rerun of the same command resumes", file=sys.stderr)
        return EXIT_BAD_INPUT
