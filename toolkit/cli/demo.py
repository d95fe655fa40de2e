"""``bin/demo``: the built-in default run on a fresh machine (no weights, no datasets).

Part 1 generates the synthetic demo set, prepares its manifest (audio checked, sidecar
written), perturbs it under a few conditions and runs the ``simulated`` backend (a
stand-in with known accuracy and a known dependence on its reasoning, not a model) on
every condition, then prints a summary.

Part 2 runs the faithfulness study end to end as the stages a user would call: a sweep
file (``<out>/study.yaml``, launchable as is on a cluster) run in this process by
``bin/launch`` - baseline in direct and reasoning mode, masked and noisy audio, spoken
correct and wrong hints (when espeak-ng is installed), then own / truncated / filler /
suggested interventions on the reasoning rows - merged, re-checked with ``bin/repair``
and scored with ``bin/score`` (accuracy tables, curves, faithfulness tables and plots).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from toolkit.cli.common import EXIT_BAD_INPUT, EXIT_OK, add_common_args, run_cli

DEFAULT_CONDITIONS = ("clean", "mask-p40", "mask-p80", "noise-snr10", "noise-snr0", "noise-snr-10")

EPILOG = """examples:
  bin/demo                              # writes ./demo-out
  bin/demo --out /tmp/demo --items-per-task 20 --workers 2
  bin/demo --condition clean --condition mask-p90-contiguous-noise
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``bin/demo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="demo", description="Generate a synthetic audio question set, prepare its manifest and perturb it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: %(default)s)")
    parser.add_argument("--items-per-task", type=int, default=8, help="clips per task, 3 tasks (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated clips and of the perturbations")
    parser.add_argument("--condition", action="append", dest="conditions", metavar="C",
                        help=f"audio condition, repeatable (default: {' '.join(DEFAULT_CONDITIONS)})")
    parser.add_argument("--workers", type=int, default=1, help="perturbation processes (default: %(default)s)")
    parser.add_argument("--no-study", action="store_true", help="skip part 2 (the faithfulness study)")
    add_common_args(parser)
    return parser


def _summary_lines(items_by_subset: dict, perturbed: dict, accuracy: dict) -> List[str]:
    lines = ["demo set: " + ", ".join(f"{n} {subset}" for subset, n in sorted(items_by_subset.items())), "",
             f"{'condition':<34} {'files':>5} {'errors':>6}  {'simulated acc':>13}  measured"]
    for name, items in perturbed.items():
        ok = [it for it in items if "condition_error" not in it.meta]
        snrs = [it.meta["perturbation"]["snr_measured_db"] for it in ok if "snr_measured_db" in it.meta["perturbation"]]
        shares = [it.meta["perturbation"]["masked_share"] for it in ok if "masked_share" in it.meta["perturbation"]]
        measured = ""
        if snrs:
            measured = f"SNR {round(min(snrs), 3) + 0.0:.3f}..{round(max(snrs), 3) + 0.0:.3f} dB"
        elif shares:
            measured = f"masked share {min(shares):.4f}..{max(shares):.4f}"
        lines.append(f"{name:<34} {len(ok):>5} {len(items) - len(ok):>6}  {accuracy[name]:>13}  {measured}")
    return lines


def _run(args: argparse.Namespace) -> int:
    from collections import Counter

    from toolkit.data.demo import write_demo_manifest
    from toolkit.perturb import perturb_manifest

    if args.items_per_task < 1:
        print("demo: error: --items-per-task must be >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    out: Path = args.out
    data_root = out / "data"
    manifest, items = write_demo_manifest(data_root, items_per_task=args.items_per_task, seed=args.seed)
    conditions: Sequence[str] = args.conditions or DEFAULT_CONDITIONS
    perturbed = perturb_manifest(items, data_root, conditions, out / "perturbed", seed=args.seed,
                                 workers=args.workers, source_manifest=manifest, progress=not args.quiet)
    accuracy = {name: _simulated_accuracy(out, name, args) for name in perturbed}
    for line in _summary_lines(Counter(it.subset for it in items), perturbed, accuracy):
        print(line)
    print(f"\nmanifest: {manifest}\nperturbed manifests: {out / 'perturbed'}/<condition>/manifest.jsonl"
          f"\nsimulated results: {out / 'runs' / 'simulated'}/<condition>.jsonl")
    if args.no_study:
        return EXIT_OK
    return _study(out, manifest, args)


STUDY_INTERVENTIONS = ("own", "truncate", "filler-dots:step=0.25", "suggested")
STUDY_CONDITIONS = ("clean", "mask-p40", "mask-p80", "noise-snr10", "noise-snr0")
HINT_CONDITIONS = ("inject-correct-snr0", "inject-wrong-snr0")


def write_study_sweep(out: Path, manifest: Path, seed: int, with_hints: bool) -> Path:
    """The demo's faithfulness study as a sweep file (``<out>/study.yaml``); returns its path."""
    import yaml

    sweep = {"experiment": "study", "output": "study-runs", "seed": seed, "shards": 2,
             "models": [{"name": "simulated", "backend": "simulated",
                         "path": f"accuracy=0.85,follow=0.7,seed={seed}"}],
             "datasets": [{"name": "demo", "manifest": str(manifest.resolve()), "shards": 2}],
             "conditions": list(STUDY_CONDITIONS + (HINT_CONDITIONS if with_hints else ())),
             "modes": ["direct", "reasoning"], "interventions": list(STUDY_INTERVENTIONS)}
    if with_hints:
        sweep["hints"] = {"tts": "espeak-ng", "cache": "hint-cache"}
    path = out / "study.yaml"
    header = ("# The demo's faithfulness study (written by bin/demo). Run it on a cluster as it is:\n"
              f"#   bin/launch {path} --executor slurm --profile slurm/profiles/<yours>.yaml --out runs\n")
    path.write_text(header + yaml.safe_dump(sweep, sort_keys=False), encoding="utf-8")
    return path


def _study(out: Path, manifest: Path, args: argparse.Namespace) -> int:
    """Part 2 (see the module docstring): the stages in order, each as its command would run."""
    import shutil

    from toolkit.cli.launch import main as launch_main
    from toolkit.cli.repair import main as repair_main
    from toolkit.cli.score import main as score_main
    from toolkit.runs import RunLayout

    with_hints = shutil.which("espeak-ng") is not None
    if not with_hints:
        print("\nspoken-hint conditions skipped: espeak-ng is not installed (apt-get install espeak-ng)")
    sweep = write_study_sweep(out, manifest, args.seed, with_hints)
    layout = RunLayout(out / "study-runs" / "study")
    run_dir = layout.root
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo starts afresh each time
    quiet = ["-q"] if args.quiet else []
    repaired = str(run_dir / "results.repaired.jsonl")
    plots = ["--plots", str(layout.plots_dir)]
    steps = [
        ("launch", launch_main, [str(sweep), "--executor", "debug", "-q"]),
        ("repair", repair_main, ["--in", str(layout.results_jsonl), "--manifest", str(manifest), "--out", repaired]
         + quiet),
        ("score", score_main, ["accuracy", repaired, "--by", "model,condition,mode", "--out",
                               str(run_dir / "accuracy.md")] + plots + quiet),
        ("score", score_main, ["faithfulness", repaired, "--manifest", str(manifest), "--out",
                               str(layout.report_file("faithfulness", "markdown"))] + plots + quiet),
    ]
    print(f"\nfaithfulness study: {sweep}")
    for stage, main_fn, argv in steps:
        print(f"$ bin/{stage} {' '.join(argv)}")
        code = main_fn(argv)
        if code != EXIT_OK:
            print(f"demo: bin/{stage} exited with {code}", file=sys.stderr)
            return code
    faithfulness = layout.report_file("faithfulness", "markdown")
    print(f"\n{faithfulness.read_text(encoding='utf-8')}")
    print(f"tables: {run_dir / 'accuracy.md'}, {faithfulness}; plots: {layout.plots_dir}")
    return EXIT_OK


def _simulated_accuracy(out: Path, condition: str, args: argparse.Namespace) -> str:
    """Run the simulated backend on one perturbed manifest; ``"correct/answered (pct)"``."""
    from toolkit.infer import InferConfig, run_inference
    from toolkit.manifest import read_manifest
    from toolkit.models.base import GenerationSettings, LoadOptions
    from toolkit.models.registry import load_backend
    from toolkit.prompts import get_prompt

    manifest = out / "perturbed" / condition / "manifest.jsonl"
    prompt = get_prompt("reasoning-v1")
    config = InferConfig(model="simulated", mode="reasoning", prompt=prompt, seed=args.seed,
                         settings=GenerationSettings(max_new_tokens=prompt.max_new_tokens))
    results = out / "runs" / "simulated" / f"{condition}.jsonl"
    results.unlink(missing_ok=True)  # the demo starts afresh each time
    results.with_name(results.name + ".meta.json").unlink(missing_ok=True)
    backend = load_backend("simulated", f"seed={args.seed}", LoadOptions())
    run_inference(read_manifest(manifest), backend, config, results, manifest.parent, manifest=manifest,
                  progress=False)
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    correct = sum(bool(r["correct"]) for r in rows)
    return f"{correct}/{len(rows)} ({100 * correct / max(1, len(rows)):.0f}%)"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; returns the exit code."""
    return run_cli(build_parser(), _run, argv)
