"""``results.h5``: one group per unit, one column per stored field of :class:`toolkit.rows.ResultRow`.

The writer and the reader share one column table (:func:`toolkit.rows.h5_columns`, derived
from the row type's field metadata): text columns store null as "", integer columns as -1
(booleans as 0/1), float columns as NaN. ``option_logprobs`` is a rows x options float32
matrix (column j = option letter j, NaN-padded), stored only when options were scored.

Reading it with pandas (strings come back as bytes unless read with ``.asstr()``;
:func:`read_h5_unit` does this)::

    import h5py, pandas as pd
    with h5py.File("RUN_DIR/results.h5", "r") as f:
        g = f["qwen2-audio/sakura/clean/reasoning"]
        df = pd.DataFrame({k: g[k].asstr()[()] if g[k].dtype.kind == "O" else g[k][()]
                           for k in g if g[k].ndim == 1})
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from toolkit.errors import Pathlike
from toolkit.rows import H5Column, ResultRow, decode_h5, h5_columns

if TYPE_CHECKING:
    from toolkit.store.check import UnitCheck

_NUMPY = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "float32": np.float32}


def option_matrix(rows: Sequence[ResultRow]) -> Optional[np.ndarray]:
    """``option_logprobs`` (letter -> value) as rows x options float32, NaN where absent; None when no row has any."""
    index = [r for r, row in enumerate(rows) if row.option_logprobs]
    if not index:
        return None
    present = [rows[r].option_logprobs for r in index]
    # flattened in C-level generator loops: (row, column, value) triples without a Python loop per row
    cols = np.fromiter((ord(k) - 65 for v in present for k in v), np.intp)
    values = np.fromiter((x for v in present for x in v.values()), np.float64)
    at = np.repeat(np.asarray(index, dtype=np.intp), np.fromiter(map(len, present), np.intp, len(present)))
    out = np.full((len(rows), int(cols.max()) + 1), np.nan, dtype=np.float32)
    out[at, cols] = values
    return out


def _column(rows: Sequence[ResultRow], name: str, column: H5Column) -> np.ndarray:
    """One field of every row as the column's array (None -> the column's null, booleans as 0/1)."""
    null = column.null
    values = [null if (v := getattr(r, name)) is None else v for r in rows]
    if column.dtype == "text":
        return np.array(values, dtype=object)
    return np.array(values, dtype=_NUMPY[column.dtype])


def write_unit_group(h5: Any, check: "UnitCheck", rows: Sequence[ResultRow]) -> None:
    """Write one unit's rows as the group ``check.group`` of an open ``h5py.File``.

    Group attributes: the unit's fields, ``n_items``, ``n_rows``, ``n_missing``, ``n_errors``
    and the shard sidecars' ``fingerprint`` and ``model_description`` as JSON strings.
    """
    import h5py

    n = len(rows)
    g = h5.create_group(check.group)
    for name, column in h5_columns(conditioned=check.unit.intervention is not None):
        data = _column(rows, name, column)
        if column.dtype == "text":
            g.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8"))
        else:
            g.create_dataset(name, data=data)
    options = option_matrix(rows)
    if options is not None:
        g.create_dataset("option_logprobs", data=options)
    unit = check.unit
    g.attrs.update({"model": unit.model, "dataset": unit.dataset, "condition": unit.condition, "mode": unit.mode,
                    "intervention": unit.intervention or "", "num_runs": unit.num_runs, "shards": unit.shards,
                    "manifest": unit.manifest or "", "data_root": unit.data_root or "", "n_items": check.n_items,
                    "n_rows": n, "n_missing": len(check.missing), "n_errors": check.errors,
                    "fingerprint": json.dumps(check.fingerprint, ensure_ascii=False),
                    "model_description": json.dumps(check.model_description, ensure_ascii=False)})


def h5_groups(path: Pathlike) -> List[str]:
    """The unit groups (``model/dataset/condition/<unit dir>``) of a ``results.h5``, in file order."""
    import h5py

    found: List[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Group) and "id" in obj else None)
    return found


def read_h5_unit(path: Pathlike, group: str) -> "Any":
    """One unit of a ``results.h5`` as a pandas DataFrame (one row per result row).

    Args:
        path: the ``results.h5`` file.
        group: ``model/dataset/condition/<unit dir>`` (see :func:`h5_groups`).

    Returns:
        A DataFrame with the columns as stored (strings decoded; nulls as stored: "" / -1 /
        NaN) plus ``option_logprobs`` as one float array per row when stored; ``df.attrs``
        holds the group attributes (``fingerprint`` and ``model_description`` decoded from JSON).

    Raises:
        KeyError: no such group.
    """
    import h5py
    import pandas as pd

    with h5py.File(path, "r") as f:
        g = f[group]
        columns = {k: g[k].asstr()[()] if g[k].dtype.kind == "O" else g[k][()] for k in g if g[k].ndim == 1}
        df = pd.DataFrame(columns)
        if "option_logprobs" in g:
            df["option_logprobs"] = list(g["option_logprobs"][()])
        attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in g.attrs.items()}
    for key in ("fingerprint", "model_description"):
        attrs[key] = json.loads(attrs[key])
    df.attrs.update(attrs)
    return df


def iter_h5_rows(path: Pathlike) -> Iterator[Dict[str, Any]]:
    """Rows of a ``results.h5`` with nulls restored, unit by unit.

    Yields:
        ``model, dataset, condition, mode`` (the group's), ``intervention`` (its spec, or
        None), then every stored column under its row field name (``id, run, pred, correct,
        error, n_new_tokens, seconds, pred_source``; ``variant, baseline_pred,
        prediction_changed, shown_pred`` for ``bin/condition`` units) and ``option_logprobs``
        (letter -> value without the NaN padding) when stored.
    """
    for group in h5_groups(path):
        df = read_h5_unit(path, group)
        a = df.attrs
        conditioned = bool(a.get("intervention"))
        columns = [(name, column) for name, column in h5_columns(conditioned) if name in df.columns]
        for rec in df.to_dict("records"):
            row = {"model": a["model"], "dataset": a["dataset"], "condition": a["condition"], "mode": a["mode"],
                   "intervention": a.get("intervention") or None}
            row.update({name: decode_h5(name, column, rec[name]) for name, column in columns})
            if "option_logprobs" in rec:
                row["option_logprobs"] = {chr(65 + j): float(v) for j, v in enumerate(rec["option_logprobs"])
                                          if not np.isnan(v)}
            yield row
