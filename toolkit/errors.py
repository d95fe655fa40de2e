"""Exceptions the stages raise for bad input; `bin/` turns them into one-line errors."""

from __future__ import annotations

import os
from typing import Optional, Union

Pathlike = Union[str, "os.PathLike[str]"]


class InputError(ValueError):
    """Bad user input, located as precisely as possible.

    Args:
        message: what is wrong, naming the offending value and what would be valid.
        path: the file the problem is in, if any.
        line: 1-based line number in ``path``, if the file is line-oriented.
        key: the item id or JSON key the problem is in, if any.

    Example:
        >>> str(InputError("duplicate id 'x'", path="m.jsonl", line=3))
        "m.jsonl:3: duplicate id 'x'"
    """

    def __init__(
        self,
        message: str,
        path: Optional[Pathlike] = None,
        line: Optional[int] = None,
        key: Optional[str] = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
        if self.key is not None:
            where += f" [{self.key}]" if where else f"[{self.key}]"
        return f"{where}: {self.message}" if where else self.message


class ConditionError(ValueError):
    """A condition cannot be applied to one item (e.g. SNR of a silent clip).

    The item becomes a flagged row, the rest of the run goes on.
    """
