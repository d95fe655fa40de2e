"""``bin/finetune``: LoRA-fine-tune an audio-LLM's text decoder on a manifest, evaluating on a separate split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from toolkit.cli.common import EXIT_FAILED, EXIT_OK, add_common_args, run_cli

if TYPE_CHECKING:
    from toolkit.finetune import FinetuneConfig

EPILOG = """examples:
  # LoRA r=8 on the attention projections of Qwen2-Audio's text decoder, 3 epochs
  bin/finetune --model qwen2-audio --model-path /models/Qwen2-Audio-7B-Instruct \\
      --train manifests/train.jsonl --eval manifests/dev.jsonl --out ft/qwen2-audio-lora

  # other targets and rank, larger effective batch; then a merged full model folder
  bin/finetune ... --lora-r 16 --lora-alpha 32 --targets q_proj,v_proj,gate_proj,up_proj,down_proj \\
      --batch-size 4 --grad-accum 8 --lr 2e-4 --epochs 5 --merge

  # continue after a preemption or a kill, from the last checkpoint
  bin/finetune ... --resume

  # evaluate the result like any other model
  bin/infer --manifest manifests/test.jsonl --model qwen2-audio --model-path /models/Qwen2-Audio-7B-Instruct \\
      --adapter ft/qwen2-audio-lora/best --mode direct --out runs/ft-test.jsonl

Writes into --out: run.json (the settings, checked on --resume), metrics.jsonl (loss and lr per
optimizer step, eval loss and accuracy per epoch), loss.png (each with a sidecar),
checkpoints/ (adapter, optimizer, scheduler, RNG states; every --save-every steps and at each
epoch end), last/ and best/ (PEFT adapters for bin/infer --adapter) and with --merge merged/
(the base model with the best adapter merged in, loadable with from_pretrained).

Items: mcq and classify items are trained on the --prompt (a direct template) with the option
letter as the answer; asr items on --asr-prompt with the reference as the answer. The loss is
on the answer tokens only. Eval accuracy = the option letter with the highest logit at the
answer position (one forward pass per batch, no generation).
Every argument, item and audio file is checked before the model is loaded; ids or audio files
in both --train and --eval are refused unless --allow-overlap.
Exit codes: 0 trained (or stopped by --stop-after-steps, checkpointed), 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/finetune`` argument parser."""
    from toolkit.finetune.lora import DEFAULT_TARGETS

    p = argparse.ArgumentParser(prog="finetune", description=__doc__.strip().split(": ", 1)[1], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    io = p.add_argument_group("input and output")
    io.add_argument("--train", type=Path, required=True, help="training manifest (JSONL)")
    io.add_argument("--eval", type=Path, required=True, help="evaluation manifest: a separate split")
    io.add_argument("--data-root", type=Path, help="folder relative audio paths resolve against "
                    "(default: each manifest's folder)")
    io.add_argument("--out", type=Path, required=True, help="run folder")
    io.add_argument("--allow-overlap", action="store_true",
                    help="train even when ids or audio files are in both --train and --eval")
    io.add_argument("--resume", action="store_true",
                    help="continue from the last checkpoint in --out (same settings), if there is one")
    io.add_argument("--merge", action="store_true", help="after training, write --out/merged: the base model with "
                    "the best adapter merged in")
    j = p.add_argument_group("as a cluster job (requeued after a timeout or preemption, resuming each time)")
    j.add_argument("--executor", choices=("slurm", "local"),
                   help="submit the run as a job instead of training in this process")
    j.add_argument("--profile", type=Path, help="cluster profile (slurm/profiles/*.yaml); models.<--model> applies")
    j.add_argument("--wait", action="store_true", help="with --executor slurm: block until the job ends")
    m = p.add_argument_group("model")
    m.add_argument("--model", required=True, help="backend name (qwen2-audio)")
    m.add_argument("--model-path", required=True, help="local checkpoint folder or hub id")
    m.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                   help="base weights (auto: fp32; the LoRA weights are always fp32)")
    m.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16", "fp16"),
                   help="accelerate's autocast (auto: bf16 on GPU, no on CPU)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    lo = p.add_argument_group("LoRA")
    lo.add_argument("--lora-r", type=int, default=8, help="rank (default: 8)")
    lo.add_argument("--lora-alpha", type=float, default=32.0, help="scaling numerator (default: 32)")
    lo.add_argument("--lora-dropout", type=float, default=0.05, help="(default: 0.05)")
    lo.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                    help="comma-separated linear layers of the language model (default: %(default)s); "
                    "the audio encoder is never adapted")
    lo.add_argument("--train-projector", action="store_true",
                    help="also train the audio-to-text projector (frozen by default; saved with the adapter)")
    t = p.add_argument_group("training")
    t.add_argument("--prompt", default="direct-v1", help="direct template of mcq/classify items (default: direct-v1)")
    t.add_argument("--asr-prompt", default="asr-v1", help="template of asr items (default: asr-v1)")
    t.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default: 1e-4)")
    t.add_argument("--epochs", type=int, default=3, help="(default: 3)")
    t.add_argument("--batch-size", type=int, default=4, help="items per forward pass (default: 4)")
    t.add_argument("--grad-accum", type=int, default=1, help="forward passes per optimizer step (default: 1)")
    t.add_argument("--eval-batch-size", type=int, default=8, help="(default: 8)")
    t.add_argument("--warmup-ratio", type=float, default=0.05,
                   help="share of steps warming up before the cosine decay (default: 0.05)")
    t.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default: 0)")
    t.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping, 0 = none (default: 1)")
    t.add_argument("--save-every", type=int, default=100,
                   help="checkpoint every N optimizer steps, 0 = only at epoch ends (default: 100)")
    t.add_argument("--stop-after-steps", type=int, metavar="N",
                   help="stop after N optimizer steps of this call, checkpointed (continue with --resume)")
    t.add_argument("--seed", type=int, default=0, help="data order, LoRA initialisation, dropout (default: 0)")
    add_common_args(p)
    return p


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The :class:`~toolkit.finetune.config.FinetuneConfig` the parsed arguments describe."""
    from toolkit.finetune import FinetuneConfig, LoraSettings

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    lora = LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, targets=targets,
                        train_projector=args.train_projector)
    return FinetuneConfig(
        model=args.model, model_path=str(args.model_path), train_manifest=str(args.train),
        eval_manifest=str(args.eval), out=str(args.out),
        data_root=None if args.data_root is None else str(args.data_root), prompt=args.prompt,
        asr_prompt=args.asr_prompt, lora=lora,
        lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
        eval_batch_size=args.eval_batch_size, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, save_every=args.save_every, seed=args.seed,
        mixed_precision=args.mixed_precision, dtype=args.dtype, device=args.device,
        allow_overlap=args.allow_overlap)


def submit(args: argparse.Namespace, config: FinetuneConfig) -> int:
    """Submit the run as a requeueable job (``--executor``); returns the exit code.

    The job resumes from the run folder's last checkpoint on every start, so SLURM's
    timeout/preemption signal (submitit checkpointing, at most the profile's ``max_requeues``
    times) or a resubmission continues where training stopped.
    """
    from toolkit.finetune.config import validate_config
    from toolkit.finetune.task import FinetuneTask
    from toolkit.launch.executors import make_executor
    from toolkit.launch.profile import load_profile, submitit_parameters

    validate_config(config)  # every problem before anything is submitted
    profile = load_profile(args.profile)
    settings = profile.settings(args.model)
    params = submitit_parameters(settings, (settings.get("accounts") or [None])[0], list(settings.get("setup") or []),
                                 f"finetune-{args.out.name}")
    executor = make_executor(args.executor, args.out / "_jobs")
    (job,) = executor.submit_array([FinetuneTask(config, merge=args.merge)], [str(args.out)], params, 1,
                                   profile.max_requeues, settings.get("python"))
    print(f"finetune: job {job.job_id} ({args.executor}); logs in {args.out / '_jobs'}")
    if args.executor == "slurm" and not args.wait:
        return EXIT_OK
    state = job.wait()
    print(f"finetune: job {job.job_id} ended {state}")
    return EXIT_OK if state == "COMPLETED" else EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    from toolkit.finetune import run_finetune

    if args.executor is not None:
        return submit(args, config_from_args(args))
    summary = run_finetune(config_from_args(args), resume=args.resume, merge=args.merge,
                           stop_after_steps=args.stop_after_steps, progress=not args.quiet)
    print(json.dumps(summary))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``bin/finetune``; returns the exit code."""
    return run_cli(build_parser(), _run, argv)
