"""Read SALMONN's and BEATs' ``torch.save`` files without running code they name.

The released files pickle more than tensors: training configs (argparse/omegaconf objects),
optimizer and scaler state. ``torch.load(weights_only=True)`` refuses any class it does not
know; ``weights_only=False`` would import and run whatever the file names. :func:`load_weights_file`
takes the first, and when the file names other classes, registers an inert placeholder under
each of those names for this one load: the objects become :class:`Foreign` records of their
pickled state, nothing is imported or executed, and the tensors come out as usual.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from toolkit.errors import Pathlike


class Foreign:
    """A pickled object of a class the loader does not import: its arguments and state, kept inert."""

    name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # pickled dict subclasses
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # pickled list subclasses
        self.__dict__.setdefault("values", []).append(value)


def _placeholder(name: str) -> type:
    return type(f"Foreign[{name}]", (Foreign,), {"name": name})


def load_weights_file(path: Pathlike) -> Tuple[Any, List[str]]:
    """``torch.load`` a checkpoint safely.

    Args:
        path: a ``torch.save`` file.

    Returns:
        The loaded object, and the ``module.Class`` names that were read as inert
        :class:`Foreign` placeholders (empty when the file holds only known types).

    Raises:
        pickle.UnpicklingError: the file cannot be read even so.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    with torch.serialization.safe_globals([(_placeholder(name), name) for name in names]):
        return torch.load(path, map_location="cpu", weights_only=True), names
