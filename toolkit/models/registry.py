"""Backends by name: ``register_backend`` decorates a class, ``load_backend`` builds one.

A family is registered in one place, its backend module: the class (with its loader) and,
for the families that have one, ``build_tiny`` - a tiny random checkpoint of the real
classes, saved like the published folder, for tests and demos (:func:`build_tiny`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Type

from toolkit.errors import Pathlike
from toolkit.models.base import Backend, LoadOptions
from toolkit.registry import Registry

#: name -> module that registers it when imported (imported lazily: torch only when needed).
BACKENDS: Registry[Type[Backend]] = Registry("model", lazy={
    "simulated": "toolkit.models.simulated",
    "qwen2-audio": "toolkit.models.qwen2_audio",
    "qwen2.5-omni": "toolkit.models.qwen25_omni",
    "af3": "toolkit.models.af3",
    "af3-think": "toolkit.models.af3",
    "whisper": "toolkit.models.whisper",
    "salmonn": "toolkit.models.salmonn.backend",
})


def register_backend(cls: Type[Backend]) -> Type[Backend]:
    """Class decorator adding a backend under ``cls.name``.

    Raises:
        ValueError: empty or already registered name.
    """
    BACKENDS.register(cls.name, cls)
    return cls


def backend_names() -> List[str]:
    """Every backend name, loaded or not."""
    return BACKENDS.names()


def get_backend_class(name: str) -> Type[Backend]:
    """The class registered as ``name``, importing its module on first use.

    Raises:
        ValueError: unknown name, with close matches and the valid names.
    """
    return BACKENDS.get(name)


def load_backend(name: str, model_path: Optional[str], options: LoadOptions = LoadOptions()) -> Backend:
    """Build backend ``name`` from ``model_path`` (a local folder or a hub id).

    Args:
        name: registry name.
        model_path: checkpoint folder or hub id (backend-specific meaning for ``simulated``).
        options: dtype, device, attention implementation, adapter.

    Returns:
        The loaded backend.
    """
    return get_backend_class(name).load(model_path, options)


def has_tiny(name: str) -> bool:
    """Whether backend ``name`` can build a tiny random checkpoint (:func:`build_tiny`)."""
    return get_backend_class(name).build_tiny.__func__ is not Backend.build_tiny.__func__


def build_tiny(name: str, folder: Pathlike, **sizes: Any) -> Path:
    """Save a tiny random checkpoint of backend ``name``'s real classes to ``folder``.

    Args:
        name: registry name (see :func:`has_tiny`).
        folder: output folder, laid out like the published checkpoint.
        **sizes: the family's size options (``hidden_size``, ``num_layers``, ``seed`` ...).

    Returns:
        The folder, loadable with ``load_backend(name, str(folder))``.

    Raises:
        ValueError: unknown backend, or one without a tiny builder.

    Example:
        >>> path = build_tiny("qwen2-audio", tmp_path / "qwen2-audio")  # doctest: +SKIP
        >>> backend = load_backend("qwen2-audio", str(path))  # doctest: +SKIP
    """
    cls = get_backend_class(name)
    if not has_tiny(name):
        tiny = [n for n in backend_names() if n != name and has_tiny(n)]
        raise ValueError(f"model {name!r} has no tiny builder (tiny models exist for {', '.join(tiny)})")
    return cls.build_tiny(folder, **sizes)
