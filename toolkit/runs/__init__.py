"""Run folders: the layout (:mod:`~toolkit.runs.layout`), units of work and shards, the launch
record (:mod:`~toolkit.runs.record`), and append-only result files with one writer at a time
(:mod:`~toolkit.runs.writer`, :mod:`~toolkit.runs.lock`)."""

from toolkit.runs.layout import (MODES, RunLayout, ShardRef, Unit, UnitKey, parse_shard, select_shard, shard_of,
                                 unit_dir_name)
from toolkit.runs.lock import FileBusy, WriterLock
from toolkit.runs.writer import ShardWriter, cut_torn_tail, read_done, row_key

__all__ = ["MODES", "FileBusy", "RunLayout", "ShardRef", "ShardWriter", "Unit", "UnitKey", "WriterLock",
           "cut_torn_tail", "parse_shard", "read_done", "row_key", "select_shard", "shard_of", "unit_dir_name"]
