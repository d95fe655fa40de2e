"""Load SALMONN from the four files users have: Whisper, BEATs, Vicuna and the SALMONN checkpoint.

Folder layout (``--model-path``)::

    salmonn/
      whisper/        openai/whisper-large-v2 as downloaded (config.json, weights, preprocessor_config.json)
      beats.pt        BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt ({"cfg": ..., "model": ...})
      vicuna/         lmsys/vicuna-13b-v1.1 (or a 7B Vicuna) with its tokenizer
      salmonn.pth     salmonn_v1.pth ({"model": state dict of the Q-Former, projection, LoRA})
      salmonn.json    optional: other paths and settings (below)

``--model-path`` may also name a JSON file instead of the folder. The JSON (``salmonn.json``)
uses the release's config key names; relative paths resolve against its folder; every key
is optional: ``whisper_path`` (``whisper``), ``beats_path`` (``beats.pt``), ``llama_path``
(``vicuna``), ``ckpt`` (``salmonn.pth``), ``lora_alpha`` (32), ``second_per_window`` and
``second_stride`` (0.333333), ``prompt_template`` (``"USER: {}\\nASSISTANT:"``), ``num_beams``
(4, the release's decoding; see the backend for how it meets ``--num-beams``).

Whisper and Vicuna load with ``from_pretrained`` (a missing weight raises); BEATs loads
strictly (:func:`~toolkit.models.salmonn.beats.load_beats`); the SALMONN checkpoint is mapped
onto the modules with the table below, and any key that maps to nothing, or any module
weight the checkpoint does not provide, raises :class:`CheckpointKeyError` naming them.

Key mapping (release name in ``salmonn.pth["model"]`` -> module parameter; ``N`` a layer index):

- ``speech_query_tokens``, ``ln_speech.*``, ``ln_audio.*``, ``speech_llama_proj.*`` -> the same names
- ``speech_Qformer.bert.embeddings.LayerNorm.*`` -> ``speech_Qformer.layernorm.*``
- ``speech_Qformer.bert.encoder.layer.N.attention.self.{query,key,value}.*``
  -> ``speech_Qformer.encoder.layer.N.attention.attention.*``
- ``speech_Qformer.bert.encoder.layer.N.crossattention.self.*``
  -> ``speech_Qformer.encoder.layer.N.crossattention.attention.*``
- the rest of ``speech_Qformer.bert.encoder.*`` (``attention.output``, ``crossattention.output``,
  ``intermediate_query``, ``output_query``) -> ``speech_Qformer.encoder.*``
- ``llama_model.base_model.model.model.layers.N.self_attn.{q,v}_proj.lora_{A,B}.default.weight``
  (as peft >= 0.3 saves them; the older ``lora_A.weight`` form too) -> the ``.default`` name

Ignored (buffers the release's training code saved with the weights; recomputed here):
``speech_Qformer.bert.embeddings.position_ids`` and ``llama_model...rotary_emb.inv_freq``.
The Q-Former sizes, query count and LoRA rank are read from the checkpoint's shapes
(:func:`qformer_spec`); the Q-Former's head count follows BERT (64-wide heads).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import Pathlike
from toolkit.models.salmonn.safe_load import file_record, load_weights_file

if TYPE_CHECKING:  # torch-free import of this module
    from toolkit.models.salmonn.model import QFormerSpec, SalmonnModel

log = logging.getLogger(__name__)

DEFAULT_PROMPT_TEMPLATE = "USER: {}\nASSISTANT:"

#: Release name -> module name; the first matching rule applies, keys no rule matches stay as they are.
_TO_MODULE: tuple[tuple[str, str], ...] = (
    (r"^speech_Qformer\.bert\.embeddings\.LayerNorm\.", "speech_Qformer.layernorm."),
    (r"^speech_Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.",
     r"speech_Qformer.encoder.layer.\1.\2.attention."),
    (r"^speech_Qformer\.bert\.encoder\.", "speech_Qformer.encoder."),
    (r"^(llama_model\..+\.lora_[AB])\.(?:default\.)?weight$", r"\1.default.weight"),
)
#: Module name -> release name (the inverse of the Q-Former rules; LoRA keys keep ``.default``, as peft saves them).
_TO_RELEASE: tuple[tuple[str, str], ...] = (
    (r"^speech_Qformer\.layernorm\.", "speech_Qformer.bert.embeddings.LayerNorm."),
    (r"^speech_Qformer\.encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\.",
     r"speech_Qformer.bert.encoder.layer.\1.\2.self."),
    (r"^speech_Qformer\.encoder\.", "speech_Qformer.bert.encoder."),
)
#: Release keys that are buffers, not weights.
_IGNORED = (re.compile(r"^speech_Qformer\.bert\.embeddings\.position_ids$"),
            re.compile(r"^llama_model\..+\.rotary_emb\.inv_freq$"))
#: Module weights the SALMONN checkpoint provides (the rest come from Whisper, BEATs and Vicuna).
_FROM_CHECKPOINT = re.compile(r"^(speech_Qformer\.|speech_query_tokens$|ln_speech\.|ln_audio\.|speech_llama_proj\.|"
                              r"llama_model\..+\.lora_[AB]\.)")


class CheckpointKeyError(ValueError):
    """A SALMONN checkpoint whose keys do not match the modules (nothing is loaded partially)."""


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def to_module_key(key: str) -> str:
    """The module parameter a release key loads into (see the module docstring's table)."""
    return _rename(key, _TO_MODULE)


def to_release_key(key: str) -> str:
    """The release name of a module parameter (inverse of :func:`to_module_key`)."""
    return _rename(key, _TO_RELEASE)


def checkpoint_keys(model: Any) -> list[str]:
    """Module names of the weights the SALMONN checkpoint must provide."""
    return [k for k in model.state_dict() if _FROM_CHECKPOINT.match(k)]


def checkpoint_state(model: Any) -> dict[str, Any]:
    """The checkpoint part of ``model`` under the release's names (what ``salmonn.pth["model"]`` holds)."""
    state = model.state_dict()
    return {to_release_key(k): state[k].detach().clone() for k in checkpoint_keys(model)}


def load_checkpoint_state(model: Any, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load a release-named state dict into ``model``, all or nothing.

    Args:
        model: a :class:`~toolkit.models.salmonn.model.SalmonnModel`.
        state: ``salmonn.pth["model"]``.
        source: name used in error messages.

    Raises:
        CheckpointKeyError: keys that map to no module weight (``unexpected``), or module
            weights the state does not provide (``missing``, by release name).
        RuntimeError: a weight of the wrong shape.
    """
    expected = set(checkpoint_keys(model))
    mapped: dict[str, Any] = {}
    unexpected = []
    for key, value in state.items():
        if any(p.match(key) for p in _IGNORED):
            continue
        target = to_module_key(key)
        if target in expected and target not in mapped:
            mapped[target] = value
        else:
            unexpected.append(key)
    missing = sorted(to_release_key(k) for k in expected - set(mapped))
    if unexpected or missing:
        raise CheckpointKeyError(f"{source}: keys do not match SALMONN; unexpected {sorted(unexpected)}, "
                                 f"missing {missing}")
    model.load_state_dict(mapped, strict=False)


def read_checkpoint(path: Pathlike, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The state dict of a SALMONN checkpoint file (``{"model": state_dict, ...}`` or a bare state dict).

    The file is read by :func:`~toolkit.models.salmonn.safe_load.load_weights_file`: training
    objects it pickles (the release's ``optimizer``, ``config``, ``scaler`` ...) stay inert and
    unused; only the tensors of ``"model"`` are taken.

    Args:
        path: ``salmonn.pth``.
        record: when given, ``record["salmonn.pth"]`` is set to what was skipped
            (:func:`~toolkit.models.salmonn.safe_load.file_record`).

    Raises:
        CheckpointKeyError: not a SALMONN checkpoint, or a ``"model"`` entry that is not a tensor.
    """
    import torch

    checkpoint, foreign = load_weights_file(path)
    if foreign:
        log.info("%s: read without importing %s (training state; only the 'model' tensors are used)", path,
                 ", ".join(foreign))
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "speech_query_tokens" not in state:
        raise CheckpointKeyError(f"{path}: not a SALMONN checkpoint (no 'speech_query_tokens' in its 'model')")
    objects = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if objects:
        raise CheckpointKeyError(f"{path}: 'model' entries that are not tensors: {objects[:5]}")
    if record is not None:
        record["salmonn.pth"] = file_record(path, foreign, checkpoint, used=["model"] if state is not checkpoint else None)
    return state


def qformer_spec(state: Mapping[str, Any]) -> QFormerSpec:
    """Q-Former sizes, query count and LoRA rank from a release-named state dict's shapes.

    Raises:
        CheckpointKeyError: a key the sizes are read from is absent.
    """
    from toolkit.models.salmonn.model import QFormerSpec

    prefix = "speech_Qformer.bert.encoder.layer."
    layers = {int(k[len(prefix):].split(".", 1)[0]) for k in state if k.startswith(prefix)}
    lora = [v for k, v in state.items() if re.search(r"\.lora_A(\.default)?\.weight$", k)]
    needed = [f"{prefix}0.intermediate_query.dense.weight", f"{prefix}0.crossattention.self.key.weight"]
    absent = [k for k in needed if k not in state] + ([] if lora else ["llama_model...lora_A.weight"])
    if absent:
        raise CheckpointKeyError(f"not a SALMONN checkpoint: missing {absent}")
    tokens = state["speech_query_tokens"]
    return QFormerSpec(hidden_size=int(tokens.shape[-1]), num_layers=len(layers),
                       intermediate_size=int(state[needed[0]].shape[0]), num_query_tokens=int(tokens.shape[1]),
                       encoder_width=int(state[needed[1]].shape[1]), lora_rank=int(lora[0].shape[0]))


@dataclass(frozen=True)
class SalmonnLayout:
    """Where the parts are and the release settings that are not weights (see the module docstring)."""

    whisper_path: Path
    beats_path: Path
    llama_path: Path
    ckpt: Path
    lora_alpha: float = 32.0
    second_per_window: float = 0.333333
    second_stride: float = 0.333333
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    num_beams: int = 4


_DEFAULT_PARTS = {"whisper_path": "whisper", "beats_path": "beats.pt", "llama_path": "vicuna", "ckpt": "salmonn.pth"}


def read_layout(model_path: Pathlike) -> SalmonnLayout:
    """Resolve ``--model-path`` (a folder, or a JSON file naming the parts) to a layout.

    Raises:
        FileNotFoundError: the path or a part is missing (all missing parts are listed).
        ValueError: an unknown JSON key, or a prompt template without exactly one ``{}``.
    """
    path = Path(model_path)
    if path.is_file():
        root, spec = path.parent, json.loads(path.read_text(encoding="utf-8"))
    elif path.is_dir():
        root = path
        settings = path / "salmonn.json"
        spec = json.loads(settings.read_text(encoding="utf-8")) if settings.is_file() else {}
    else:
        raise FileNotFoundError(f"SALMONN --model-path {path} does not exist (a folder with whisper/, beats.pt, "
                                "vicuna/, salmonn.pth, or a salmonn.json naming them)")
    known = {f.name for f in fields(SalmonnLayout)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"{path}: unknown SALMONN settings {unknown}; valid: {sorted(known)}")
    values: dict[str, Any] = {**_DEFAULT_PARTS, **spec}
    for key in _DEFAULT_PARTS:
        values[key] = root / Path(values[key]).expanduser()
    missing = [f"{k}={values[k]}" for k in _DEFAULT_PARTS if not values[k].exists()]
    if missing:
        raise FileNotFoundError(f"SALMONN parts not found: {', '.join(missing)}")
    layout = SalmonnLayout(**values)
    if layout.prompt_template.count("{}") != 1:
        raise ValueError(f"{path}: prompt_template needs exactly one '{{}}', got {layout.prompt_template!r}")
    return layout


@dataclass
class SalmonnProcessor:
    """The inputs side: Vicuna's tokenizer and Whisper's feature extractor."""

    tokenizer: Any
    feature_extractor: Any


def assemble(layout: SalmonnLayout, spec: QFormerSpec, dtype: Any = None,
             attn_implementation: str | None = None, llm_dtype: Any = None,
             record: dict[str, Any] | None = None) -> SalmonnModel:
    """Whisper, BEATs and Vicuna loaded from their files, with a fresh Q-Former, projection and LoRA.

    Args:
        layout: the parts.
        spec: Q-Former sizes and LoRA rank (usually :func:`qformer_spec` of the checkpoint).
        dtype: torch dtype of every weight (None: float32).
        attn_implementation: passed to the LLM's ``from_pretrained``.
        llm_dtype: the LLM's dtype (Vicuna and its LoRA) when it differs (the release: Vicuna in
            float16, the rest float32; see :mod:`~toolkit.models.salmonn.precision`).
        record: passed to :func:`~toolkit.models.salmonn.beats.load_beats` (what ``beats.pt`` pickles besides weights).

    Returns:
        The model in eval mode; only :func:`load_checkpoint_state` is left to do.

    Raises:
        ValueError: Whisper or Vicuna lack weights, or the parts' widths disagree with ``spec``.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM, WhisperModel

    from toolkit.models.salmonn.beats import load_beats
    from toolkit.models.salmonn.model import SalmonnModel

    dtype = dtype or torch.float32
    whisper, info = WhisperModel.from_pretrained(layout.whisper_path, dtype=dtype, local_files_only=True,
                                                 output_loading_info=True)
    absent = [k for k in info["missing_keys"] if k.startswith("encoder.")]
    if absent:
        raise ValueError(f"{layout.whisper_path}: Whisper encoder weights missing: {sorted(absent)[:5]}")
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    llm_dtype = llm_dtype or dtype
    llama, info = LlamaForCausalLM.from_pretrained(layout.llama_path, dtype=llm_dtype, local_files_only=True,
                                                   output_loading_info=True, **extra)
    if info["missing_keys"]:
        raise ValueError(f"{layout.llama_path}: LLM weights missing: {sorted(info['missing_keys'])[:5]}")
    lora = LoraConfig(r=spec.lora_rank, lora_alpha=layout.lora_alpha, lora_dropout=0.0,
                      target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", inference_mode=True)
    model = SalmonnModel(whisper.encoder, load_beats(layout.beats_path, record), get_peft_model(llama, lora), spec,
                         layout.second_per_window, layout.second_stride)
    model.to(dtype)
    model.llama_model.to(llm_dtype)
    return model.eval()


def load_salmonn(layout: SalmonnLayout, dtype: Any = None, attn_implementation: str | None = None,
                 llm_dtype: Any = None, record: dict[str, Any] | None = None
                 ) -> tuple[SalmonnModel, SalmonnProcessor]:
    """Build the model from its parts and load the SALMONN checkpoint strictly.

    ``dtype``, ``attn_implementation``, ``llm_dtype``: see :func:`assemble`; ``record``: filled
    with what ``salmonn.pth`` and ``beats.pt`` pickle besides weights (:func:`read_checkpoint`).

    Returns:
        The model (eval mode) and its processor.

    Raises:
        CheckpointKeyError: see :func:`load_checkpoint_state`.
    """
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    state = read_checkpoint(layout.ckpt, record)
    model = assemble(layout, qformer_spec(state), dtype, attn_implementation, llm_dtype, record)
    load_checkpoint_state(model, state, str(layout.ckpt))
    processor = SalmonnProcessor(
        tokenizer=AutoTokenizer.from_pretrained(layout.llama_path, local_files_only=True),
        feature_extractor=WhisperFeatureExtractor.from_pretrained(layout.whisper_path, local_files_only=True))
    log.info("loaded SALMONN from %s (%s)", layout.ckpt, model.spec)
    return model, processor


def check_slow_tokenizer(tokenizer: Any, llama_path: Pathlike, texts: list[str]) -> str:
    """Check the fast tokenizer against the release's slow one on ``texts``.

    The release tokenises with ``LlamaTokenizer.from_pretrained(vicuna, use_fast=False)``: for
    text without special-token strings that is sentencepiece's ``encode`` on the folder's
    ``tokenizer.model`` (transformers 4.28's ``LlamaTokenizer._tokenize``); transformers 5 has
    no slow Llama tokenizer left, so sentencepiece is called directly. The fast side is called
    as the backend calls it (``tokenizer(text, add_special_tokens=False)``).

    Args:
        tokenizer: the fast tokenizer the backend uses.
        llama_path: the Vicuna folder.
        texts: the pieces a run tokenises (:meth:`SalmonnBackend.probe_texts
            <toolkit.models.salmonn.backend.SalmonnBackend.probe_texts>`).

    Returns:
        What was checked, for the sidecar: ``fast == slow LlamaTokenizer on N prompt texts``, or
        ``not checked: ...`` when the folder has no ``tokenizer.model`` or sentencepiece is missing.

    Raises:
        ValueError: a text tokenises differently; names it and both id lists' starts.
    """
    model_file = Path(llama_path) / "tokenizer.model"
    if not model_file.is_file():
        return "not checked: no tokenizer.model in the LLM folder (the release's slow tokenizer reads it)"
    try:
        import sentencepiece
    except ImportError as exc:
        return f"not checked: sentencepiece cannot be imported ({exc})"
    slow = sentencepiece.SentencePieceProcessor(model_file=str(model_file))  # what LlamaTokenizer(use_fast=False) ran
    for text in texts:
        fast_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        slow_ids = list(slow.encode(text))
        if fast_ids != slow_ids:
            first = next((i for i, (f, s) in enumerate(zip(fast_ids, slow_ids)) if f != s),
                         min(len(fast_ids), len(slow_ids)))
            raise ValueError(f"{llama_path}: the fast tokenizer differs from the release's slow LlamaTokenizer on "
                             f"{text!r} from token {first}: fast {fast_ids[first:first + 8]}, slow "
                             f"{slow_ids[first:first + 8]} (prompts would not be the release's; fix the folder's "
                             "tokenizer files)")
    return f"fast == slow LlamaTokenizer on {len(texts)} prompt texts"


def check_vocabulary(tokenizer: Any, llm: Any, llama_path: Pathlike = "vicuna") -> dict[str, Any]:
    """The tokenizer's size against the LLM's embedding rows, and the release's ``[PAD]``.

    The release adds ``[PAD]`` to Vicuna's tokenizer and calls ``resize_token_embeddings(len(tokenizer))``:
    one more row in ``embed_tokens`` and ``lm_head``, randomly initialised (``salmonn.pth``
    holds no LLM embedding). That row is never fed for one clip, and its logit is random;
    no row is added here.

    Returns:
        ``{"tokenizer_tokens", "embedding_rows", "output_rows", "pad_token", "release"}``.

    Raises:
        ValueError: the tokenizer has ids beyond the embedding rows.
    """
    rows = int(llm.get_input_embeddings().weight.shape[0])
    output = llm.get_output_embeddings()
    out_rows = int(output.weight.shape[0]) if output is not None else rows
    size = len(tokenizer)
    if size > min(rows, out_rows):
        raise ValueError(f"{llama_path}: the tokenizer has {size} tokens but the LLM {rows} embedding rows and "
                         f"{out_rows} output rows (a tokenizer saved with added tokens next to an unresized model?)")
    return {"tokenizer_tokens": size, "embedding_rows": rows, "output_rows": out_rows, "pad_token": tokenizer.pad_token,
            "release": f"[PAD] added as id {size}, embeddings and lm_head resized to {size + 1} rows (the new row "
                       "random, not in salmonn.pth); not added here"}
