"""Checks every ``bin/`` stage runs on its paths before it reads a model or writes a byte.

Each returns a one-line problem (naming the flag and the path) or None, so a stage can
collect them, print them and exit 2 with nothing written.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, List, Optional

#: a hub id: ``name`` or ``owner/name`` (what ``from_pretrained`` would try to download)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def input_file(path: Path, flag: str) -> Optional[str]:
    """``path`` must be a readable file."""
    if not path.exists():
        return f"{flag} {path}: no such file"
    if path.is_dir():
        return f"{flag} {path}: is a folder; give a file"
    if not os.access(path, os.R_OK):
        return f"{flag} {path}: not readable"
    return None


def input_folder(path: Path, flag: str) -> Optional[str]:
    """``path`` must be an existing folder."""
    if not path.exists():
        return f"{flag} {path}: no such folder"
    if not path.is_dir():
        return f"{flag} {path}: is a file; give a folder"
    return None


def writable_folder(folder: Path, flag: str, shown: Optional[Path] = None) -> Optional[str]:
    """A file can be created in ``folder`` (or in its first existing ancestor, when it is still to
    be made): tried for real, since permission bits say nothing about read-only or immutable
    file systems, nor to root."""
    shown = folder if shown is None else shown
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{flag} {shown}: {existing} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"{flag} {shown}: cannot write in {existing} ({exc.strerror or exc})"
    return None


def output_file(path: Path, flag: str) -> Optional[str]:
    """``path`` can be written: not a folder, its folder writable."""
    if path.is_dir():
        return f"{flag} {path}: is a folder; give a file path"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{flag} {path}: not writable"
    return writable_folder(path.parent, flag, shown=path)


def output_folder(path: Path, flag: str) -> Optional[str]:
    """``path`` is (or can be made) a writable folder."""
    if path.exists() and not path.is_dir():
        return f"{flag} {path}: is a file; give a folder"
    return writable_folder(path, flag)


def model_path(path: Optional[str], backend: str, needs_path: bool) -> Optional[str]:
    """``--model-path`` is given when the backend needs one, and is an existing folder or file,
    or a hub id (downloads are up to the cluster: a node without the hub cache fails at load)."""
    if path is None:
        return f"--model-path: model {backend!r} needs one (a local checkpoint folder or a hub id)" if needs_path \
            else None
    if Path(path).exists() or not needs_path:
        return None
    if _HUB_ID.match(path) and not path.startswith((".", "~")):
        return None
    return (f"--model-path {path}: no such folder, and not a hub id (nothing is downloaded for a path; "
            f"check the path)")


def run_problems(args: Any) -> List[str]:
    """What ``bin/infer`` and ``bin/condition`` check before loading a model: the manifest (and
    ``--results``, ``--data-root``) can be read, ``--out``/``--run-dir`` can be written, the
    backend exists and has its ``--model-path``, and the budget is positive."""
    from toolkit.models.registry import get_backend_class

    problems = [input_file(args.manifest, "--manifest")]
    if getattr(args, "results", None) is not None:
        problems.append(input_file(args.results, "--results"))
    if getattr(args, "data_root", None) is not None:
        problems.append(input_folder(args.data_root, "--data-root"))
    if getattr(args, "out", None) is not None:
        problems.append(output_file(args.out, "--out"))
    if getattr(args, "run_dir", None) is not None:
        problems.append(output_folder(args.run_dir, "--run-dir"))
    if args.model is not None:
        try:
            backend = get_backend_class(args.model)
        except ValueError as exc:
            problems.append(f"--model: {exc}")
        else:
            problems.append(model_path(args.model_path, args.model, backend.needs_model_path))
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    return [problem for problem in problems if problem]
