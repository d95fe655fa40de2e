"""The result row: one frozen, typed record per (item, run[, variant]) that every stage writes and reads.

``bin/infer`` and ``bin/condition`` write rows as JSON lines (:meth:`ResultRow.to_dict`),
``merge`` checks and merges them, ``score`` and ``repair`` read them back
(:meth:`ResultRow.from_dict`, which checks every field's type and names what is wrong).
The HDF5 columns of ``results.h5`` are derived from the fields' metadata
(:func:`h5_columns`), so the writer and the reader cannot disagree.

A row's identity is (model, dataset, condition, mode, prompt, intervention); within one
result file it is keyed by :attr:`ResultRow.key` = (id, run, variant).

Example:
    >>> row = ResultRow(id="demo_0", model="simulated", condition="clean", mode="direct", pred=1, correct=True)
    >>> ResultRow.from_dict(row.to_dict()) == row
    True
    >>> row.key
    ('demo_0', 0, '')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

#: (id, run, variant): what identifies a row within one result file.
RowKey = Tuple[str, int, str]
#: The identity fields of a result (rows of different values must never be pooled).
IDENTITY = ("model", "dataset", "condition", "mode", "prompt", "intervention")


@dataclass(frozen=True)
class H5Column:
    """How a field is stored in ``results.h5``: a numpy dtype and the value standing for null.

    Attributes:
        dtype: ``text`` (UTF-8 strings, null = ""), ``int8``/``int16``/``int32`` (null = -1;
            booleans as 0/1) or ``float32`` (null = NaN).
        conditioned: stored only in ``bin/condition`` units.
    """

    dtype: str
    conditioned: bool = False

    @property
    def null(self) -> Any:
        """The stored value of None."""
        return "" if self.dtype == "text" else math.nan if self.dtype == "float32" else -1


def _h5(dtype: str, conditioned: bool = False) -> Dict[str, Any]:
    return {"h5": H5Column(dtype, conditioned)}


@dataclass(frozen=True)
class InterventionInfo:
    """What ``bin/condition`` did to the baseline to produce a row.

    Attributes:
        name: the intervention (``truncate``, ``filler-dots`` ...).
        spec: its canonical ``name:key=value,...`` with every parameter.
        placement: where injected reasoning went (``assistant`` or ``user``).
        params: what this variant did (``kept``, ``total``, ``share_kept`` ...).
    """

    name: str
    spec: str
    placement: str = "assistant"
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "spec": self.spec, "placement": self.placement, "params": dict(self.params)}


@dataclass(frozen=True)
class ResultRow:
    """One result row (see the README's "Result row" contract).

    Attributes:
        id: item id.
        model: the model's label.
        condition: the audio condition (canonical name, or an earlier-scripts label).
        mode: ``reasoning`` or ``direct`` (the generation mode; interventions start from reasoning).
        run: run index.
        prompt: prompt template name.
        raw_output: the model's text.
        reasoning: the reasoning part of it (reasoning mode), "" in direct mode.
        pred: the chosen option, 0-based, or None.
        pred_source: the extraction rule that decided, or None.
        correct: whether ``pred`` is accepted (None without gold, for ASR items and error rows).
        error: why the item could not be run, or None.
        n_new_tokens: generated tokens.
        seconds: model time per item.
        option_logprobs: option letter -> log-probability at the answer position (``--score-options``).
        flags: what was done to the item that a reader must know (``audio_truncated_from_s`` ...).
        dataset: the dataset (written by ``merge``).
        variant: ``bin/condition``: the intervention variant (``k=2``); "" for plain rows.
        intervention: ``bin/condition``: what was done (None for plain rows).
        baseline_pred: ``bin/condition``: the baseline row's prediction.
        prediction_changed: ``bin/condition``: ``pred != baseline_pred`` (None when either is null).
        shown_pred: ``shuffle``: the position the model chose among the reordered options.
        injected: ``bin/condition``: the exact reasoning (or hint) the variant put into the prompt.
        chat_sha256: ``bin/condition``: sha256 of the whole prompt text the model read (its chat
            template applied), so any variant can be audited.
        extra: fields this version does not know, kept for a lossless round trip.
    """

    id: str = field(metadata=_h5("text"))
    model: str
    condition: str
    mode: str
    run: int = field(default=0, metadata=_h5("int32"))
    prompt: Optional[str] = None
    raw_output: Optional[str] = None
    reasoning: Optional[str] = None
    pred: Optional[int] = field(default=None, metadata=_h5("int16"))
    pred_source: Optional[str] = field(default=None, metadata=_h5("text"))
    correct: Optional[bool] = field(default=None, metadata=_h5("int8"))
    error: Optional[str] = field(default=None, metadata=_h5("text"))
    n_new_tokens: Optional[int] = field(default=None, metadata=_h5("int32"))
    seconds: Optional[float] = field(default=None, metadata=_h5("float32"))
    option_logprobs: Optional[Mapping[str, float]] = None
    flags: Optional[Mapping[str, Any]] = None
    dataset: Optional[str] = None
    variant: str = field(default="", metadata=_h5("text", conditioned=True))
    intervention: Optional[InterventionInfo] = None
    baseline_pred: Optional[int] = field(default=None, metadata=_h5("int16", conditioned=True))
    prediction_changed: Optional[bool] = field(default=None, metadata=_h5("int8", conditioned=True))
    shown_pred: Optional[int] = field(default=None, metadata=_h5("int16", conditioned=True))
    injected: Optional[str] = None
    chat_sha256: Optional[str] = field(default=None, metadata=_h5("text", conditioned=True))
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> RowKey:
        """(id, run, variant): what identifies the row within a result file."""
        return self.id, self.run, self.variant

    @property
    def intervention_name(self) -> Optional[str]:
        """The intervention's name, None for a plain inference row."""
        return None if self.intervention is None else self.intervention.name

    def identity(self) -> Dict[str, Any]:
        """The values of :data:`IDENTITY` (``intervention`` as its name)."""
        return {"model": self.model, "dataset": self.dataset, "condition": self.condition, "mode": self.mode,
                "prompt": self.prompt, "intervention": self.intervention_name}

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object written as one line: the core fields always, optional ones when set,
        the ``bin/condition`` fields on intervention rows, then unknown fields as read."""
        d: Dict[str, Any] = {name: getattr(self, name) for name in _CORE}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                d[name] = dict(value) if isinstance(value, Mapping) else value
        if self.intervention is not None:
            d.update(variant=self.variant, intervention=self.intervention.to_dict(), baseline_pred=self.baseline_pred,
                     prediction_changed=self.prediction_changed)
            for name in ("shown_pred", "injected", "chat_sha256"):
                if getattr(self, name) is not None:
                    d[name] = getattr(self, name)
        elif self.variant:
            d["variant"] = self.variant
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResultRow":
        """Build a row from a decoded JSON object, checking every known field's type.

        Rows written before interventions were a field of their own (``mode`` =
        ``conditioned:<name>``) are read with the mode of their baseline, ``reasoning``.

        Raises:
            ValueError: a missing ``id``/``model``/``condition``/``mode``, or a field of the
                wrong type (the message names it).
        """
        values: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        types = _TYPES
        for key, value in d.items():
            allowed = types.get(key)
            if allowed is None:
                extra[key] = value
            elif value.__class__ in allowed:
                values[key] = value
            else:
                _check(key, value)
        for key in ("id", "model", "condition", "mode"):
            if key not in values:
                raise ValueError(f"no {key!r}")
        info = values.get("intervention")
        if info is not None:
            values["intervention"] = _intervention(info)
            if values["mode"].startswith("conditioned:"):
                values["mode"] = "reasoning"
        values["variant"] = values.get("variant") or ""
        values["extra"] = extra
        # every field was checked above: fill the instance without the frozen __init__'s one
        # object.__setattr__ per field (merge reads ~100k rows a second through here)
        row = object.__new__(cls)
        row.__dict__.update(_DEFAULTS)
        row.__dict__.update(values)
        return row

    def replace(self, **changes: Any) -> "ResultRow":
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


#: every field with a default: the starting point of :meth:`ResultRow.from_dict`
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ResultRow) if f.default is not dataclasses.MISSING}
_CORE = ("id", "model", "condition", "mode", "run", "prompt", "raw_output", "reasoning", "pred", "pred_source",
         "correct", "error", "n_new_tokens", "seconds")
_OPTIONAL = ("option_logprobs", "flags", "dataset")


def _intervention(value: Any) -> InterventionInfo:
    if isinstance(value, InterventionInfo):
        return value
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise ValueError(f"'intervention' must be an object with a 'name', got {value!r}")
    return InterventionInfo(name=value["name"], spec=str(value.get("spec") or value["name"]),
                            placement=str(value.get("placement") or "assistant"),
                            params=dict(value.get("params") or {}))


_NONE = type(None)
#: the JSON types each known field may hold (exact classes: ``true`` is not an integer here)
_TYPES: Dict[str, frozenset] = {
    **{key: frozenset({str}) for key in ("id", "model", "condition", "mode")},
    "run": frozenset({int}),
    **{key: frozenset({str, _NONE}) for key in ("prompt", "raw_output", "reasoning", "pred_source", "error",
                                                "dataset", "variant", "injected", "chat_sha256")},
    **{key: frozenset({int, _NONE}) for key in ("pred", "n_new_tokens", "baseline_pred", "shown_pred")},
    **{key: frozenset({bool, _NONE}) for key in ("correct", "prediction_changed")},
    "seconds": frozenset({int, float, _NONE}),
    **{key: frozenset({dict, _NONE}) for key in ("option_logprobs", "flags", "intervention")},
}
_NAMES = {int: "an integer", str: "a string", bool: "true/false", float: "a number", dict: "an object"}


def _check(key: str, value: Any) -> Any:
    """``value`` when it has one of ``key``'s types, else a ValueError naming both."""
    allowed = _TYPES[key]
    if value.__class__ in allowed:
        return value
    want = " or ".join(sorted({_NAMES[float if t is int and float in allowed else t] for t in allowed
                               if t is not _NONE}))
    raise ValueError(f"{key!r} must be {want}{' or null' if _NONE in allowed else ''}, got {value!r}")


def h5_columns(conditioned: bool) -> List[Tuple[str, H5Column]]:
    """The ``results.h5`` columns of a unit, in field order: ``(field name, column)``.

    Args:
        conditioned: a ``bin/condition`` unit (adds ``variant``, ``baseline_pred``,
            ``prediction_changed``, ``shown_pred``).

    Returns:
        The columns; ``option_logprobs`` (a rows x options matrix) is stored apart.
    """
    out = []
    for f in dataclasses.fields(ResultRow):
        column = f.metadata.get("h5")
        if column is not None and (conditioned or not column.conditioned):
            out.append((f.name, column))
    return out


def decode_h5(name: str, column: H5Column, value: Any) -> Any:
    """A stored value back as the field's value (the column's null -> None)."""
    if column.dtype == "text":
        return value if value or name in ("id", "variant") else None
    if column.dtype == "float32":
        return None if math.isnan(value) else float(value)
    if value < 0 and name != "run":
        return None
    return bool(value) if name in _BOOLEANS else int(value)


_BOOLEANS = {f.name for f in dataclasses.fields(ResultRow) if f.type in ("Optional[bool]", "bool")}


def row_key(row: Mapping[str, Any]) -> RowKey:
    """What identifies a row in a result file: ``(id, run, variant)``; ``variant`` is ``""``
    for plain inference rows and names the intervention variant for ``bin/condition`` rows."""
    return str(row["id"]), int(row["run"]), str(row.get("variant") or "")


def superseded(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """Whether ``later``, a row of the same (id, run, variant) written after ``earlier``, replaces
    it: only an error row is replaced (by ``--retry-errors``); any other repeated key is a
    duplicate. Every reader applies this rule (result files, merge)."""
    return earlier.get("error") is not None and row_key(earlier) == row_key(later)
