"""The run's metrics log (``metrics.jsonl``) and its loss plot (``loss.png``).

One JSON line per optimizer step (``{"kind": "train", "step", "epoch", "loss", "lr"}``)
and one per epoch evaluation (``{"kind": "eval", "step", "epoch", "eval_loss",
"eval_accuracy", "eval_items", "eval_choice_items"}``). Lines are appended and flushed as
they come; on resume the log is first cut back to the checkpoint's step, so it never holds
the steps that are being redone.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Dict, List

from toolkit.atomic import atomic_write_bytes, atomic_write_jsonl
from toolkit.errors import Pathlike
from toolkit.sidecar import write_sidecar

log = logging.getLogger(__name__)


class MetricsLog:
    """Append-only JSONL metrics, cut back on resume.

    Args:
        path: ``metrics.jsonl``.

    Example:
        >>> log = MetricsLog(tmp_path / "metrics.jsonl")  # doctest: +SKIP
        >>> log.append({"kind": "train", "step": 1, "loss": 2.3})  # doctest: +SKIP
    """

    def __init__(self, path: Pathlike) -> None:
        self.path = Path(path)

    def rows(self) -> List[Dict[str, Any]]:
        """Every line written so far (a torn last line is ignored)."""
        if not self.path.is_file():
            return []
        text = self.path.read_text(encoding="utf-8")
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out

    def truncate(self, step: int) -> None:
        """Keep only the lines of steps ``<= step`` (rewritten atomically)."""
        if self.path.is_file():
            atomic_write_jsonl(self.path, [r for r in self.rows() if r.get("step", 0) <= step])

    def reset(self) -> None:
        """Start an empty log (a fresh run)."""
        atomic_write_jsonl(self.path, [])

    def append(self, row: Dict[str, Any]) -> None:
        """Append one line and flush it."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()


def plot_loss(rows: List[Dict[str, Any]], path: Pathlike, params: Dict[str, Any]) -> Path:
    """Plot training loss per step, evaluation loss and accuracy per epoch; PNG + sidecar.

    Args:
        rows: metrics lines (:class:`MetricsLog`).
        path: the PNG to write (atomically).
        params: recorded in the sidecar (the run's settings).

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", color="tab:blue")
        if evals:
            ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss",
                    color="tab:orange")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (answer tokens)")
        handles, labels = ax.get_legend_handles_labels()
        scored = [r for r in evals if r.get("eval_accuracy") is not None]
        if scored:
            acc = ax.twinx()
            acc.plot([r["step"] for r in scored], [r["eval_accuracy"] for r in scored], "s--", color="tab:green",
                     label="eval accuracy")
            acc.set_ylabel("eval accuracy")
            acc.set_ylim(0, 1)
            more_h, more_l = acc.get_legend_handles_labels()
            handles, labels = handles + more_h, labels + more_l
        ax.legend(handles, labels, loc="upper right")
        ax.set_title("LoRA fine-tuning")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    write_sidecar(path, "finetune", plot="loss", **params)
    return Path(path)
