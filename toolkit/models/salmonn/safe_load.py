"""Read SALMONN's and BEATs' ``torch.save`` files without running code they name.

The released files pickle more than tensors: training code writes ``{"model": state dict,
"optimizer": ..., "config": ..., "scaler": ..., "epoch": ...}`` (bytedance/SALMONN
``runner.py`` ``save_checkpoint``), and such files may hold configs as argparse/omegaconf
objects, an AMP grad scaler, or a training script's own classes. ``torch.load(weights_only=True)``
refuses any class it does not know; ``weights_only=False`` (what the release's
``torch.load(path, map_location="cpu")`` did under torch 2.0) would import those modules and
run whatever the pickle asks for.

:func:`load_weights_file` never does: it tries ``weights_only=True``; when torch refuses the
file, it lists the file's unknown globals with
``torch.serialization.get_unsafe_globals_in_checkpoint`` (a static read of the pickle) and
loads again, still with ``weights_only=True``, with an inert placeholder class registered
under each of those names for this one load (``torch.serialization.safe_globals`` with
``(class, "module.Name")`` pairs). The named modules are never imported: an object of such a
class becomes a :class:`Foreign` record of what the pickle passes to it, a pickled call of
such a function returns a :class:`Foreign` holding its arguments, and tensors come out as
usual. Callers take the tensors and plain config values (:func:`plain_config`) and record
the rest (:func:`file_record`). Globals of modules torch blocks outright (``os``, ``sys``,
``posix``, ``nt``) still stop the load.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import Pathlike

_PLAIN = (str, int, float, bool, type(None))


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file that cannot be read without running code from it (so it is not read)."""


class Foreign:
    """A pickled object of a class the loader does not import, or the result of a pickled call
    of a function it does not import: the arguments and state, kept inert.

    Attributes:
        name: the pickled ``module.Name`` (a class attribute of each placeholder class).
        args, kwargs: constructor or call arguments from the pickle.
        state: what the pickle would hand to ``__setstate__`` (for plain objects, their ``__dict__``).
        items, values: contents of pickled dict or list subclasses.
    """

    name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # pickle's NEWOBJ calls this without __init__
        obj = super().__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None)
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # pickled dict subclasses
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # pickled list subclasses
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)

    def __repr__(self) -> str:
        return f"<{self.name}, not loaded>"


def _placeholder(name: str) -> type:
    return type(f"Foreign[{name}]", (Foreign,), {"name": name, "__module__": __name__})


def load_weights_file(path: Pathlike) -> tuple[Any, list[str]]:
    """``torch.load`` a checkpoint on the CPU with ``weights_only=True``, foreign objects made inert.

    Args:
        path: a ``torch.save`` file.

    Returns:
        The loaded object, and the sorted ``module.Name`` globals that were read as inert
        :class:`Foreign` placeholders (empty when the file holds only types torch allows).

    Raises:
        UnsafeCheckpointError: the file cannot be read even so (a global from a module torch
            blocks, a legacy non-zip file naming unknown globals, an unsupported pickle
            opcode); it is never retried with ``weights_only=False``.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError as exc:
        refusal = exc
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise UnsafeCheckpointError(f"{path}: torch.load(weights_only=True) refused it ({refusal}) and its pickled "
                                    f"globals cannot be listed ({exc}); it is not read with weights_only=False, "
                                    "which would run code from it") from exc
    if not names:
        raise UnsafeCheckpointError(f"{path}: torch.load(weights_only=True) refused it: {refusal}")
    try:
        with torch.serialization.safe_globals([(_placeholder(name), name) for name in names]):
            return torch.load(path, map_location="cpu", weights_only=True), names
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"{path}: cannot be read without running code from it "
                                    f"(it names {', '.join(names)}): {exc}") from exc


def plain_config(value: Any) -> tuple[dict[str, Any], list[str]]:
    """The plain entries of a pickled config: a mapping, or a :class:`Foreign` object's pickled
    ``__dict__`` (an ``argparse.Namespace``, a config class).

    Plain values are strings, numbers, booleans, None, and lists/tuples of them.

    Returns:
        ``(config, dropped)``: the plain entries, and the keys whose values are not plain.
    """
    if isinstance(value, Foreign):
        value = value.state if isinstance(value.state, Mapping) else value.__dict__.get("items", {})
    if not isinstance(value, Mapping):
        return {}, []
    config: dict[str, Any] = {}
    dropped: list[str] = []
    for key, entry in value.items():
        if isinstance(entry, _PLAIN) or (isinstance(entry, (list, tuple)) and all(isinstance(v, _PLAIN) for v in entry)):
            config[str(key)] = entry
        else:
            dropped.append(str(key))
    return config, dropped


def file_record(path: Pathlike, foreign: Sequence[str], content: Any, used: Sequence[str] | None = None,
                dropped: Sequence[str] = ()) -> dict[str, Any]:
    """What a loader took from a file and what it skipped, for ``describe()``.

    Args:
        path: the file.
        foreign: the globals read as placeholders (:func:`load_weights_file`).
        content: what the file holds.
        used: the top-level keys the loader used (None: all of it, e.g. a bare state dict).
        dropped: config keys whose values were not plain (:func:`plain_config`).

    Returns:
        ``{"file", "foreign_objects", "unused_keys", "dropped_config_keys"}``.
    """
    unused = sorted(str(k) for k in content if k not in used) if used is not None and isinstance(content, Mapping) \
        else []
    return {"file": str(Path(path)), "foreign_objects": list(foreign), "unused_keys": unused,
            "dropped_config_keys": list(dropped)}
