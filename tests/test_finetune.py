"""bin/finetune with a tiny random Qwen2-Audio of the real class: training, adapters, resume, merge."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf

from toolkit.cli.finetune import main as finetune_main
from toolkit.finetune.metrics import MetricsLog
from toolkit.manifest import Item, write_manifest

ANIMALS = ["dog", "cat", "bird", "cow"]

#: Fixed settings of every run here: 4 training items in batches of 2 (2 optimizer steps per
#: epoch), all linear layers of the text decoder, a learning rate a tiny model can memorise with.
TRAIN_ARGS = ["--epochs", "4", "--batch-size", "2", "--eval-batch-size", "2", "--lr", "1e-2",
              "--warmup-ratio", "0", "--lora-r", "8", "--lora-alpha", "16", "--seed", "0", "--device", "cpu",
              "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--save-every", "0", "-q"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2-Audio folder with a small audio encoder (fast forward passes on CPU)."""
    from toolkit.models.registry import build_tiny

    return build_tiny("qwen2-audio", tmp_path_factory.mktemp("ft-model") / "qwen2-audio", hidden_size=64,
                      num_layers=2, audio_d_model=16, audio_layers=1, seed=0)


def _items(root: Path, split: str, n: int, offset: int) -> List[Item]:
    items = []
    for i in range(n):
        k = (i + offset) % len(ANIMALS)
        t = np.arange(8000) / 16000
        sf.write(root / f"{split}{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 150 * k + 7 * i) * t), 16000)
        items.append(Item(id=f"{split}-{i}", dataset="toy", audio=f"{split}{i}.wav",
                          question=f"Which animal is heard in clip {i}?", choices=ANIMALS, answer=k))
    return items


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.jsonl (4 items), eval.jsonl (2 other items and an asr one) with generated 0.5 s tones."""
    root = tmp_path_factory.mktemp("ft-data")
    write_manifest(root / "train.jsonl", _items(root, "train", 4, 0))
    asr = _items(root, "eval-asr", 1, 0)[0]
    asr = Item(id="eval-asr", dataset="toy", audio=asr.audio, question="", task="asr", reference="a dog barks")
    write_manifest(root / "eval.jsonl", _items(root, "eval", 2, 1) + [asr])
    return root


def _argv(model_dir: Path, data: Path, out: Path, *extra: str) -> List[str]:
    return ["--model", "qwen2-audio", "--model-path", str(model_dir), "--train", str(data / "train.jsonl"),
            "--eval", str(data / "eval.jsonl"), "--out", str(out), *TRAIN_ARGS, *extra]


@pytest.fixture(scope="module")
def full_run(model_dir: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run through the CLI, with --merge."""
    out = tmp_path_factory.mktemp("ft-full") / "run"
    assert finetune_main(_argv(model_dir, data, out, "--merge")) == 0
    return out


def _load_file(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _prepared(backend, data: Path):
    """Inputs exactly as bin/infer builds them for the eval items (direct-v1 prompt, clips)."""
    from toolkit.audio import load_audio
    from toolkit.manifest import read_manifest
    from toolkit.models.base import Request
    from toolkit.prompts import render_user_text

    items = [it for it in read_manifest(data / "eval.jsonl") if it.task == "mcq"]
    requests = [Request(item=it, run=0, user_text=render_user_text("direct-v1", it), audio=load_audio(data / it.audio))
                for it in items]
    return backend._to_device(backend.prepare(requests).inputs)


def _logits(model, inputs):
    import torch

    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def test_loss_is_finite_and_falls(full_run: Path):
    rows = MetricsLog(full_run / "metrics.jsonl").rows()
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["epoch"] for r in evals] == [0, 1, 2, 3]
    losses = [r["loss"] for r in train]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < losses[0] - 0.5, losses
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert all(0.0 <= r["eval_accuracy"] <= 1.0 and (r["eval_items"], r["eval_choice_items"]) == (3, 2)
               for r in evals)
    # cosine schedule without warm-up: the peak first, decaying towards 0
    lrs = [r["lr"] for r in train]
    assert lrs[0] == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs, lrs[1:]))
    for name in ("best", "last"):
        assert (full_run / name / "adapter_config.json").is_file()
    assert (full_run / "loss.png").stat().st_size > 0 and (full_run / "loss.png.meta.json").is_file()
    assert json.loads((full_run / "run.json").read_text())["lora"]["r"] == 8


def test_only_lora_trains_and_the_audio_tower_is_unchanged(model_dir: Path, data: Path, tmp_path: Path):
    import torch

    from toolkit.finetune import FinetuneConfig, FinetuneRecipe, LoraSettings, validate_config
    from toolkit.finetune.lora import trainable_names
    from toolkit.models.base import LoadOptions
    from toolkit.models.registry import load_backend

    config = FinetuneConfig(model="qwen2-audio", model_path=str(model_dir), train_manifest=str(data / "train.jsonl"),
                            eval_manifest=str(data / "eval.jsonl"), out=str(tmp_path / "run"), epochs=1,
                            batch_size=2, lr=1e-2, warmup_ratio=0.0, device="cpu",
                            lora=LoraSettings(r=4, alpha=8, targets=("q_proj", "v_proj")))
    recipe = FinetuneRecipe(config, *validate_config(config), progress=False)
    recipe.setup()
    model = recipe.peft_model
    names = trainable_names(model)
    assert len(names) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert all(re.search(r"\.language_model\..*\.(q_proj|v_proj)\.lora_[AB]\.", n) for n in names), names
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if "audio_tower" in n or "multi_modal_projector" in n}
    assert frozen and not any(p.requires_grad for n, p in model.named_parameters() if n in frozen)
    recipe.train()
    after = dict(model.named_parameters())
    assert all(torch.equal(frozen[n], after[n]) for n in frozen)
    assert any(float(p.detach().abs().sum()) > 0 for n, p in after.items() if "lora_B" in n)  # B starts at zero

    # round trip: the saved adapter, loaded the way bin/infer --adapter loads it, gives identical logits
    adapter = str(tmp_path / "run" / "last")
    backend = load_backend("qwen2-audio", str(model_dir), LoadOptions(device="cpu", adapter=adapter))
    inputs = _prepared(backend, data)
    assert torch.equal(_logits(model, inputs), _logits(backend.model, inputs))
    base = load_backend("qwen2-audio", str(model_dir), LoadOptions(device="cpu"))
    assert not torch.allclose(_logits(base.model, inputs), _logits(backend.model, inputs))
    recipe.cleanup()


def test_bin_infer_runs_with_the_adapter(full_run: Path, model_dir: Path, data: Path, tmp_path: Path):
    from toolkit.cli.infer import main as infer_main

    out = tmp_path / "rows.jsonl"
    rc = infer_main(["--manifest", str(data / "train.jsonl"), "--model", "qwen2-audio", "--model-path", str(model_dir),
                     "--adapter", str(full_run / "best"), "--mode", "direct", "--device", "cpu", "--score-options",
                     "--out", str(out), "-q"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rc == 0 and len(rows) == 4 and all(r["error"] is None and len(r["option_logprobs"]) == 4 for r in rows)


def test_merged_folder_gives_the_logits_of_base_plus_adapter(full_run: Path, model_dir: Path, data: Path):
    import torch

    from toolkit.models.base import LoadOptions
    from toolkit.models.registry import load_backend

    adapted = load_backend("qwen2-audio", str(model_dir), LoadOptions(device="cpu", adapter=str(full_run / "best")))
    merged = load_backend("qwen2-audio", str(full_run / "merged"), LoadOptions(device="cpu"))
    assert type(merged.model).__name__ == "Qwen2AudioForConditionalGeneration"
    inputs = _prepared(adapted, data)
    assert torch.allclose(_logits(adapted.model, inputs), _logits(merged.model, inputs), atol=1e-5)


def test_resume_continues_from_the_saved_step(full_run: Path, model_dir: Path, data: Path, tmp_path: Path):
    """Stopped at step 3 (mid-epoch), resumed by the CLI to step 6, finished by the requeued
    submitit task: the same metrics and the same final adapter as the uninterrupted run."""
    from toolkit.cli.finetune import build_parser, config_from_args
    from toolkit.finetune.task import FinetuneTask

    out = tmp_path / "run"
    assert finetune_main(_argv(model_dir, data, out, "--stop-after-steps", "3")) == 0
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 3
    assert [r["step"] for r in MetricsLog(out / "metrics.jsonl").rows() if r["kind"] == "train"] == [1, 2, 3]
    assert finetune_main(_argv(model_dir, data, out, "--stop-after-steps", "1")) == 2  # a checkpoint, no --resume
    assert finetune_main(_argv(model_dir, data, out, "--resume", "--stop-after-steps", "3")) == 0
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 6

    task = FinetuneTask(config_from_args(build_parser().parse_args(_argv(model_dir, data, out))))
    requeued = pickle.loads(pickle.dumps(task.checkpoint()))  # what submitit does on preemption
    summary = requeued.result()
    assert summary["step"] == summary["total_steps"] == 8 and summary["finished"]

    assert MetricsLog(out / "metrics.jsonl").rows() == MetricsLog(full_run / "metrics.jsonl").rows()
    for name in ("last", "best"):
        resumed, straight = (_load_file(d / name / "adapter_model.safetensors") for d in (out, full_run))
        assert resumed.keys() == straight.keys()
        assert all(np.array_equal(resumed[k].numpy(), straight[k].numpy()) for k in resumed)


def test_overlapping_splits_and_bad_arguments_are_refused_before_loading(model_dir: Path, data: Path,
                                                                         tmp_path: Path, capsys):
    out = tmp_path / "run"
    argv = _argv(model_dir, data, out)
    argv[argv.index("--eval") + 1] = str(data / "train.jsonl")
    assert finetune_main(argv) == 2
    err = capsys.readouterr().err
    assert "4 ids are in both --train and --eval: train-0, train-1, train-2, train-3" in err
    assert "--allow-overlap" in err and not out.exists()

    # other ids, same clips (like SAKURA's single and multi hop of one clip)
    same_clips = [Item(id=f"other-{i}", dataset="toy", audio=f"train{i}.wav", question="Which?", choices=ANIMALS,
                       answer=0) for i in range(2)]
    write_manifest(data / "same-clips.jsonl", same_clips)
    argv[argv.index("--eval") + 1] = str(data / "same-clips.jsonl")
    assert finetune_main(argv + ["--lr", "0", "--epochs", "0", "--targets", "q proj"]) == 2
    err = capsys.readouterr().err
    assert "2 audio files are in both --train and --eval" in err
    for problem in ("--lr must be > 0", "--epochs must be >= 1", "'q proj' is not a module name"):
        assert problem in err
    assert "4 problem(s)" in err and not out.exists()


def test_unknown_target_lists_the_language_model_layers(model_dir: Path, data: Path, tmp_path: Path):
    from toolkit.finetune.lora import LoraSettings, apply_lora
    from toolkit.models.base import LoadOptions
    from toolkit.models.registry import load_backend

    backend = load_backend("qwen2-audio", str(model_dir), LoadOptions(device="cpu"))
    with pytest.raises(ValueError, match="fc1 match no linear layer.*q_proj"):
        apply_lora(backend.model, LoraSettings(targets=("q_proj", "fc1")))  # fc1 exists only in the audio encoder


def test_examples_mask_everything_but_the_answer(model_dir: Path, data: Path):
    from toolkit.finetune.data import IGNORE_INDEX, ExampleDataset, collate
    from toolkit.models.base import LoadOptions, Request
    from toolkit.models.registry import load_backend
    from toolkit.prompts import get_prompt, render_user_text

    backend = load_backend("qwen2-audio", str(model_dir), LoadOptions(device="cpu"))
    mcq = Item(id="m", dataset="toy", audio="train1.wav", question="Which animal?", choices=ANIMALS, answer=2)
    asr = Item(id="a", dataset="toy", audio="train2.wav", question="", task="asr", reference=" the dog barks ")
    dataset = ExampleDataset([mcq, asr], backend, get_prompt("direct-v1"), get_prompt("asr-v1"), data)
    tok = backend.tokenizer
    request = Request(item=mcq, run=0, user_text=render_user_text("direct-v1", mcq), audio=np.zeros(1))
    assert dataset.prompt_text(mcq) == backend.chat_text(request)  # the prompt bin/infer sends
    assert render_user_text("asr-v1", asr) in dataset.prompt_text(asr)
    for example, answer in zip((dataset[0], dataset[1]), ("C", "the dog barks")):
        kept = example.labels[example.labels != IGNORE_INDEX].tolist()
        assert kept == tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert example.inputs["input_ids"][-len(kept):].tolist() == kept
    assert dataset[0].choice_token_ids == [tok.convert_tokens_to_ids(c) for c in "ABCD"] and dataset[1].answer is None
    batch = collate([dataset[0], dataset[1]], backend.pad_id)
    width = batch["input_ids"].shape[1]
    assert batch["labels"].shape == (2, width) and batch["input_features"].shape[0] == 2
    short = int(batch["attention_mask"].sum(1).min())
    row = int(batch["attention_mask"].sum(1).argmin())
    assert (batch["labels"][row, short:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][row, short:] == backend.pad_id).all()


def test_train_projector_makes_only_the_projector_trainable_besides_lora(model_dir: Path):
    from toolkit.finetune.lora import LoraSettings, apply_lora, trainable_names
    from toolkit.models.base import LoadOptions
    from toolkit.models.registry import load_backend

    backend = load_backend("qwen2-audio", str(model_dir), LoadOptions(device="cpu"))
    names = trainable_names(apply_lora(backend.model, LoraSettings(targets=("q_proj",), train_projector=True)))
    assert any("multi_modal_projector" in n for n in names)
    assert all("multi_modal_projector" in n or ".lora_" in n for n in names)
    assert not any("audio_tower" in n for n in names)


@pytest.mark.slurm
def test_a_finetune_job_on_slurm_matches_the_run_in_this_process(slurm_cluster, full_run: Path, model_dir: Path,
                                                                 data: Path, tmp_path: Path):
    profile = Path(__file__).resolve().parent.parent / "slurm" / "profiles" / "ci.yaml"
    out = tmp_path / "job"
    assert finetune_main(_argv(model_dir, data, out, "--executor", "slurm", "--profile", str(profile),
                               "--wait")) == 0
    job = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    here = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("step") for r in job] == [r.get("step") for r in here]
    losses = lambda rows: [r[k] for r in rows for k in ("loss", "eval_loss") if k in r]  # noqa: E731
    assert np.allclose(losses(job), losses(here), rtol=1e-4)
    assert (out / "best" / "adapter_model.safetensors").exists() and list((out / "_jobs").iterdir())
