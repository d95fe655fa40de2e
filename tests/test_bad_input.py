"""Bad input to the model stages: one line on stderr, exit 2, nothing written; bad audio: an error row.

Each case is what a new user tried (issue 16): a folder where a file goes, an unknown
backend, a missing model path, a negative budget, an empty manifest, an output folder
that cannot be written, a disk that fills up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli.condition import main as condition_main
from toolkit.cli.infer import main as infer_main
from toolkit.data.demo import prepare_demo
from toolkit.manifest import Item, write_manifest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A small demo manifest, an empty one, a folder, and a simulated reasoning baseline."""
    root = tmp_path_factory.mktemp("bad-input")
    manifest = write_manifest(root / "data" / "m.jsonl", prepare_demo(root / "data", items_per_task=1, seed=1))
    empty = write_manifest(root / "data" / "empty.jsonl", [])
    baseline = root / "baseline.jsonl"
    assert infer_main(["--manifest", str(manifest), "--model", "simulated", "--mode", "reasoning", "--out",
                       str(baseline), "-q"]) == 0
    (root / "folder").mkdir()
    return {"manifest": manifest, "empty": empty, "folder": root / "folder", "baseline": baseline}


INFER_CASES = {
    "manifest is a folder": (["--manifest", "{folder}"], "--manifest {folder}: is a folder"),
    "out is a folder": (["--out", "{folder}"], "--out {folder}: is a folder"),
    "unknown backend": (["--model", "qwen3-audio"], "unknown model 'qwen3-audio'. Did you mean 'qwen2-audio'?"),
    "no model path": (["--model", "qwen2-audio"], "model 'qwen2-audio' needs one"),
    "missing model path": (["--model", "qwen2-audio", "--model-path", "/models/nope"],
                           "--model-path /models/nope: no such folder"),
    "negative budget": (["--max-new-tokens", "-5"], "--max-new-tokens must be at least 1, not -5"),
    "empty manifest": (["--manifest", "{empty}"], "--manifest {empty}: no items"),
}


def _args(base: dict, override: list, study: dict) -> list:
    merged = dict(base)
    for flag, value in zip(override[::2], override[1::2]):
        merged[flag] = value.format(**study)
    return [part for flag, value in merged.items() for part in (flag, value)]


@pytest.mark.parametrize("case", sorted(INFER_CASES))
def test_infer_refuses_bad_input_in_one_line_and_writes_nothing(case, study, tmp_path, capsys):
    override, message = INFER_CASES[case]
    out = tmp_path / "out" / "r.jsonl"
    base = {"--manifest": str(study["manifest"]), "--model": "simulated", "--mode": "direct", "--out": str(out)}
    before = sorted(study["folder"].parent.rglob("*"))
    assert infer_main([*_args(base, override, study), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(**study) in err[0], err
    assert not (tmp_path / "out").exists() and sorted(study["folder"].parent.rglob("*")) == before


@pytest.mark.parametrize("case", ["manifest is a folder", "out is a folder", "unknown backend", "negative budget",
                                  "empty manifest", "results is a folder"])
def test_condition_refuses_bad_input_in_one_line_and_writes_nothing(case, study, tmp_path, capsys):
    override, message = INFER_CASES.get(case, (["--results", "{folder}"], "--results {folder}: is a folder"))
    out = tmp_path / "out" / "c.jsonl"
    base = {"--manifest": str(study["manifest"]), "--results": str(study["baseline"]), "--model": "simulated",
            "--intervention": "truncate", "--out": str(out)}
    assert condition_main([*_args(base, override, study), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(**study) in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def locked(tmp_path):
    """An immutable empty folder (``chattr +i``: not even root can create a file in it)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_output_folder_that_cannot_be_written_is_refused_before_anything_runs(study, locked, capsys):
    assert infer_main(["--manifest", str(study["manifest"]), "--model", "simulated", "--mode", "direct",
                       "--out", str(locked / "r.jsonl"), "-q"]) == 2
    assert f"--out {locked / 'r.jsonl'}: cannot write in {locked}" in capsys.readouterr().err
    assert not any(locked.iterdir())


def test_a_full_disk_is_one_line_and_a_rerun_resumes(tmp_path):
    manifest = write_manifest(tmp_path / "data" / "m.jsonl", prepare_demo(tmp_path / "data", items_per_task=10, seed=2))
    out = tmp_path / "r.jsonl"
    command = [sys.executable, str(REPO / "bin" / "infer"), "--manifest", str(manifest), "--model",
               "simulated", "--mode", "reasoning", "--out", str(out), "-q"]
    full = subprocess.run(["bash", "-c", 'ulimit -f 8; exec "$@"', "bash", *command], capture_output=True, text=True)
    assert full.returncode == 2, full.stderr
    assert full.stderr.strip().count("\n") == 0 and "the file size limit is reached" in full.stderr
    assert 0 < out.stat().st_size <= 8192  # rows up to the limit were written
    assert subprocess.run(command, capture_output=True).returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({row["id"] for row in rows}) == len(rows) == 30 and all(row["error"] is None for row in rows)


def test_audio_without_samples_or_with_nan_becomes_an_error_row(tmp_path):
    sf.write(tmp_path / "ok.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), 16000, subtype="FLOAT")
    items = [Item(id=name, dataset="t", audio=f"{name}.wav", question="Is it a tone?", choices=["yes", "no"],
                  answer=0) for name in ("ok", "empty", "nan")]
    manifest = write_manifest(tmp_path / "m.jsonl", items)
    out = tmp_path / "r.jsonl"
    assert infer_main(["--manifest", str(manifest), "--model", "simulated", "--mode", "direct", "--out", str(out),
                       "-q"]) == 1
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert rows["ok"]["error"] is None
    assert "the audio has no samples" in rows["empty"]["error"]
    assert "1000 NaN or infinite samples" in rows["nan"]["error"]
    from toolkit.cli.perturb import main as perturb_main

    assert perturb_main(["--manifest", str(manifest), "--condition", "mask-p20", "--out-dir", str(tmp_path / "p"),
                         "-q"]) == 1
    perturbed = {row["id"]: row for row in map(json.loads, (tmp_path / "p" / "mask-p20-scattered-silence" /
                                                             "manifest.jsonl").read_text().splitlines())}
    assert "condition_error" not in perturbed["ok"]["meta"]
    assert "no samples" in perturbed["empty"]["meta"]["condition_error"]
    assert "NaN or infinite" in perturbed["nan"]["meta"]["condition_error"]
    assert sorted(p.name for p in (tmp_path / "p" / "mask-p20-scattered-silence").glob("*.wav")) == ["ok.wav"]


def test_error_rows_are_retried_on_request_and_the_new_row_wins(tmp_path, capsys):
    from toolkit.results import read_results

    sf.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    items = [Item(id=name, dataset="t", audio=f"{name}.wav", question="Is it a tone?", choices=["yes", "no"],
                  answer=0) for name in ("a", "b")]
    manifest = write_manifest(tmp_path / "m.jsonl", items)
    out = tmp_path / "r.jsonl"
    command = ["--manifest", str(manifest), "--model", "simulated", "--mode", "direct", "--out", str(out)]
    assert infer_main(command) == 1  # b.wav is missing
    shutil.copy(tmp_path / "a.wav", tmp_path / "b.wav")
    assert infer_main(command) == 0 and "skipped 2" in capsys.readouterr().out  # kept without the flag
    assert infer_main([*command, "--retry-errors"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in lines] == ["a", "b", "b"] and lines[1]["error"] and lines[2]["error"] is None
    _, rows = read_results(out)
    assert [(row.id, row.row.error) for row in rows] == [("a", None), ("b", None)]


def test_written_units_release_their_audio(tmp_path):
    """Memory stays flat in the number of rows (the filler-dots leak: every written unit kept
    its request, audio included; bench/condition_memory.py measures it)."""
    from toolkit.infer import InferConfig, Runner, plan_units
    from toolkit.models.base import GenerationSettings
    from toolkit.models.registry import load_backend
    from toolkit.prompts import get_prompt
    from toolkit.runs import ShardWriter

    items = prepare_demo(tmp_path / "data", items_per_task=2, seed=1)
    config = InferConfig("simulated", "direct", get_prompt("direct-v1"), GenerationSettings(max_new_tokens=8))
    runner = Runner(load_backend("simulated", None), config, tmp_path / "data")
    units, _ = plan_units(items, set(), 1, runner.length_hint)
    with ShardWriter(tmp_path / "r.jsonl") as writer:
        summary = runner.run(units, writer, progress=False)
    assert summary.done == len(units) == 6 and all(unit.request is None for unit in units)


def test_ctrl_c_is_one_line_and_the_run_resumes(tmp_path):
    import signal
    import time

    manifest = write_manifest(tmp_path / "data" / "m.jsonl", prepare_demo(tmp_path / "data", items_per_task=8, seed=3))
    out = tmp_path / "r.jsonl"
    command = [sys.executable, str(REPO / "bin" / "infer"), "--manifest", str(manifest), "--model", "simulated",
               "--model-path", "latency=0.1", "--mode", "reasoning", "--out", str(out), "--batch-size", "1", "-q"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not out.exists() or out.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines() == ["infer: interrupted; every row written so far is kept (result files are "
                                        "appended line by line); run the same command again to resume"]
    written = len(out.read_text().splitlines())
    assert 0 < written < 24
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert len(out.read_text().splitlines()) == 24


def test_malformed_json_names_the_column_of_the_error(tmp_path):
    from toolkit.errors import InputError
    from toolkit.jsonl import iter_jsonl_objects

    good = json.dumps({"id": "a", "question": "x" * 460})[:-1]  # 486 characters, the closing brace dropped
    assert len(good) == 486
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "ok"}) + "\n" + good + "\n")  # a line cut short
    with pytest.raises(InputError, match=r"m\.jsonl:2: malformed JSON: .* \(column 487\)"):
        list(iter_jsonl_objects(tmp_path / "m.jsonl"))


@pytest.mark.parametrize("name, says, not_says", [
    ("mask-p150", "mask percent must be an integer 0..100, not 150", "Did you mean"),
    ("mask-40", "the percent needs its 'p': mask-p40", "Did you mean"),
    ("noise-0-white", "the SNR needs its 'snr': noise-snr0-white", "Did you mean"),
    ("maks-p40", "no condition family has this prefix. Did you mean 'mask-p20'?", None),
])
def test_condition_names_say_what_is_wrong(name, says, not_says):
    from toolkit.perturb import parse_condition

    with pytest.raises(ValueError) as caught:
        parse_condition(name)
    assert says in str(caught.value) and (not_says is None or not_says not in str(caught.value))


#: every other stage against bad paths: (stage, argv with {placeholders}, what the one line says)
STAGE_CASES = [
    ("perturb", ["--manifest", "{folder}", "--conditions", "study", "--out", "{out}/p"], "{folder}: is a folder"),
    ("perturb", ["--manifest", "{manifest}", "--conditions", "study", "--out", "{manifest}"],
     "a part of the path is a file, not a folder"),
    ("score", ["accuracy", "{folder}"], "{folder}: is a folder, not a file"),
    ("score", ["accuracy", "{baseline}", "--out", "{folder}"], "{folder}: is a folder, not a file"),
    ("merge", ["{baseline}"], "not a run directory"),
    ("prepare", ["mmau", "--src", "{folder}", "--out", "{out}/m.jsonl"], "{folder}: is a folder, not a file"),
    ("repair", ["--in", "{folder}", "--manifest", "{manifest}", "--out", "{out}/r.jsonl"],
     "{folder}: is a folder, not a file"),
    ("launch", ["{folder}"], "cannot read sweep file"),
    ("finetune", ["--train", "{folder}", "--eval", "{manifest}", "--model", "qwen2-audio", "--model-path",
                  "/models/nope", "--out", "{out}/ft"], "--train {folder}"),
]


@pytest.mark.parametrize("stage, argv, message", STAGE_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(STAGE_CASES)])
def test_every_stage_refuses_bad_paths_with_exit_2_and_writes_nothing(stage, argv, message, study, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"toolkit.cli.{stage}").main
    values = {**study, "out": tmp_path / "out"}
    before = sorted(study["folder"].parent.rglob("*"))
    assert main([part.format(**values) for part in argv] + ["-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message.format(**values) in "\n".join(err) and "Traceback" not in "\n".join(err)
    assert len(err) == 1 or err[0].endswith("problem(s):")  # finetune lists its problems under one line
    assert not (tmp_path / "out").exists() and sorted(study["folder"].parent.rglob("*")) == before


def test_an_immutable_output_folder_is_one_line_in_score_and_launch(study, locked, capsys):
    from toolkit.cli.launch import main as launch_main
    from toolkit.cli.score import main as score_main

    assert score_main(["accuracy", str(study["baseline"]), "--out", str(locked / "s.md"), "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"score: error: {locked}: cannot create a file there: not " \
                                               "permitted (an immutable file or folder?)"
    assert launch_main([str(REPO / "slurm" / "examples" / "demo.yaml"), "--executor", "debug", "--out",
                        str(locked), "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"launch: error: {locked / 'demo'}: not permitted (an immutable " \
                                               "file or folder?)"
    assert not any(locked.iterdir())


def test_faithfulness_plots_without_curves_write_the_tables_and_say_why(study, tmp_path, capsys):
    from toolkit.cli.score import main as score_main

    own = tmp_path / "own.jsonl"
    assert condition_main(["--manifest", str(study["manifest"]), "--results", str(study["baseline"]), "--model",
                           "simulated", "--intervention", "own", "--out", str(own), "-q"]) == 0
    capsys.readouterr()
    report = tmp_path / "faithfulness.md"
    assert score_main(["faithfulness", str(own), "--manifest", str(study["manifest"]), "--out", str(report),
                       "--plots", str(tmp_path / "plots")]) == 0
    assert "no consistency plots" in capsys.readouterr().err and "sanity" in report.read_text()
