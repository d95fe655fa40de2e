"""The run layout (paths formatted and parsed in one place), units, shard slicing, append-only
result files with one writer at a time, torn-line repair and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from toolkit.errors import InputError
from toolkit.runs import (FileBusy, RunLayout, ShardWriter, Unit, UnitKey, cut_torn_tail, parse_shard, read_done,
                          select_shard)


def test_shards_partition_the_items_round_robin():
    items = list(range(10))
    shards = [select_shard(items, k, 3) for k in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(shards, [])) == items


@pytest.mark.parametrize("spec", ["3", "3/3", "-1/2", "a/b", "0/0"])
def test_bad_shard_specs_are_refused(spec):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(spec)


def test_run_layout_formats_and_parses_every_unit_path(tmp_path):
    layout = RunLayout(tmp_path / "exp1")
    plain = Unit("qwen2-audio", "sakura", "mask-p20-scattered-silence", "reasoning", shards=16)
    path = layout.shard_path(plain, 3)
    assert path == tmp_path / "exp1/qwen2-audio/sakura/mask-p20-scattered-silence/reasoning/shard-00003-of-00016.jsonl"
    assert layout.parse_shard_path(path) == (plain.key, 3, 16)
    conditioned = Unit("qwen2-audio", "sakura", "clean", "reasoning", "filler-dots:position=end,step=0.25", shards=2)
    path = layout.shard_path(conditioned, 1)
    assert path.parent.name == "reasoning+filler-dots" and conditioned.label == "qwen2-audio/sakura/clean/reasoning+filler-dots"
    assert layout.parse_shard_path(path) == (UnitKey("qwen2-audio", "sakura", "clean", "reasoning", "filler-dots"), 1, 2)
    for k in range(2):
        layout.shard_path(conditioned, k).parent.mkdir(parents=True, exist_ok=True)
        layout.shard_path(conditioned, k).write_text("")
    assert [(r.k, r.n) for r in layout.find_shards()[conditioned.key]] == [(0, 2), (1, 2)]
    with pytest.raises(ValueError, match="model"):
        Unit("a/b", "d", "clean", "direct")
    with pytest.raises(ValueError, match="mode"):
        Unit("m", "d", "clean", "conditioned:own")


def test_a_shard_file_in_an_unknown_unit_folder_is_named(tmp_path):
    stray = tmp_path / "exp" / "m" / "d" / "clean" / "conditioned_own" / "shard-00000-of-00001.jsonl"
    stray.parent.mkdir(parents=True)
    stray.write_text("")
    with pytest.raises(InputError, match="conditioned_own.*not a unit folder"):
        RunLayout(tmp_path / "exp").find_shards()


def test_a_second_writer_fails_at_once_naming_file_pid_and_host(tmp_path):
    """The lock is exclusive across processes: a live writer in another process blocks a second one."""
    path = tmp_path / "r.jsonl"
    script = textwrap.dedent(f"""
        import sys, time
        from toolkit.runs import ShardWriter
        w = ShardWriter({str(path)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FileBusy) as busy:
            ShardWriter(path)
        message = str(busy.value)
        assert str(path) in message and f"pid {holder.pid}" in message and os.uname().nodename in message
        assert f"kill {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()
    with ShardWriter(path) as w:  # the kernel dropped the dead holder's lock
        w.append({"id": "a", "run": 0})
    assert read_done(path) == {("a", 0, "")}


def test_writer_resumes_and_refuses_duplicates(tmp_path):
    path = tmp_path / "r.jsonl"
    with ShardWriter(path) as w:
        w.append({"id": "a", "run": 0})
        w.append({"id": "a", "run": 1})
    with ShardWriter(path) as w:
        assert w.done == {("a", 0, ""), ("a", 1, "")}
        with pytest.raises(ValueError, match="already written"):
            w.append({"id": "a", "run": 0})
        w.append({"id": "b", "run": 0})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "a", "b"]


def test_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "run": 0}\n{"id": "b", "ru')
    with ShardWriter(path) as w:
        assert w.torn_bytes == len('{"id": "b", "ru') and w.done == {("a", 0, "")}
        w.append({"id": "b", "run": 0})
    assert path.read_text() == '{"id": "a", "run": 0}\n{"id": "b", "run": 0}\n'
    assert cut_torn_tail(path) == 0


def test_a_corrupt_complete_line_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a", "run": 0}\n{"no id": 1}\n')
    with pytest.raises(InputError, match=r"r\.jsonl:2"):
        read_done(path)


def test_a_process_killed_mid_write_leaves_a_resumable_file(tmp_path):
    """A real SIGKILL between the two halves of a line, then a restart."""
    path = tmp_path / "r.jsonl"
    script = textwrap.dedent(f"""
        import os, signal
        from toolkit.runs import ShardWriter
        w = ShardWriter({str(path)!r})
        w.append({{"id": "a", "run": 0}})
        w._fh.write('{{"id": "b", "run"'); w._fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    with ShardWriter(path) as w:
        assert w.done == {("a", 0, "")}
        w.append({"id": "b", "run": 0})
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert os.path.getsize(path) == len(path.read_bytes())
