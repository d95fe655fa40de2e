#!/usr/bin/env python3
"""Benchmark ``bin/infer`` (batched, next batch prepared on a thread) against a plain loop.

The baseline is the earlier scripts' kind of loop, one item at a time: build a conversation
naming the audio, ``processor.apply_chat_template``, read the clip with soundfile (soxr if
not 16 kHz), ``processor(text=, audio=)``, greedy ``model.generate``, decode. Both sides run
the same items (the SAKURA-mini manifest, single-hop questions by default) with the same
prompt (``seed-reasoning``) and a forced length (``max_new_tokens == min_new_tokens``, so a
random model generates equally long answers), and the decoded texts are compared item by
item (they must be identical).

Both sides are whole processes, timed by this script from ``Popen`` to exit: ``bin/infer``
as a user runs it, and the baseline as a small inline script (``python3 -c``). Model load:

- ``ready`` = process start -> model loaded (imports + processor + weights), the same mark
  on both sides: the time this script *receives* the line ``bin/infer`` logs after
  ``load_backend`` (``INFO ... loaded Qwen2AudioForConditionalGeneration ...``) and the
  line the baseline prints after ``from_pretrained(...).to(device)``. ``wall - ready`` is the
  generation phase, and ``items / (wall - ready)`` its rate (shown as ``gen it/s``).
- ``load`` = processor + model ``from_pretrained`` alone, imports excluded: timed inside the
  baseline process, and for the toolkit in one extra small process timing ``load_backend``.

Models: randomly initialised Qwen2-Audio of the real classes built by
``toolkit.models.registry.build_tiny("qwen2-audio", folder, size=<size>)`` into
``bench/out/models/<size>`` (reused when present), sizes from ``toolkit.models.tiny.SIZES``:
``tiny`` (the tests' sizes, overhead-bound) and ``100m`` (hidden 1024, 8 layers, audio d_model
256: ~94M parameters; decode is weight-bandwidth-bound on CPU, like a 7B on a GPU). Runs are interleaved (baseline, toolkit, per repeat); figures are medians.

    python3 bench/infer.py [--sizes tiny,100m] [--batch-size 8] [--limit N] [--repeats 1]
                           [--device cpu|cuda] [--hop single|multi|all]

Goal (issue): >= 2x items/s on ``100m`` on CPU at batch 8, no regression on ``tiny``;
>= 5x on a GPU at batch 16 (``--device cuda --batch-size 16``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from toolkit.manifest import read_manifest, resolve_audio  # noqa: E402
from toolkit.prompts import get_prompt, render_user_text  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "sakura-mini"
OUT = REPO / "bench" / "out"
PROMPT = "seed-reasoning"
SIZES = {"tiny": 16, "100m": 24}  # toolkit.models.tiny.SIZES name -> forced answer length
READY_MARK = "loaded Qwen2AudioForConditionalGeneration"

# The one-item-at-a-time loop. argv: jobs.json model_dir device dtype max_new_tokens out.json
BASELINE = r'''
import json, sys, time
t0 = time.perf_counter()
import numpy as np, soundfile as sf, torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration
jobs_path, model_dir, device, dtype_name, n_new, out_path = sys.argv[1:7]
n_new = int(n_new)
dtype = getattr(torch, dtype_name)
t1 = time.perf_counter()
processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
model = Qwen2AudioForConditionalGeneration.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
model.to(device).eval()
t2 = time.perf_counter()
print("BASELINE-READY", flush=True, file=sys.stderr)
texts = {}
for job in json.load(open(jobs_path)):
    conversation = [{"role": "user", "content": [{"type": "audio", "audio_url": job["audio"]},
                                                  {"type": "text", "text": job["text"]}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    audio, sr = sf.read(job["audio"], dtype="float32")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sr != 16000:
        import soxr
        audio = soxr.resample(audio, sr, 16000, quality="HQ").astype(np.float32)
    inputs = processor(text=prompt, audio=[audio], sampling_rate=16000, return_tensors="pt")
    inputs = {k: v.to(device, dtype=dtype if v.is_floating_point() else None) for k, v in inputs.items()}
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                             temperature=None, top_p=None, top_k=None)
    texts[job["id"]] = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
t3 = time.perf_counter()
json.dump({"texts": texts, "imports_s": t1 - t0, "load_s": t2 - t1, "loop_s": t3 - t2,
           "torch_threads": torch.get_num_threads()}, open(out_path, "w"))
'''

# load_backend alone, imports excluded. argv: model_dir device dtype
TOOLKIT_LOAD = r'''
import sys, time
import torch, transformers
transformers.AutoProcessor, transformers.Qwen2AudioForConditionalGeneration  # import them outside the timing
from toolkit.models.base import LoadOptions
from toolkit.models.registry import get_backend_class, load_backend
get_backend_class("qwen2-audio")
t = time.perf_counter()
load_backend("qwen2-audio", sys.argv[1], LoadOptions(device=sys.argv[2], dtype=sys.argv[3]))
print(time.perf_counter() - t)
'''


def _run_timed(cmd: List[str], ready_mark: str, env: Dict[str, str]) -> Tuple[float, Optional[float], str]:
    """Run ``cmd``; (wall seconds, seconds until a stderr line containing ``ready_mark``, stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    ready: List[float] = []
    err: List[str] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if not ready and ready_mark in line:
                ready.append(time.perf_counter() - start)
            err.append(line)

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    assert proc.stdout is not None
    proc.stdout.read()
    proc.wait()
    wall = time.perf_counter() - start
    reader.join()
    if proc.returncode != 0:
        sys.exit(f"bench/infer.py: {' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{''.join(err)[-3000:]}")
    return wall, (ready[0] if ready else None), "".join(err)


def _model(size: str) -> Path:
    """The cached model folder of ``size``, built on first use (in a subprocess)."""
    folder = OUT / "models" / size
    if not all((folder / name).exists() for name in ("config.json", "model.safetensors", "processor_config.json")):
        print(f"building the {size} model in {folder} ...", flush=True)
        subprocess.run([sys.executable, "-c", "import sys; from toolkit.models.registry import build_tiny; "
                        "build_tiny('qwen2-audio', sys.argv[1], size=sys.argv[2])", str(folder), size],
                       check=True, cwd=REPO)
    return folder


def _manifest(data: Path, hop: str, limit: Optional[int], work: Path) -> Tuple[Path, List[dict]]:
    """A manifest of the chosen items (``bin/prepare sakura``, then filtered) and the baseline's jobs."""
    full = work / "sakura-mini.jsonl"
    if not full.exists():
        subprocess.run([sys.executable, str(REPO / "bin" / "prepare"), "sakura", "--src", str(data), "--out", str(full),
                        "-q"], check=True, cwd=REPO)
    lines = [line for line in full.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = [line for line in lines if hop == "all" or json.loads(line).get("hop") == hop]
    if limit is not None and limit < len(lines):  # evenly spread over tracks and clip lengths
        lines = [lines[(i * len(lines)) // limit] for i in range(limit)]
    chosen = work / "manifest.jsonl"
    chosen.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    prompt = get_prompt(PROMPT)
    jobs = [{"id": item.id, "audio": str(resolve_audio(item, data).resolve()), "text": render_user_text(prompt, item)}
            for item in read_manifest(chosen)]
    return chosen, jobs


def _baseline(jobs_path: Path, model: Path, device: str, dtype: str, n_new: int, work: Path,
              env: Dict[str, str]) -> Dict:
    out = work / "baseline.json"
    wall, ready, _ = _run_timed([sys.executable, "-c", BASELINE, str(jobs_path), str(model), device, dtype,
                                 str(n_new), str(out)], "BASELINE-READY", env)
    res = json.loads(out.read_text(encoding="utf-8"))
    res.update(wall=wall, ready=ready)
    return res


def _toolkit(manifest: Path, data: Path, model: Path, device: str, dtype_flag: str, n_new: int, batch: int,
             work: Path, env: Dict[str, str]) -> Dict:
    out = work / "toolkit.jsonl"
    for stale in work.glob("toolkit.jsonl*"):  # bin/infer resumes: start from nothing (rows and sidecar)
        stale.unlink()
    cmd = [sys.executable, str(REPO / "bin" / "infer"), "--manifest", str(manifest), "--data-root", str(data),
           "--model", "qwen2-audio", "--model-path", str(model), "--device", device, "--dtype", dtype_flag,
           "--mode", "reasoning", "--prompt", PROMPT, "--max-new-tokens", str(n_new), "--min-new-tokens", str(n_new),
           "--batch-size", str(batch), "--out", str(out)]
    wall, ready, err = _run_timed(cmd, READY_MARK, env)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    errors = [r for r in rows if r.get("error")]
    if errors:
        sys.exit(f"bench/infer.py: bin/infer wrote {len(errors)} error rows, e.g. {errors[0]['error']}")
    return {"texts": {r["id"]: r["raw_output"] for r in rows}, "wall": wall, "ready": ready}


def _toolkit_load(model: Path, device: str, dtype_flag: str, env: Dict[str, str]) -> float:
    proc = subprocess.run([sys.executable, "-c", TOOLKIT_LOAD, str(model), device, dtype_flag], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def _compare(base: Dict[str, str], tk: Dict[str, str]) -> Tuple[bool, List[str]]:
    diff = [i for i in base if tk.get(i) != base[i]] + [i for i in tk if i not in base]
    return not diff, diff


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                        help="bin/infer's --dtype; auto: fp32 on CPU, bf16 on GPU (the baseline uses the same)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sizes", default="tiny,100m", help="comma-separated: tiny, 100m")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per side; medians are shown")
    parser.add_argument("--limit", type=int, help="at most N items (spread evenly over the chosen hop)")
    parser.add_argument("--hop", default="single", choices=("single", "multi", "all"),
                        help="SAKURA questions: single-hop (48), multi-hop (48) or all (96)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-new-tokens", type=int,
                        help="forced answer length (max = min); default: 16 tiny, 24 100m")
    parser.add_argument("--no-load-probe", action="store_true", help="skip the extra process timing load_backend")
    parser.add_argument("--show-diff", type=int, default=3, help="differing items to print (default: 3)")
    args = parser.parse_args()

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        sys.exit(f"bench/infer.py: unknown size(s) {unknown}; valid: {', '.join(SIZES)}")
    if not args.data.is_dir():
        sys.exit(f"bench/infer.py: data folder not found: {args.data} (use --data DIR)")
    dtype_name = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(
        args.dtype, "bfloat16" if args.device.startswith("cuda") else "float32")
    work = OUT / "infer"
    work.mkdir(parents=True, exist_ok=True)
    manifest, jobs = _manifest(args.data, args.hop, args.limit, work)
    jobs_path = work / "jobs.json"
    jobs_path.write_text(json.dumps(jobs), encoding="utf-8")
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    n = len(jobs)
    print(f"{n} items ({args.hop}-hop SAKURA-mini), prompt {PROMPT}, batch {args.batch_size}, device {args.device}, "
          f"{dtype_name}, {os.cpu_count()} CPUs, repeats {args.repeats}", flush=True)

    table = []
    for size in sizes:
        model = _model(size)
        n_new = args.max_new_tokens or SIZES[size]
        runs: Dict[str, List[Dict]] = {"base": [], "tk": []}
        for rep in range(args.repeats):
            b = _baseline(jobs_path, model, args.device, dtype_name, n_new, work, env)
            t = _toolkit(manifest, args.data, model, args.device, args.dtype, n_new, args.batch_size, work, env)
            runs["base"].append(b)
            runs["tk"].append(t)
            print(f"  {size} #{rep + 1}: baseline {b['wall']:.1f} s (ready {b['ready']:.1f} s), "
                  f"toolkit {t['wall']:.1f} s (ready {t['ready'] or float('nan'):.1f} s)", flush=True)
        load_tk = None if args.no_load_probe else _toolkit_load(model, args.device, args.dtype, env)
        same = all(_compare(b["texts"], t["texts"])[0] for b, t in zip(runs["base"], runs["tk"]))
        _, diff = _compare(runs["base"][0]["texts"], runs["tk"][0]["texts"])
        for item in diff[: args.show_diff]:
            print(f"  differs {item}:\n    baseline {runs['base'][0]['texts'].get(item)!r}\n"
                  f"    toolkit  {runs['tk'][0]['texts'].get(item)!r}")

        def med(side: str, key: str) -> float:
            vals = [r[key] for r in runs[side] if r.get(key) is not None]
            return statistics.median(vals) if vals else float("nan")

        bw, tw = med("base", "wall"), med("tk", "wall")
        bg = statistics.median(n / (r["wall"] - r["ready"]) for r in runs["base"])
        tg = statistics.median(n / (r["wall"] - r["ready"]) for r in runs["tk"] if r["ready"] is not None)
        table.append({
            "size": size, "n_new": n_new, "base_ips": n / bw, "tk_ips": n / tw, "ratio": bw / tw,
            "base_gen": bg, "tk_gen": tg, "gen_ratio": tg / bg,
            "base_ready": med("base", "ready"), "tk_ready": med("tk", "ready"),
            "base_load": med("base", "load_s"), "tk_load": load_tk if load_tk is not None else float("nan"),
            "same": "yes" if same else f"NO ({len(diff)}/{n} differ)",
            "threads": runs["base"][0].get("torch_threads"),
        })

    print()
    head = (f"{'size':<5} {'tok':>3} {'base it/s':>9} {'toolkit it/s':>12} {'ratio':>6} | {'gen it/s base':>13} "
            f"{'toolkit':>7} {'ratio':>6} | {'ready s base':>12} {'toolkit':>7} | {'load s base':>11} {'toolkit':>7} | "
            f"identical")
    print(head)
    print("-" * len(head))
    for r in table:
        print(f"{r['size']:<5} {r['n_new']:>3} {r['base_ips']:>9.2f} {r['tk_ips']:>12.2f} {r['ratio']:>5.2f}x | "
              f"{r['base_gen']:>13.2f} {r['tk_gen']:>7.2f} {r['gen_ratio']:>5.2f}x | {r['base_ready']:>12.1f} "
              f"{r['tk_ready']:>7.1f} | {r['base_load']:>11.2f} {r['tk_load']:>7.2f} | {r['same']}")
    print("\nit/s: items / whole-process wall time (start to exit). gen it/s: items / (wall - ready), the phase "
          "after the model is loaded.\nready: process start to model loaded (imports + load). load: processor + "
          "weights only (baseline: in-process; toolkit: load_backend in its own process).\n"
          f"tok: forced new tokens per answer (max_new_tokens = min_new_tokens). torch threads: {table[0]['threads']}.")
    return 0 if all(r["same"] == "yes" for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
