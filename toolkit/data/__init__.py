"""Source adapters for the ``prepare`` stage: one module per source format.

Each module exposes a pure ``prepare_<source>(...) -> list[Item]`` (lhotse-recipe style);
``bin/prepare`` wraps them, checks the audio (:mod:`toolkit.data.audio_check`) and writes
the manifest. Sources: :mod:`~toolkit.data.sakura` (official repository layout),
:mod:`~toolkit.data.mmau` (test-mini JSON), :mod:`~toolkit.data.mmar` (JSONL or JSON),
:mod:`~toolkit.data.seed_legacy` (manifests written by the earlier scripts),
:mod:`~toolkit.data.librispeech` (ASR items), :mod:`~toolkit.data.mmlu_speech` (MMLU spoken and
written twins), :mod:`~toolkit.data.timbre` (timbre range classes) and
:mod:`~toolkit.data.demo` (the synthetic set ``bin/demo`` generates).
"""
