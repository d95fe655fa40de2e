"""toolkit.plots: files (PNG, PDF, sidecars) and the exact plotted points and bands."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List

import pytest

from toolkit.errors import InputError
from toolkit.metrics import wilson_interval
from toolkit.plots import KeptPoint, curve_keys, plot_accuracy, plot_consistency_vs_kept, plot_curves
from toolkit.rows import ResultRow
from toolkit.score import Scored, score_groups, scored_from_row

# condition -> correct out of 10 (model m, dataset d, mode reasoning)
CORRECT = {"mask-p40-scattered-silence": 4, "clean": 8, "mask-p20-scattered-silence": 6,
           "noise-snr0-white": 5, "noise-snr-10-white": 2, "mask_p20": 3}


def _rows() -> List[Scored]:
    rows = []
    for condition, k in CORRECT.items():
        for i in range(10):
            rows.append(scored_from_row(ResultRow(id=f"it{i}", model="m", dataset="d", condition=condition,
                                                  mode="reasoning", reasoning="r", pred=0 if i < k else 1,
                                                  correct=i < k)))
    return rows


def _band(k: int, n: int = 10) -> List[float]:
    return [100 * b for b in wilson_interval(k, n)]


def _check_files(paths: List[Path], stem: str) -> None:
    png, pdf = paths
    assert (png.name, pdf.name) == (f"{stem}.png", f"{stem}.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    for path in paths:
        meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
        assert meta["stage"] == "score" and meta["params"]["plot"] == stem and meta["params"]["results"] == ["r.jsonl"]


def test_curve_keys():
    assert curve_keys(("mode",)) == ("mode", "model", "dataset", "condition")
    assert curve_keys(("condition", "model", "dataset")) == ("condition", "model", "dataset")


def test_accuracy_vs_mask_and_snr(tmp_path, caplog):
    groups = score_groups(_rows(), by=curve_keys(("mode",)))
    with caplog.at_level(logging.WARNING, logger="toolkit.plots"):
        figures = plot_curves(groups, tmp_path, params={"results": ["r.jsonl"]})
    assert "mask_p20" in caplog.text  # not a condition name: left out, said so
    assert sorted(figures) == ["mask", "snr"]

    (mask,) = figures["mask"].curves
    assert mask.label == "reasoning / m / d / scattered-silence"
    assert (mask.x, mask.y) == ([0.0, 20.0, 40.0], [80.0, 60.0, 40.0])  # clean at 0 % masked
    assert mask.low == pytest.approx([_band(8)[0], _band(6)[0], _band(4)[0]])
    assert mask.high == pytest.approx([_band(8)[1], _band(6)[1], _band(4)[1]])
    assert mask.reference is None
    _check_files(figures["mask"].paths, "accuracy_vs_mask")

    (snr,) = figures["snr"].curves
    assert snr.label == "reasoning / m / d / white"
    assert (snr.x, snr.y) == ([-10.0, 0.0], [20.0, 50.0])
    assert snr.low == pytest.approx([_band(2)[0], _band(5)[0]])
    assert snr.reference == pytest.approx((80.0, *_band(8)))  # clean: a horizontal reference line
    _check_files(figures["snr"].paths, "accuracy_vs_snr")


def test_one_line_per_model(tmp_path):
    rows = _rows()
    for r in rows[:30]:  # mask-p40, clean, mask-p20 of model "n"
        r.keys["model"] = "n"
    figures = plot_curves(score_groups(rows, by=curve_keys(())), tmp_path)
    assert [(c.label, c.x) for c in figures["mask"].curves] == [("n / d / scattered-silence", [0.0, 20.0, 40.0])]
    # model m keeps the noise conditions but has no clean group: no reference line
    assert [(c.label, c.reference) for c in figures["snr"].curves] == [("m / d / white", None)]


def test_no_family_no_file(tmp_path):
    rows = [r for r in _rows() if not r.keys["condition"].startswith("noise")]
    figures = plot_curves(score_groups(rows, by=curve_keys(())), tmp_path)
    assert list(figures) == ["mask"]
    assert not (tmp_path / "accuracy_vs_snr.png").exists()
    with pytest.raises(InputError, match="condition"):
        plot_curves(score_groups(rows, by=("model",)), tmp_path)


def test_plot_accuracy(tmp_path):
    groups = score_groups(_rows(), by=("condition",))
    figure = plot_accuracy(groups, tmp_path / "p", params={"results": ["r.jsonl"]})
    _check_files(figure.paths, "accuracy")
    (curve,) = figure.curves
    # groups sorted by condition name: clean, mask-p20..., mask-p40..., mask_p20, noise-snr-10, noise-snr0
    assert curve.y == [80.0, 60.0, 40.0, 30.0, 20.0, 50.0]
    assert curve.high[0] == pytest.approx(_band(8)[1])
    with pytest.raises(InputError):
        plot_accuracy([], tmp_path)


def test_consistency_vs_kept(tmp_path):
    points = [("truncate", 1.0, 1.0, 0.9, 1.0), ("truncate", 0.0, 0.5, 0.4, 0.6), ("truncate", 0.5, 0.7, 0.6, 0.8),
              KeptPoint("filler", 0.5, 0.9, 0.8, 0.95)]
    figure = plot_consistency_vs_kept(points, tmp_path, params={"results": ["r.jsonl"]})
    _check_files(figure.paths, "consistency_vs_kept")
    filler, truncate = figure.curves
    assert (filler.label, filler.x, filler.y, filler.low, filler.high) == ("filler", [50.0], [90.0], [80.0], [95.0])
    assert truncate.x == [0.0, 50.0, 100.0]
    assert truncate.y == pytest.approx([50.0, 70.0, 100.0])
    assert truncate.low == pytest.approx([40.0, 60.0, 90.0])
    with pytest.raises(InputError, match="proportions"):
        plot_consistency_vs_kept([("x", 50, 0.5, 0.4, 0.6)], tmp_path)
