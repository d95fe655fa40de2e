"""``bin/infer``: run a model over a manifest, one appended row per (item, run), resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from toolkit.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_common_args, run_cli

DEFAULT_PROMPTS = {"reasoning": "reasoning-v1", "direct": "direct-v1"}

EPILOG = """examples:
  # the demo set with the simulated backend (no weights needed)
  bin/infer --manifest demo-out/data/manifest.jsonl --model simulated --mode reasoning --out runs/sim.jsonl

  # Qwen2-Audio on SAKURA, masked on the fly, shard 3 of 16 (what one array task runs)
  bin/infer --manifest manifests/sakura.jsonl --data-root /data/SAKURA/data \\
      --model qwen2-audio --model-path /models/Qwen2-Audio-7B-Instruct --mode reasoning \\
      --condition mask-p40 --shard 3/16 --batch-size 8 --run-dir runs/exp

  # a spoken wrong option mixed in at 0 dB, on the fly (equal to bin/perturb's file)
  bin/infer ... --condition inject-wrong-snr0 --tts espeak-ng     # or --hints DIR

  # the earlier scripts' prompt, five sampled runs
  bin/infer ... --prompt seed-reasoning --num-runs 5 --sample --temperature 0.7 --top-p 0.9

Rerunning the same command resumes: ids already in --out are skipped, a torn last line is
cut off. A result file has one writer at a time: a second process writing it fails at once,
naming the first one's pid and host. Exit codes: 0 all rows written without error, 1 some rows carry an error, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/infer`` argument parser."""
    from toolkit.perturb.hints import add_hint_args
    from toolkit.runs import MODES

    p = argparse.ArgumentParser(prog="infer", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--manifest", type=Path, required=True, help="manifest (JSONL)")
    io.add_argument("--data-root", type=Path, help="folder relative audio paths resolve against "
                    "(default: the manifest's folder)")
    out = io.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="result file (JSONL, appended; sidecar beside it)")
    out.add_argument("--run-dir", type=Path, help="write this shard's file of a run folder instead, where bin/launch "
                     "would (<run-dir>/<model label>/<dataset>/<condition>/<mode>/shard-K-of-N.jsonl), so bin/merge "
                     "checks it")
    out.add_argument("--explain", action="store_true", help="load the model, print what it would see and decode "
                     "with for the first item (chat text, token counts, effective generation config, dtypes, "
                     "adapters, stop ids, the official set-up and its source), and write nothing")
    io.add_argument("--dataset", help="with --run-dir: the dataset's name in the run folder (default: the "
                    "manifest's file name without .jsonl)")
    io.add_argument("--shard", default="0/1", help="K/N: run shard K (0-based) of N, round robin (default: 0/1)")
    io.add_argument("--condition", default="clean", help="audio condition applied on the fly (default: clean)")
    add_hint_args(p)
    m = p.add_argument_group("model")
    m.add_argument("--model", required=True, help="backend name (qwen2-audio, qwen2.5-omni, af3, af3-think, salmonn, "
                   "whisper, simulated)")
    m.add_argument("--model-path", help="local checkpoint folder or hub id (simulated: key=value parameters)")
    m.add_argument("--model-label", help="name written in rows (default: --model)")
    m.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                   help="auto: bf16 on GPU, fp32 on CPU")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    m.add_argument("--attn-implementation", help="passed to from_pretrained (sdpa, flash_attention_2 ...)")
    m.add_argument("--trust-remote-code", action="store_true", help="off unless asked")
    m.add_argument("--adapter", help="PEFT adapter folder loaded on top of the model")
    g = p.add_argument_group("prompt and generation")
    g.add_argument("--mode", required=True, choices=MODES)
    g.add_argument("--prompt", help="template name (default: reasoning-v1 / direct-v1; seed-reasoning, "
                   "seed-direct are the earlier scripts' prompts)")
    g.add_argument("--max-new-tokens", type=int, help="default: the template's (AF3 reasoning: at least 2048)")
    g.add_argument("--generation-defaults", choices=("clean", "checkpoint"), default="clean",
                   help="clean (default): every decoding field of the checkpoint's generation_config.json reset to "
                        "transformers' defaults, then the model's official values; checkpoint: the released config")
    g.add_argument("--min-new-tokens", type=int, default=0, help=argparse.SUPPRESS)
    g.add_argument("--num-runs", type=int, default=1, help="runs per item (needs --sample when > 1)")
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--num-beams", type=int, default=1)
    g.add_argument("--seed", type=int, default=0, help="seed of audio conditions and sampling (default: 0)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--score-options", action="store_true",
                   help="record the log-probability of each option letter (option_logprobs)")
    p.add_argument("--retry-errors", action="store_true",
                   help="run again the rows that carry an error (e.g. after a missing audio file was restored); "
                        "the new row is appended and supersedes the error row in merge, score and every reader")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    import threading

    from toolkit.answers import preload as preload_answer_rules
    from toolkit.infer import InferConfig, run_inference
    from toolkit.manifest import read_manifest
    from toolkit.models.base import GenerationSettings, LoadOptions
    from toolkit.models.registry import get_backend_class, load_backend
    from toolkit.perturb import parse_condition
    from toolkit.perturb.hints import hints_from_args
    from toolkit.perturb.inject import needs_hints
    from toolkit.prompts import get_prompt
    from toolkit.cli.checks import run_problems
    from toolkit.runs import RunLayout, Unit, parse_shard

    problems = run_problems(args)
    if args.dataset and not args.run_dir:
        problems.append("--dataset goes with --run-dir")
    if args.num_runs < 1 or args.batch_size < 1:
        problems.append("--num-runs and --batch-size must be >= 1")
    if args.num_runs > 1 and not args.sample:
        problems.append("--num-runs > 1 with greedy decoding gives identical runs; add --sample")
    try:
        shard = parse_shard(args.shard)
        parsed = parse_condition(args.condition)
        condition = parsed.name
        hints = hints_from_args(args)
        if hints is None and needs_hints([parsed]):
            problems.append(f"--condition {condition} needs spoken hints: --hints DIR or --tts espeak-ng")
        prompt = get_prompt(args.prompt or DEFAULT_PROMPTS[args.mode])
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        for problem in problems:
            print(f"infer: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if prompt.mode != args.mode:
        print(f"infer: error: prompt {prompt.name!r} is a {prompt.mode} prompt, not {args.mode}", file=sys.stderr)
        return EXIT_BAD_INPUT
    items = read_manifest(args.manifest)
    if not items:
        print(f"infer: error: --manifest {args.manifest}: no items", file=sys.stderr)
        return EXIT_BAD_INPUT
    applied = sorted({str(it.meta["condition"]) for it in items if "condition" in it.meta})
    if applied and condition != "clean":
        print(f"infer: error: {args.manifest} is a perturbed manifest (condition {', '.join(applied)}); "
              f"--condition {condition} would apply a second one. Use the clean manifest with --condition, "
              "or this one without it.", file=sys.stderr)
        return EXIT_BAD_INPUT
    budget = args.max_new_tokens or get_backend_class(args.model).default_max_new_tokens(prompt)
    settings = GenerationSettings(max_new_tokens=budget, do_sample=args.sample, temperature=args.temperature,
                                  top_p=args.top_p, num_beams=args.num_beams, min_new_tokens=args.min_new_tokens,
                                  defaults=args.generation_defaults)
    config = InferConfig(model=args.model, mode=args.mode, prompt=prompt, settings=settings, condition=condition,
                         num_runs=args.num_runs, batch_size=args.batch_size, seed=args.seed,
                         score_options=args.score_options, model_label=args.model_label)
    options = LoadOptions(dtype=args.dtype, device=args.device, attn_implementation=args.attn_implementation,
                          trust_remote_code=args.trust_remote_code, adapter=args.adapter)
    # nltk (answer extraction's stemmer) takes ~1.5 s to import: overlap it with model loading
    threading.Thread(target=preload_answer_rules, name="preload-answer-rules", daemon=True).start()
    out = args.out
    if args.run_dir is not None:
        dataset = args.dataset or args.manifest.name.removesuffix(".jsonl")
        try:
            unit = Unit(args.model_label or args.model, dataset, condition, args.mode, shards=shard[1])
        except ValueError as exc:
            print(f"infer: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        out = RunLayout(args.run_dir).shard_path(unit, shard[0])
    backend = load_backend(args.model, args.model_path, options)
    data_root = args.data_root if args.data_root is not None else args.manifest.parent
    if args.explain:
        return _explain(items, backend, config, data_root, hints)
    summary = run_inference(items, backend, config, out, data_root, shard=shard, manifest=args.manifest,
                            progress=not args.quiet, hints=hints, retry_errors=args.retry_errors)
    print(f"{out}: {summary.line()}")
    return EXIT_FAILED if summary.failed else EXIT_OK


def _explain(items: list, backend: Any, config: Any, data_root: Path, hints: Any) -> int:
    """Print :func:`toolkit.explain.explain_run` for the first item; exit 2 for an empty manifest."""
    from toolkit.explain import explain_run, render
    from toolkit.infer import Runner, with_hint_source

    if not items:
        print("infer: error: the manifest has no items to explain", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render(explain_run(Runner(backend, with_hint_source(config, hints), data_root, hints), items[0])))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/infer``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)
