"""``salmonn``: SALMONN (``tsinghua-ee/SALMONN`` ``salmonn_v1.pth``, 13B; or the 7B) from its official files.

``--model-path`` is a folder (or a JSON file) laid out as :mod:`toolkit.models.salmonn.loader`
describes: ``whisper/``, ``beats.pt``, ``vicuna/``, ``salmonn.pth``, optional ``salmonn.json``.

Prompt, as released: ``<s>`` then the template ``USER: {}\\nASSISTANT:`` filled with
``<Speech><SpeechHere></Speech> {prompt text}``; the text before and after ``<SpeechHere>`` is
tokenized separately without special tokens, and the clip's speech embeddings (88 for the
30 s window) are spliced in between. A prefilled assistant turn (``bin/condition``) follows
``ASSISTANT:`` after one space. Items without audio: ``USER: {prompt text}\\nASSISTANT:``,
no speech tokens (a batch never mixes both kinds).

Long audio: the release pads clips to at least 1 s and cuts them at 30 s (``audio[: sr * 30]``
in its inference code; it does not window longer audio). So here clips over 30 s are cut by
the runner and flagged (``flags.audio_truncated_from_s``), shorter ones are zero-padded to 1 s;
Whisper reads the clip padded to its 30 s window, BEATs the clip itself.

Batching: the prompt embeddings are left-padded with attention masks (position ids from the
mask); BEATs runs batched with a key padding mask and its padded tokens are zeroed, so each
row equals the clip run alone (the release pads on the right and runs one clip at a time).

Decoding: the release decodes with 4 beams (``decode_config.yaml``: ``num_beams: 4``, no
sampling, up to 200 new tokens, stop at ``</s>``). The CLI's default ``--num-beams 1`` cannot
be told from an explicit one, so: a greedy one-beam request (the default) decodes with the
layout's ``num_beams`` (4 unless ``salmonn.json`` sets it; ``"num_beams": 1`` there gives
greedy decoding); ``--num-beams N`` with N > 1 decodes with N beams; ``--sample`` samples as
asked. The sidecar's model facts record the layout's value (``num_beams_by_default``).
Option log-probabilities (``--score-options``) come from one forward pass over the prompt, so
they do not depend on the beams. Every other value of ``decode_config.yaml`` (``do_sample:
False``, ``min_length: 1``, ``repetition_penalty: 1.0``, ``length_penalty: 1.0``; ``temperature:
1.0`` and ``top_p: 0.9`` act only when sampling) is transformers' default or
:attr:`SalmonnBackend.official_generation` (``min_new_tokens=1``: the release generates from
``inputs_embeds``, so ``min_length=1`` counts new tokens); the release's ``max_new_tokens:
200`` is **not** applied: the prompt template's budget is (recorded as
``official_max_new_tokens``). Its extra stopping criterion (token 2 at the end of the first
row) only repeats ``</s>``, Vicuna's end token.

Precision: :mod:`toolkit.models.salmonn.precision` (``--dtype auto`` is the release's float16
Vicuna with float32 encoders, Q-Former and projection, under float16 autocast; recorded as
``precision`` and ``autocast``).

Tokenizer: the release uses ``LlamaTokenizer.from_pretrained(vicuna, use_fast=False)`` (sentencepiece
on ``tokenizer.model``), adds ``[PAD]`` and resizes Vicuna's embeddings and output layer to
the new length (``resize_token_embeddings``: the new rows are random and not in
``salmonn.pth``). Here the fast tokenizer (``AutoTokenizer``) is checked against
sentencepiece on the prompt pieces a run tokenises (:meth:`SalmonnBackend.probe_texts`,
:func:`~toolkit.models.salmonn.loader.check_slow_tokenizer`); a mismatch stops the load. No
``[PAD]`` row is added: ``[PAD]`` only pads the release's batched prompts and training targets,
never a one-clip prompt, so the token logits are the release's without its randomly
initialised ``[PAD]`` logit. The pad id (Vicuna's ``generation_config`` ``pad_token_id``, else
``</s>``) only pads finished rows/beams; it is not a stop token (``<unk>``, id 0, would not
stop the release either).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from toolkit.audio import TARGET_SR
from toolkit.errors import Pathlike
from toolkit.manifest import Item, letter
from toolkit.models import tiny
from toolkit.models.base import Generation, GenerationSettings, LoadOptions, Request
from toolkit.models.hf_chat import HFChatBackend, Prepared, dtype_names, resolve_device
from toolkit.models.registry import register_backend
from toolkit.models.salmonn.loader import (
    SalmonnLayout,
    SalmonnProcessor,
    check_slow_tokenizer,
    check_vocabulary,
    load_salmonn,
    read_layout,
)
from toolkit.models.salmonn.precision import (
    RELEASE_AUTOCAST,
    RELEASE_PARTS,
    PrecisionPlan,
)

log = logging.getLogger(__name__)

SPEECH_PLACEHOLDER = "<SpeechHere>"
SPEECH_PROMPT = "<Speech><SpeechHere></Speech> {}"
MIN_SECONDS = 1.0


@register_backend
class SalmonnBackend(HFChatBackend):
    """SALMONN through :class:`~toolkit.models.salmonn.model.SalmonnModel`."""

    name = "salmonn"
    model_class = "SalmonnModel"
    max_audio_seconds: float | None = 30.0
    # the release's min_length=1 over inputs_embeds: no end token at the first step
    official_generation: ClassVar[dict[str, Any]] = {"min_new_tokens": 1}
    official_source = ("bytedance/SALMONN (branch salmonn) configs/decode_config.yaml 'generate', read by "
                       "models/salmonn.py generate (cli_inference.py): num_beams 4 (the layout's num_beams), do_sample "
                       "False, min_length 1 (min_new_tokens 1: generation from inputs_embeds), max_new_tokens 200 "
                       "(not applied: the prompt template's budget), repetition_penalty 1.0 and length_penalty 1.0 "
                       "(transformers' defaults), temperature 1.0 and top_p 0.9 (sampling only); stop at </s> (2); "
                       "Vicuna float16, the rest float32, float16 autocast")
    #: ``configs/decode_config.yaml`` ``generate:`` as released (recorded in ``describe()``)
    official_decode_config: ClassVar[dict[str, Any]] = {
        "max_new_tokens": 200, "num_beams": 4, "do_sample": False, "min_length": 1, "temperature": 1.0, "top_p": 0.9,
        "repetition_penalty": 1.0, "length_penalty": 1.0}
    #: the release's budget; not applied (the prompt template's ``max_new_tokens`` is the run's)
    official_max_new_tokens = 200
    channel_policy = "first"  # the release reads stereo files as audio[:, 0] (utils.py, dataset.py)
    audio_tokens_per_second = 88 / 30.0  # only sorts batches: the audio always takes 88 positions

    def __init__(self, model: Any, processor: SalmonnProcessor, model_path: str, device: str, dtype: Any,
                 layout: SalmonnLayout) -> None:
        super().__init__(model, processor, model_path, device, dtype)
        self.layout = layout
        self.precision = PrecisionPlan(dtype, dtype, {"enabled": False, "why": "one dtype throughout"})
        self.tokenizer_check = "not checked"
        self.vocabulary: dict[str, Any] = {}
        self.checkpoint_objects: dict[str, Any] = {}
        eos = model.generation_config.eos_token_id
        # only the end token stops: the pad id (Vicuna's generation_config has 0, <unk>) only pads finished rows
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.pad_id is None:  # no pad id anywhere: finished beams are padded with </s>
            self.pad_id = self.tokenizer.eos_token_id

    @property
    def autocast(self) -> dict[str, Any]:
        """``{"enabled", "device", "dtype", "why"}`` of the forward (see :mod:`~toolkit.models.salmonn.precision`)."""
        return self.precision.autocast

    @classmethod
    def load(cls, model_path: str | None, options: LoadOptions) -> SalmonnBackend:
        """Load the four parts (see :func:`~toolkit.models.salmonn.loader.read_layout`).

        Raises:
            ValueError: no ``model_path``, or ``--adapter`` (the LoRA is the checkpoint's).
            FileNotFoundError: a part is missing.
            toolkit.models.salmonn.loader.CheckpointKeyError: checkpoint keys do not match.
        """
        if not model_path:
            raise ValueError("model 'salmonn' needs --model-path (a folder with whisper/, beats.pt, vicuna/, "
                             "salmonn.pth, or a salmonn.json naming them)")
        if options.adapter:
            raise ValueError("salmonn takes no --adapter: its LoRA weights are part of salmonn.pth")
        from toolkit.models.salmonn import precision

        layout = read_layout(model_path)
        device = resolve_device(options.device)
        plan = precision.plan(options.dtype, device)  # auto: the release's mix (float16 Vicuna, float32 rest)
        record: dict[str, Any] = {}
        model, processor = load_salmonn(layout, plan.dtype, options.attn_implementation, plan.llm_dtype, record)
        model.to(device)
        log.info("loaded SALMONN from %s on %s (%s, LLM %s; autocast: %s)", model_path, device, plan.dtype,
                 plan.llm_dtype, plan.autocast["why"])
        if plan.fallback:
            log.warning("SALMONN: %s", plan.autocast["why"])
        backend = cls(model, processor, model_path, device, plan.dtype, layout)
        backend.precision = plan
        backend.checkpoint_objects = record
        backend.vocabulary = check_vocabulary(backend.tokenizer, model.llama_model, layout.llama_path)
        backend.tokenizer_check = check_slow_tokenizer(backend.tokenizer, layout.llama_path, backend.probe_texts())
        return backend

    def probe_texts(self) -> list[str]:
        """The text pieces a run tokenises, for the tokenizer check: for a sample question with four
        options under every registered prompt template (conditioned ones with a sample reasoning
        placed as the template places it), the prompt before and after the speech embeddings and
        the text-only prompt; then the option letters as option scoring encodes them, and ``(A)``...
        Distinct, in order, none empty.
        """
        from toolkit.prompts import PROMPTS, render_user_text

        item = Item(id="probe", dataset="probe", audio="probe.wav", question="Which animal makes this sound?",
                    choices=["a dog", "a cat", "a cow", "a bird"], answer=0)
        texts: list[str] = []
        for template in PROMPTS.values():
            user, prefix, turns = render_user_text(template, item), template.answer_prefix, ()
            if template.continuation is not None:
                user, prefix, turns = template.place(user, "The clip is a dog barking twice, so the answer is A.")
            for audio in (np.zeros(1, np.float32), None):
                request = Request(item=item, run=0, user_text=user, audio=audio, assistant_prefix=prefix, turns=turns)
                texts.extend(self.prompt_parts(request))
        letters = [letter(i) for i in range(len(item.choices or ()))]
        return list(dict.fromkeys(t for t in [*texts, *letters, *(f"({x})" for x in letters)] if t))

    # ---- prompts ------------------------------------------------------------------------
    def prompt_parts(self, request: Request) -> tuple[str, str]:
        """The prompt text before and after the speech embeddings (after is everything for text-only items).

        SALMONN's template has one user turn: further turns (``two-turn``) are joined to the user
        text one per line, as the original faithfulness study fed them to SALMONN.
        """
        text = "\n".join([request.user_text.strip(), *(turn for _, turn in request.turns)]).strip()
        if request.audio is not None:
            prompt = self.layout.prompt_template.format(SPEECH_PROMPT.format(text))
            before, after = prompt.split(SPEECH_PLACEHOLDER, 1)
        else:
            before, after = "", self.layout.prompt_template.format(text)
        if request.assistant_prefix:
            after += " " + request.assistant_prefix
        return before, after

    def chat_text(self, request: Request) -> str:
        """The prompt the model reads, with ``<SpeechHere>`` where the speech embeddings go."""
        before, after = self.prompt_parts(request)
        middle = SPEECH_PLACEHOLDER if request.audio is not None else ""
        return f"{self.tokenizer.bos_token or ''}{before}{middle}{after}"

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prepare(self, requests: Sequence[Request]) -> Prepared:
        """Token ids around the speech, Whisper features and BEATs fbanks of a batch, on the CPU.

        Raises:
            ValueError: a batch mixing items with and without audio.
        """
        import torch

        from toolkit.models.salmonn.fbank import beats_fbank

        with_audio = [r.audio is not None for r in requests]
        if any(with_audio) and not all(with_audio):
            raise ValueError("a batch mixes items with and without audio")
        parts = [self.prompt_parts(r) for r in requests]
        inputs: dict[str, Any] = {"before": [[self.tokenizer.bos_token_id] + self._ids(b) for b, _ in parts],
                                  "after": [self._ids(a) for _, a in parts]}
        if all(with_audio):
            clips = [_release_clip(r.audio) for r in requests]
            inputs["input_features"] = self.processor.feature_extractor(
                clips, sampling_rate=TARGET_SR, return_tensors="pt")["input_features"]
            fbanks = [torch.from_numpy(beats_fbank(clip)) for clip in clips]
            inputs["fbank_lengths"] = torch.tensor([len(f) for f in fbanks])
            inputs["fbank"] = torch.nn.utils.rnn.pad_sequence(fbanks, batch_first=True)
        return Prepared(inputs=inputs, requests=list(requests), prompt_length=0)

    # ---- generation ---------------------------------------------------------------------
    def _prompt_embeddings(self, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """Left-padded prompt embeddings with the speech spliced in, their attention mask and position ids."""
        import torch

        speech = None
        if "fbank" in inputs:
            speech = self.model.encode_audio(inputs["input_features"], inputs["fbank"], inputs["fbank_lengths"])
        rows = []
        for index, (before, after) in enumerate(zip(inputs["before"], inputs["after"])):
            pieces = [self.model.embed_tokens(torch.tensor(before, dtype=torch.long, device=self.device))]
            if speech is not None:
                pieces.append(speech[index])
            pieces.append(self.model.embed_tokens(torch.tensor(after, dtype=torch.long, device=self.device)))
            rows.append(torch.cat(pieces))
        length = max(len(row) for row in rows)
        embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for index, row in enumerate(rows):
            embeds[index, length - len(row):] = row
            mask[index, length - len(row):] = 1
        return embeds, mask, (mask.cumsum(-1) - 1).clamp(min=0)

    def decoding(self, settings: GenerationSettings) -> Any:
        """The generation config: the settings, with the layout's beams for a default greedy request."""
        if not settings.do_sample and settings.num_beams == 1:
            settings = dataclasses.replace(settings, num_beams=self.layout.num_beams)
        return super().decoding(settings)

    def generate(self, prepared: Prepared, settings: GenerationSettings, score_options: bool = False) -> list[Generation]:
        """Generate for a prepared batch; see :meth:`Backend.generate` and the module docstring (beams)."""
        import torch

        inputs = self._to_device(prepared.inputs)
        if settings.do_sample:
            torch.manual_seed(settings.seed)
        with torch.inference_mode(), self.precision.context():  # the release: audio encoding and generate under autocast
            embeds, mask, positions = self._prompt_embeddings(inputs)
            embeds = embeds.to(self.model.llama_model.dtype)  # as the release's autocast hands them to Vicuna
            out = self.model.generate(embeds, mask, generation_config=self.decoding(settings))
            gens = self._generations(out.tolist())
            if score_options:
                last = self.model(embeds, mask, positions)[:, -1]
                for row, gen in enumerate(gens):
                    gen.option_logprobs = self._option_logprobs(last[row], prepared.requests[row])
        return gens

    def describe(self) -> dict[str, Any]:
        """Parts, dtype, device, prompt template, decoding default and audio handling, and the
        official set-up as applied: ``precision`` (the plan, dtype per part next to the
        release's, autocast or the fallback and why), ``autocast``, ``tokenizer_check``,
        ``vocabulary`` (tokenizer size, embedding rows, pad id, the release's ``[PAD]``),
        ``checkpoint_objects`` (what ``salmonn.pth``/``beats.pt`` pickle besides weights and were
        skipped), ``official_decoding`` and ``official_max_new_tokens``."""
        layout = self.layout
        plan = self.precision
        return {"backend": self.name, "model_class": self.model_class, "model_path": self.model_path,
                "parts": {"whisper": str(layout.whisper_path), "beats": str(layout.beats_path),
                          "llm": str(layout.llama_path), "checkpoint": str(layout.ckpt)},
                "revision": getattr(self.model.config, "_commit_hash", None),
                "dtype": str(self.dtype) if plan.plan == "one dtype" else "release mix (float16 Vicuna, float32 rest)",
                "device": self.device,
                "prompt_template": layout.prompt_template, "num_beams_by_default": layout.num_beams,
                "speech_tokens": self.model.speech_tokens(), "max_audio_seconds": self.max_audio_seconds,
                "precision": {"plan": plan.plan, "parts": self.module_dtypes(), "release_parts": dict(RELEASE_PARTS),
                              "autocast": self.autocast, "release_autocast": RELEASE_AUTOCAST,
                              "fallback": plan.fallback},
                "autocast": self.autocast, "tokenizer_check": self.tokenizer_check, "vocabulary": self.vocabulary,
                "stop_ids": sorted(self.stop_ids), "pad_id": self.pad_id,
                "checkpoint_objects": self.checkpoint_objects,
                "official_decoding": dict(self.official_decode_config),
                "official_max_new_tokens": self.official_max_new_tokens,
                "budget": "the prompt template's max_new_tokens (the release's 200 is not applied)",
                "stereo": "first channel (the release's audio[:, 0])"}

    def module_dtypes(self) -> dict[str, str]:
        """The dtype of each part as the release names them: ``llama`` (Vicuna without its LoRA),
        ``lora``, ``whisper``, ``beats``, ``qformer`` (with its query tokens and the LayerNorms
        ``ln_speech``/``ln_audio`` in front of it) and ``projection`` (``speech_llama_proj``)."""
        prefixes = {"whisper": ("speech_encoder.",), "beats": ("beats.",), "projection": ("speech_llama_proj.",),
                    "qformer": ("speech_Qformer.", "speech_query_tokens", "ln_speech.", "ln_audio."),
                    "llama": ("llama_model.",)}
        found: dict[str, list] = {}
        for name, param in self.model.named_parameters():
            part = next(key for key, starts in prefixes.items() if name.startswith(starts))
            if part == "llama" and ".lora_" in name:
                part = "lora"
            found.setdefault(part, []).append(param)
        order = ("llama", "lora", "whisper", "beats", "qformer", "projection")
        return {part: dtype_names(found[part]) for part in order if part in found}

    def token_counts(self, request: Request) -> dict[str, int]:
        """Prompt positions of ``request``: text tokens before and after the speech, and the speech
        embeddings spliced between them."""
        inputs = self.prepare([request]).inputs
        text = len(inputs["before"][0]) + len(inputs["after"][0])
        audio = self.model.speech_tokens() if "fbank" in inputs else 0
        return {"prompt": text + audio, "audio": audio, "text": text}

    @classmethod
    def build_tiny(cls, folder: Pathlike, **sizes: Any) -> Path:
        """Save a tiny random SALMONN as the release's four parts (see :mod:`toolkit.models.salmonn.loader`).

        Files:

        - ``whisper/``: a tiny ``whisper`` folder (:meth:`WhisperBackend.build_tiny
          <toolkit.models.whisper.WhisperBackend.build_tiny>`; ``WhisperModel`` reads its
          encoder, ``WhisperFeatureExtractor`` its ``preprocessor_config.json``).
        - ``beats.pt``: ``{"cfg", "model", "label_dict"}`` like
          ``BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt`` (release parameter names, a 5-class
          ``predictor``; real widths 512/768 shrunk to 32/``beats_dim``).
        - ``vicuna/``: ``LlamaForCausalLM`` + ``LlamaTokenizer`` (``<unk>``/``<s>``/``</s>`` = 0/1/2,
          256 byte-fallback tokens, then a BPE trained on the built-in sentences with Llama's
          ``▁`` word prefix) and a generation config like Vicuna's (eos 2, pad 0).
        - ``salmonn.pth``: ``{"model": ...}`` with the Q-Former (2 layers, ``qformer_hidden``
          wide), query token, LayerNorms, projection and LoRA (r=8; B drawn non-zero so it
          changes the logits) under the release's names, plus the buffers the release's files
          also carry (``speech_Qformer.bert.embeddings.position_ids``, per-layer
          ``rotary_emb.inv_freq``).

        Args:
            folder: output folder (created; existing files are overwritten).
            **sizes: ``size`` (a :data:`~toolkit.models.tiny.SIZES` name) and overrides of
                ``hidden_size`` (LLM width, heads of 16), ``num_layers`` (LLM layers),
                ``audio_d_model`` and ``audio_layers`` (Whisper encoder), ``beats_dim`` (BEATs
                width, 4 heads), ``qformer_hidden`` (a multiple of 64: BERT's head size), ``seed``.

        Returns:
            ``Path(folder)``, read by :func:`~toolkit.models.salmonn.loader.read_layout`.

        Raises:
            ValueError: an unknown size or option (:func:`~toolkit.models.tiny.resolve_sizes`).

        Example:
            >>> salmonn = load_backend("salmonn", str(build_tiny("salmonn", tmp_path / "s")))  # doctest: +SKIP
        """
        import torch
        from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

        from toolkit.models.salmonn.beats import BEATs, BEATsConfig
        from toolkit.models.salmonn.loader import assemble, checkpoint_state
        from toolkit.models.salmonn.model import QFormerSpec
        from toolkit.models.whisper import WhisperBackend

        s = tiny.resolve_sizes(cls.name, sizes, (*tiny.AUDIO_LM_SIZES, "beats_dim", "qformer_hidden"))
        hidden, beats_dim, head_dim = s["hidden_size"], s["beats_dim"], 16
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        layout = SalmonnLayout(whisper_path=path / "whisper", beats_path=path / "beats.pt",
                               llama_path=path / "vicuna", ckpt=path / "salmonn.pth")
        WhisperBackend.build_tiny(layout.whisper_path, audio_d_model=s["audio_d_model"],
                                  audio_layers=s["audio_layers"], seed=s["seed"])
        torch.manual_seed(s["seed"])
        beats = BEATsConfig(embed_dim=32, encoder_layers=2, encoder_embed_dim=beats_dim,
                            encoder_ffn_embed_dim=2 * beats_dim, encoder_attention_heads=4, finetuned_model=True,
                            predictor_class=5)
        torch.save({"cfg": beats.to_dict(), "model": BEATs(beats).state_dict(),
                    "label_dict": {i: f"/m/tiny{i}" for i in range(5)}}, layout.beats_path)
        tok = _tiny_vicuna_tokenizer()
        llama = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=s["num_layers"],
            num_attention_heads=hidden // head_dim, num_key_value_heads=hidden // head_dim,
            max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
            initializer_range=0.2)).eval()
        tiny.save_tiny(layout.llama_path, "Vicuna", llama, tok,
                       generation=GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=False))

        spec = QFormerSpec(hidden_size=s["qformer_hidden"], num_layers=2, intermediate_size=2 * s["qformer_hidden"],
                           num_query_tokens=1, encoder_width=s["audio_d_model"] + beats_dim, lora_rank=8)
        model = assemble(layout, spec)
        tiny.nonzero_lora(model)
        state = checkpoint_state(model)
        state["speech_Qformer.bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        for layer in range(s["num_layers"]):
            state[f"llama_model.base_model.model.model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
        torch.save({"model": state}, layout.ckpt)
        log.info("saved tiny SALMONN (%d parameters) to %s", sum(p.numel() for p in model.parameters()), path)
        return path


def _tiny_vicuna_tokenizer() -> Any:
    """A ``LlamaTokenizer`` like Vicuna's: ``<unk>``/``<s>``/``</s>`` = 0/1/2, 256 byte-fallback tokens, then BPE."""
    from tokenizers import pre_tokenizers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"]
    trained, merges = tiny.train_bpe(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"), specials,
                                     ["USER: <Speech><SpeechHere></Speech> Describe it.\nASSISTANT:"])
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(trained.items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    return LlamaTokenizer(vocab=vocab, merges=merges)


def _release_clip(audio: np.ndarray) -> np.ndarray:
    """A clip as the release feeds it: zero-padded to at least 1 s, cut at 30 s."""
    clip = np.asarray(audio, dtype=np.float32)[: int(SalmonnBackend.max_audio_seconds * TARGET_SR)]
    return np.pad(clip, (0, max(0, int(MIN_SECONDS * TARGET_SR) - clip.size)))

