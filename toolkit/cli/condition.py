"""``bin/condition``: ask again after an intervention on a baseline answer (own, truncated,
filler-corrupted reasoning, a suggested answer, shuffled options), one row per variant."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from toolkit.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    add_common_args,
    run_cli,
)
from toolkit.errors import InputError

log = logging.getLogger("toolkit.condition")

EPILOG = """examples:
  # the 2-step sanity check: own reasoning back in the model's turn; rows say prediction_changed
  bin/condition --manifest m.jsonl --results runs/base_reasoning.jsonl --model qwen2-audio \\
      --model-path /models/Qwen2-Audio-7B-Instruct --intervention own --out runs/own.jsonl

  # the earlier scripts' exact conditioned prompt, reasoning in the user turn
  bin/condition ... --intervention own --prompt seed-conditioned --answer-format user

  # early answering (k = 0..N sentences), filler (share in steps of 0.2, at the start and at random)
  bin/condition ... --intervention truncate --out runs/truncate.jsonl
  bin/condition ... --intervention filler-dots:step=0.2,position=start+random --out runs/dots.jsonl

  # a suggested wrong and right answer; options reordered twice (no reasoning needed)
  bin/condition ... --intervention suggested --out runs/suggested.jsonl
  bin/condition ... --intervention shuffle:count=2 --out runs/shuffle.jsonl

  # exactly as the original study built it, or as Lanham et al. did (the README's protocol table)
  bin/condition ... --intervention truncate --protocol seed --out runs/truncate-seed.jsonl
  bin/condition ... --intervention filler-dots --protocol lanham --out runs/dots-lanham.jsonl
  bin/condition ... --intervention truncate --protocol seed --reference full-reasoning --out runs/t.jsonl

  # mistakes written by an outside text LLM: produce the rewrite cache once on a big GPU, then reuse it
  bin/condition --manifest m.jsonl --results runs/base_reasoning.jsonl --protocol seed --model qwen2-audio \\
      --intervention rewrite-mistake:cache=runs/rewrites.jsonl --rewriter /models/Qwen2.5-7B-Instruct --rewrites-only
  bin/condition ... --protocol seed --intervention rewrite-mistake:cache=runs/rewrites.jsonl --out runs/mistake.jsonl

Interventions: own, truncate, filler-dots, filler-lorem, suggested, shuffle,
rewrite-paraphrase, rewrite-mistake (parameters as name:key=value,key=value). The baseline
is a reasoning-mode result file (toolkit rows or the earlier scripts' format), matched to
the manifest by id. Rerunning resumes (rows are keyed by id, run and variant). Exit codes:
0 ok, 1 some rows carry an error, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/condition`` argument parser."""
    from toolkit.interventions.protocol import CHOICES
    from toolkit.interventions.runner import PLACEMENTS

    p = argparse.ArgumentParser(prog="condition", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--manifest", type=Path, required=True, help="manifest (JSONL)")
    io.add_argument("--results", type=Path, required=True, help="baseline reasoning-mode result file")
    io.add_argument("--data-root", type=Path, help="folder relative audio paths resolve against "
                    "(default: the manifest's folder)")
    io.add_argument("--out", type=Path, help="result file (JSONL, appended; sidecar beside it); required "
                    "unless --rewrites-only")
    io.add_argument("--shard", default="0/1", help="K/N: run shard K (0-based) of N (default: 0/1)")
    io.add_argument("--condition", help="audio condition applied on the fly (default: the baseline rows' own; "
                    "rows of another condition are refused)")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="backend name; required unless --rewrites-only")
    m.add_argument("--model-path", help="local checkpoint folder or hub id (simulated: key=value parameters)")
    m.add_argument("--model-label", help="name written in rows (default: --model)")
    m.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    m.add_argument("--device", default="auto")
    m.add_argument("--adapter", help="PEFT adapter folder loaded on top of the model")
    i = p.add_argument_group("intervention")
    i.add_argument("--intervention", required=True, help="name[:key=value,...] (see below)")
    i.add_argument("--prompt", help="template (default: the protocol's conditioned template for reasoning "
                   "interventions, reasoning-v1 for suggested/shuffle; seed-conditioned is the earlier scripts')")
    i.add_argument("--score-options", action="store_true",
                   help="record each option letter's log-probability (implied by a protocol reading logprobs)")
    pr = p.add_argument_group("protocol: every choice of how variants are built and asked (see the README table)")
    pr.add_argument("--protocol", default="toolkit",
                    help="a preset, seed (the original study), lanham (Lanham et al. 2023) or toolkit (default), "
                         "optionally with choice=value overrides: seed:filler=per-word")
    for choice, values in CHOICES.items():
        pr.add_argument(f"--{choice}" if choice != "answer" else "--answer-format", dest=f"protocol_{choice}",
                        metavar="|".join(values) if choice != "sentences" else "LOW-HIGH|all",
                        help=f"override the preset's {choice} choice")
    pr.add_argument("--placement", choices=sorted(PLACEMENTS),
                    help="older name of --answer-format prefill (assistant) and user")
    i.add_argument("--max-new-tokens", type=int, help="default: the template's")
    i.add_argument("--generation-defaults", choices=("clean", "checkpoint"), default="clean",
                   help="clean (default): the checkpoint's decoding fields reset, the model's official values "
                        "applied; checkpoint: the released generation_config.json")
    i.add_argument("--seed", type=int, default=0, help="seed of variants and audio conditions (default: 0)")
    i.add_argument("--batch-size", type=int, default=8)
    r = p.add_argument_group("rewrites by an outside text LLM (rewrite-paraphrase, rewrite-mistake)")
    r.add_argument("--rewriter", help="causal LM folder or hub id producing the rewrites the cache lacks "
                   "(loaded, used and freed before the model under test is loaded)")
    r.add_argument("--rewriter-device", default="auto")
    r.add_argument("--rewriter-dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    r.add_argument("--rewriter-batch-size", type=int, default=8)
    r.add_argument("--rewrites-only", action="store_true", help="produce or extend the rewrite cache, then stop")
    p.add_argument("--retry-errors", action="store_true",
                   help="run again the rows that carry an error (e.g. after a missing audio file was restored); "
                        "the new row is appended and supersedes the error row in merge, score and every reader")
    add_common_args(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from toolkit.cli.checks import run_problems
    from toolkit.infer import InferConfig
    from toolkit.interventions import parse_intervention
    from toolkit.interventions.rewrite import RewriteIntervention, ensure_rewrites
    from toolkit.interventions.runner import (
        baseline_condition,
        intervention_mode,
        load_baselines,
        run_condition,
        runnable_baselines,
    )
    from toolkit.manifest import read_manifest
    from toolkit.models.base import GenerationSettings, LoadOptions
    from toolkit.models.registry import load_backend
    from toolkit.perturb import parse_condition
    from toolkit.prompts import get_prompt
    from toolkit.runs import parse_shard, select_shard

    problems = run_problems(args)
    if problems:
        for problem in problems:
            print(f"condition: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        intervention = parse_intervention(args.intervention)
        shard = parse_shard(args.shard)
        condition = None if args.condition is None else parse_condition(args.condition).name
        protocol = _protocol(args, intervention)
        prompt = get_prompt(protocol.conditioned_template if intervention.needs_reasoning
                            else args.prompt or "reasoning-v1")
    except ValueError as exc:
        print(f"condition: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.score_options and intervention.needs_reasoning and not prompt.letter_next:
        print(f"condition: error: --score-options reads the option letter at the first answer token; {prompt.name!r} "
              "does not ask for it there (its answer turn must end with '(', as lanham-two-turn's does)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    rewrites = isinstance(intervention, RewriteIntervention)
    if (args.rewriter or args.rewrites_only) and not rewrites:
        print("condition: error: --rewriter and --rewrites-only apply to rewrite-paraphrase and rewrite-mistake only",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.rewrites_only and (args.model is None or args.out is None):
        print("condition: error: --model and --out are required (unless --rewrites-only)", file=sys.stderr)
        return EXIT_BAD_INPUT
    wanted = "conditioned" if intervention.needs_reasoning else "reasoning or direct"
    if (prompt.mode == "conditioned") != intervention.needs_reasoning:
        print(f"condition: error: {intervention.name} needs a {wanted} prompt; {prompt.name!r} is {prompt.mode}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    items = read_manifest(args.manifest)
    if not items:
        print(f"condition: error: --manifest {args.manifest}: no items", file=sys.stderr)
        return EXIT_BAD_INPUT
    baselines = load_baselines(args.results, items)
    condition = _condition(args, condition, baseline_condition(baselines, args.results))
    if rewrites:
        if args.rewrites_only and args.model is None and protocol.reasoning == "family":
            print(f"condition: error: the {protocol.name} protocol reads the reasoning per model family: give --model",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        if args.out is not None:
            intervention = intervention.for_output(args.out)
        try:
            cache = intervention.cache_path
        except ValueError as exc:
            print(f"condition: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        written = ensure_rewrites(intervention, runnable_baselines(baselines, select_shard(items, *shard), intervention,
                                                                   protocol),
                                  protocol, args.rewriter, args.rewriter_device, args.rewriter_dtype,
                                  args.rewriter_batch_size)
        if args.rewrites_only:
            print(f"{cache}: {written} rewrites written")
            return EXIT_OK
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens or prompt.max_new_tokens,
                                  defaults=args.generation_defaults)
    config = InferConfig(model=args.model, mode=intervention_mode(prompt), prompt=prompt, settings=settings,
                         condition=condition, batch_size=args.batch_size, seed=args.seed,
                         model_label=args.model_label, score_options=args.score_options or protocol.reading == "logprobs")
    backend = load_backend(args.model, args.model_path, LoadOptions(dtype=args.dtype, device=args.device,
                                                                    adapter=args.adapter))
    data_root = args.data_root if args.data_root is not None else args.manifest.parent
    summary = run_condition(items, baselines, intervention, backend, config, args.out, data_root, protocol,
                            shard=shard, manifest=args.manifest, baseline_file=args.results, progress=not args.quiet,
                            retry_errors=args.retry_errors)
    print(f"{args.out}: {summary.line()}")
    return EXIT_FAILED if summary.failed else EXIT_OK


def _protocol(args: argparse.Namespace, intervention: Any) -> Any:
    """The run's protocol: the preset, its overrides (``--answer-format`` ...; ``--placement``
    and, for reasoning interventions, ``--prompt`` among them), resolved for ``--model``.

    Raises:
        ValueError: an unknown preset, choice or value, or a template of another answer format.
    """
    from toolkit.interventions.protocol import CHOICES, parse_protocol
    from toolkit.interventions.runner import PLACEMENTS

    overrides = {choice: getattr(args, f"protocol_{choice}") for choice in CHOICES}
    if args.placement is not None:
        if overrides["answer"] not in (None, PLACEMENTS[args.placement]):
            raise ValueError("--placement and --answer-format disagree; give --answer-format only")
        overrides["answer"] = PLACEMENTS[args.placement]
    if intervention.needs_reasoning and args.prompt:
        overrides["conditioned_template"] = args.prompt
    return parse_protocol(args.protocol, overrides).for_family(args.model or "")


def _condition(args: argparse.Namespace, asked: Optional[str], rows: str) -> str:
    """The condition the intervention runs under: the baseline rows' own, which ``--condition``
    may only repeat; an earlier-scripts label (``mask_p40``) is not a toolkit condition, so it
    needs ``--condition`` to say which one the audio gets.

    Raises:
        InputError: ``--condition`` differs from the rows', or the rows' is unknown and none given.
    """
    from toolkit.perturb import parse_condition

    try:
        own = parse_condition(rows).name
    except ValueError:
        if asked is None:
            raise InputError(f"the baseline rows are of condition {rows!r}, which is not a toolkit condition (an "
                             "earlier scripts' label?): give --condition with the one to apply to the audio",
                             args.results) from None
        log.warning("baseline rows of the earlier condition %r: running under --condition %s as given", rows, asked)
        return asked
    if asked is not None and asked != own:
        raise InputError(f"the baseline rows are of condition {own!r}, not --condition {asked!r}: answers from "
                         "other audio would be compared; give the baseline of that condition", args.results)
    return own


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/condition``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)
