"""Training throughput through the training loop's own step (asr_sft.training.loop.train_step: the
family's loss, accelerate bf16 autocast, AdamW, clipping), its optimizer and its duration batching.

(a) wav2vec2-base CTC under the LibriSpeech recipe's config (recipes/librispeech/conf/
    wav2vec2_base_100h.toml: 400 padded s per micro-batch x 4 = fairseq's 1,600 s per update, 30
    buckets, SpecAugment, layerdrop): DurationBatchSampler batches vs random batches cut greedily
    under the same budget. Audio-hours per GPU-hour = real (unpadded) audio seconds per second of
    train_step; MFU at REFERENCE.md's ~35 GFLOP per audio-second (CNN frozen).
(b) whisper-small seq2seq: 30-s windows (what Whisper always sees; batches of 64), samples/s and MFU
    at ~1.21 TFLOP per sample; then the Whisper family's variable_length option (each batch's
    log-mel cut to its longest utterance rounded up to 20 ms; VariableLengthEncoder adds the first
    rows of the positional table) on DurationBatchSampler batches under the same padded budget
    (64 x 30 s), in audio-hours per GPU-hour.

Batches are collated (generated audio, features, labels) on the CPU before each step, outside the
timer (the loop overlaps this with training in loader threads); collate time is reported beside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_sft.data.batching import BatchingOptions, DurationBatchSampler, pack_batches
from asr_sft.models import get_family, unwrap, whisper
from asr_sft.training.config import load_config
from asr_sft.training.loop import TrainState, make_optimizer, train_step

from gpu_bench import models
from gpu_bench.common import (LETTERS, SAMPLE_RATE, TOKENS_PER_SECOND, AudioMaker, Budget, Plan, duration_summary,
                              guarded, librispeech_durations, random_text, timed)
from gpu_bench.env import mfu

RECIPE_CONFIG = Path(__file__).resolve().parents[2] / "recipes" / "librispeech" / "conf" / "wav2vec2_base_100h.toml"
WAV2VEC2_TRAIN_GFLOP_PER_AUDIO_SECOND = 35.0  # wav2vec2-base, forward + backward, CNN frozen
WHISPER_SMALL_TRAIN_TFLOP_PER_SAMPLE = 1.21  # whisper-small, 30-s window, forward + backward
WHISPER_WINDOW = 30.0  # seconds
_accelerator = None


@dataclass
class Step:
    """One optimizer step's data."""

    micro: list[dict]  # collated micro-batches (tensors, plus audio_seconds for the loop)
    audio_seconds: float  # real audio
    padded_seconds: float  # what the model computes on
    utterances: int


def accelerator_for(device: str):
    """One bf16 Accelerator for the process (a second one could not change the mixed precision)."""
    global _accelerator
    if _accelerator is None:
        from accelerate import Accelerator

        _accelerator = Accelerator(mixed_precision="bf16", cpu=device == "cpu")
    return _accelerator


def train_setup(family, model, config, make_step, plan: Plan, budget: Budget) -> dict:
    """plan.train_warmup untimed + up to plan.train_steps timed steps of train_step; throughput row."""
    accelerator = accelerator_for(plan.device)
    optimizer, scheduler = make_optimizer(model, family.trainable_parameters(model), config)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    total = dict(steps=0, micro=0, audio=0.0, padded=0.0, utterances=0, step_s=0.0, collate_s=0.0)
    losses, truncated = [], False
    for i in range(plan.train_warmup + plan.train_steps):
        if budget.expired():
            if not total["steps"]:
                raise TimeoutError(f"time cap reached after {i} step(s), before a timed one")
            truncated = True
            break
        start = time.perf_counter()
        step = make_step(i)
        collate_s = time.perf_counter() - start
        stats, seconds = timed(lambda: train_step(family, model, optimizer, scheduler, [dict(b) for b in step.micro],
                                                  accelerator, config, state), plan.device)
        if i < plan.train_warmup:
            continue
        total["steps"] += 1
        total["micro"] += len(step.micro)
        total["audio"] += step.audio_seconds
        total["padded"] += step.padded_seconds
        total["utterances"] += step.utterances
        total["step_s"] += seconds
        total["collate_s"] += collate_s
        losses.append(stats["loss"])
    row = {
        "steps": total["steps"], "truncated": truncated, "micro_batches": total["micro"],
        "utterances": total["utterances"], "utterances_per_step": total["utterances"] / total["steps"],
        "audio_seconds": total["audio"], "padded_seconds": total["padded"],
        "padding": 1 - total["audio"] / total["padded"],
        "step_seconds": total["step_s"], "audio_h_per_gpu_h": total["audio"] / total["step_s"],
        "samples_per_s": total["utterances"] / total["step_s"],
        "collate_seconds_per_step": total["collate_s"] / total["steps"],
        "mean_loss": float(np.mean(losses)), "nonfinite_steps": state.nonfinite_steps,
        "attention": unwrap(model).config._attn_implementation,
    }
    if plan.device == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    accelerator.free_memory()
    return row


# --- (a) wav2vec2-base CTC ------------------------------------------------------------------------
def wav2vec2_part(plan: Plan, env: dict, budget: Budget) -> dict:
    config = load_config(RECIPE_CONFIG, [*plan.wav2vec2_overrides, "train.precision=bf16"])
    family = get_family("ctc")
    rng = np.random.default_rng(0)
    durations = librispeech_durations(plan.utterances, rng, plan.duration_scale)
    processor = models.ctc_processor(["".join(LETTERS)], return_attention_mask=False)
    accum = config.optim.grad_accum
    needed = (plan.train_warmup + plan.train_steps) * accum
    budget_s, size = config.data.max_batch_seconds, config.data.max_batch_size
    sampler = DurationBatchSampler(durations, BatchingOptions(max_batch_seconds=budget_s, max_batch_size=size,
                                                              num_buckets=config.data.num_buckets, seed=0))
    setups = {
        "buckets": sampler.batches()[:needed],
        "random": pack_batches(rng.permutation(len(durations)), durations, budget_s, size)[:needed],
    }
    maker = AudioMaker(seed=1)

    def make_step(batches):
        def make(i: int) -> Step:
            micro, real, padded, count = [], 0.0, 0.0, 0
            for indices in batches[i * accum:(i + 1) * accum]:
                seconds = durations[indices]
                rows = [{"text": random_text(d, rng)} for d in seconds]
                batch = family.collate(processor, rows, maker.waves(seconds))
                micro.append({**batch, "audio_seconds": float(seconds.sum())})
                real, padded, count = real + seconds.sum(), padded + len(indices) * seconds.max(), count + len(indices)
            return Step(micro, float(real), float(padded), count)
        return make

    rows = []
    for j, (name, batches) in enumerate(setups.items()):
        share = budget.share(1 / (len(setups) - j))

        def run(batches=batches, share=share):
            model = models.wav2vec2_model(plan.wav2vec2_size, config.model, len(processor.tokenizer), plan.device)
            row = train_setup(family, model, config, make_step(batches), plan, share)
            row.update(mfu(row["audio_h_per_gpu_h"] * WAV2VEC2_TRAIN_GFLOP_PER_AUDIO_SECOND * 1e9, env))
            row["parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
            return row
        rows.append(guarded(name, run))
    return {
        "rows": rows, "durations": duration_summary(durations),
        "config": {"recipe": str(RECIPE_CONFIG.relative_to(RECIPE_CONFIG.parents[3])),
                   "overrides": list(plan.wav2vec2_overrides), "max_batch_seconds": budget_s,
                   "grad_accum": accum, "max_batch_size": size, "num_buckets": config.data.num_buckets,
                   "size": plan.wav2vec2_size, "precision": "bf16 autocast (accelerate)",
                   "gflop_per_audio_second": WAV2VEC2_TRAIN_GFLOP_PER_AUDIO_SECOND},
    }


# --- (b) whisper-small seq2seq --------------------------------------------------------------------
def whisper_part(plan: Plan, env: dict, budget: Budget) -> dict:
    config = load_config(None, ["model.type=whisper", "train.precision=bf16", "optim.lr=1e-5",
                                "optim.warmup_steps=1", "optim.max_grad_norm=1.0"])
    family = get_family("whisper")
    rng = np.random.default_rng(0)
    durations = librispeech_durations(plan.utterances, rng, plan.duration_scale)
    needed = plan.train_warmup + plan.train_steps
    batch = plan.whisper_batch
    order = rng.permutation(len(durations))
    padded_budget = batch * WHISPER_WINDOW
    sampler = DurationBatchSampler(durations, BatchingOptions(max_batch_seconds=padded_budget,
                                                              max_batch_size=4 * batch, num_buckets=30, seed=0))
    setups = {
        "30 s windows": ([order[i * batch:(i + 1) * batch] for i in range(needed)], False),
        "variable windows": (sampler.batches()[:needed], True),
    }
    maker = AudioMaker(seed=2)
    processor = models.whisper_processor()

    def make_step(batches, variable: bool):
        def make(i: int) -> Step:
            seconds = durations[batches[i]]
            waves = maker.waves(seconds)
            # One synthetic token per character: TOKENS_PER_SECOND characters give real label lengths.
            rows = [{"text": random_text(d, rng, TOKENS_PER_SECOND)} for d in seconds]
            micro = {**family.collate(processor, rows, waves), "audio_seconds": float(seconds.sum())}
            window = whisper.window_samples(waves, variable) / SAMPLE_RATE
            return Step([micro], float(seconds.sum()), len(seconds) * window, len(seconds))
        return make

    rows = []
    for j, (name, (batches, variable)) in enumerate(setups.items()):
        share = budget.share(1 / (len(setups) - j))

        def run(batches=batches, variable=variable, share=share):
            model = models.whisper_model(plan.whisper_size, processor, plan.device)
            whisper.use_variable_length(model, processor, variable)  # the model option (and collate's)
            row = train_setup(family, model, config, make_step(batches, variable), plan, share)
            row["mean_window_s"] = row["padded_seconds"] / row["utterances"]
            if not variable:  # the FLOP count is for 30-s windows only
                row.update(mfu(row["samples_per_s"] * WHISPER_SMALL_TRAIN_TFLOP_PER_SAMPLE * 1e12, env))
            row["parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
            return row
        rows.append(guarded(name, run))
    return {
        "rows": rows, "durations": duration_summary(durations),
        "config": {"size": plan.whisper_size, "batch_30s": batch, "variable_padded_budget_s": padded_budget,
                   "variable_max_batch_size": 4 * batch, "variable_windows": "asr_sft whisper variable_length "
                   "(longest utterance rounded up to 20 ms)", "tokens_per_second": TOKENS_PER_SECOND,
                   "attention": "sdpa", "precision": "bf16 autocast (accelerate)",
                   "tflop_per_sample_30s": WHISPER_SMALL_TRAIN_TFLOP_PER_SAMPLE},
    }
