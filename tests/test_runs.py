"""Shard slicing and naming, append-only result files, torn-line repair and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from toolkit.errors import InputError
from toolkit.runs import ShardWriter, cut_torn_tail, parse_shard, read_done, select_shard, shard_path


def test_shards_partition_the_items_round_robin():
    items = list(range(10))
    shards = [select_shard(items, k, 3) for k in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(shards, [])) == items


@pytest.mark.parametrize("spec", ["3", "3/3", "-1/2", "a/b", "0/0"])
def test_bad_shard_specs_are_refused(spec):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(spec)


def test_shard_path_layout(tmp_path):
    path = shard_path(tmp_path, "exp1", "qwen2-audio", "sakura", "mask-p20-scattered-silence", "reasoning", 3, 16)
    assert path == tmp_path / "exp1/qwen2-audio/sakura/mask-p20-scattered-silence/reasoning/shard-00003-of-00016.jsonl"
    with pytest.raises(ValueError, match="model"):
        shard_path(tmp_path, "exp1", "a/b", "d", "clean", "direct", 0, 1)


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
