"""The merged result set of a run folder.

- :mod:`~toolkit.store.check` - completeness: every unit's shard files against its expected row keys.
- :mod:`~toolkit.store.merge` - ``bin/merge``: ``results.jsonl`` + ``results.h5`` (+ ``missing.jsonl``).
- :mod:`~toolkit.store.h5` - the HDF5 columns, written and read with one column table.
- :mod:`~toolkit.store.doctor` - ``bin/merge --dedupe``: repair duplicated and broken shard lines.
"""

from toolkit.store.check import RunCheck, UnitCheck, check_run
from toolkit.store.doctor import dedupe_run
from toolkit.store.h5 import h5_groups, iter_h5_rows, read_h5_unit
from toolkit.store.merge import MergeRefused, MergeReport, merge_run

__all__ = ["MergeRefused", "MergeReport", "RunCheck", "UnitCheck", "check_run", "dedupe_run", "h5_groups",
           "iter_h5_rows", "merge_run", "read_h5_unit"]
