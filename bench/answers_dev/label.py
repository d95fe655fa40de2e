#!/usr/bin/env python3
"""Blind labelling helpers for the TUNE and REPORT sets (see README.md).

``show`` prints items as the labeller sees them: question, options and output only (no rule
output, no earlier letter, no gold, no stratum); outputs over 1,400 characters show their
first 250 and last 1,000 characters. ``merge`` joins a tab-separated label file
(``index<TAB>letter|null<TAB>note``, one line per item, in file order) to the unlabelled items.

    python bench/answers_dev/label.py show bench/answers_dev/report.unlabelled.jsonl 0 30
    python bench/answers_dev/label.py merge bench/answers_dev/report.unlabelled.jsonl labels.tsv \\
        bench/answers_dev/report.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

#: fields kept in a labelled file, in order.
FIELDS = ("id", "set", "model", "source_file", "dataset", "item_id", "run", "question", "choices", "output", "label",
          "note", "stratum", "hard_reasons", "earlier")


def _read(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def show(path: Path, start: int, end: int) -> None:
    """Print items ``start``..``end`` - 1 for blind labelling."""
    for i, it in enumerate(_read(path)[start:end], start):
        text = it["output"]
        if len(text) > 1400:
            text = text[:250] + " [...] " + text[-1000:]
        options = " ".join(f"({chr(65 + j)}) {c}" for j, c in enumerate(it["choices"]))
        print(f"#{i} [{it['model']} {it['dataset']}] Q: {it['question'][:300]}\n   OPTS: {options}\n   OUT: {text}\n")


def merge(path: Path, labels: Path, out: Path) -> None:
    """Write ``out``: the items of ``path`` with ``label`` and ``note`` from ``labels``."""
    items = _read(path)
    rows = [line.split("\t") for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [int(r[0]) for r in rows] != list(range(len(items))):
        raise SystemExit(f"{labels}: expected one line per item, indices 0..{len(items) - 1} in order")
    with out.open("w", encoding="utf-8") as f:
        for it, (_, label, *note) in zip(items, rows):
            if label != "null" and not (len(label) == 1 and 0 <= ord(label) - 65 < len(it["choices"])):
                raise SystemExit(f"{labels}: item {it['id']}: label {label!r} is not an option letter or null")
            it = {**it, "label": None if label == "null" else label, "note": (note[0] if note else "").strip()}
            f.write(json.dumps({k: it.get(k) for k in FIELDS}, ensure_ascii=False) + "\n")
    print(f"{out}: {len(items)} labelled items")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "show":
        show(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "merge":
        merge(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
