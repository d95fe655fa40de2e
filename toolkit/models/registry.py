"""Backends by name: ``register_backend`` decorates a class, ``load_backend`` builds one."""

from __future__ import annotations

import difflib
import importlib
from typing import Dict, List, Optional, Type

from toolkit.models.base import Backend, LoadOptions

#: name -> module that registers it when imported (imported lazily: torch only when needed).
BACKEND_MODULES: Dict[str, str] = {
    "simulated": "toolkit.models.simulated",
    "qwen2-audio": "toolkit.models.qwen2_audio",
    "qwen2.5-omni": "toolkit.models.qwen25_omni",
    "af3": "toolkit.models.af3",
    "af3-think": "toolkit.models.af3",
    "whisper": "toolkit.models.whisper",
    "salmonn": "toolkit.models.salmonn.backend",
}

_REGISTRY: Dict[str, Type[Backend]] = {}


def register_backend(cls: Type[Backend]) -> Type[Backend]:
    """Class decorator adding a backend under ``cls.name``.

    Raises:
        ValueError: empty or already registered name.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"backend {cls.name!r} is already registered by {_REGISTRY[cls.name].__name__}")
    _REGISTRY[cls.name] = cls
    return cls


def backend_names() -> List[str]:
    """Every backend name, loaded or not."""
    return sorted(set(BACKEND_MODULES) | set(_REGISTRY))


def get_backend_class(name: str) -> Type[Backend]:
    """The class registered as ``name``, importing its module on first use.

    Raises:
        ValueError: unknown name, with close matches and the valid names.
    """
    if name not in _REGISTRY and name in BACKEND_MODULES:
        importlib.import_module(BACKEND_MODULES[name])
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, backend_names(), n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Valid: {', '.join(backend_names())}")
    return _REGISTRY[name]


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
