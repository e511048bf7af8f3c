"""Benchmark training throughput: our loop's setup vs a naive baseline, same model and data, one run.

    python bench/bench_train.py                       # CPU: small model, 1 torch thread
    python bench/bench_train.py --device cuda         # GPU: wav2vec2-base-sized model, bf16

Both setups run `asr_sft.training.loop.train_step` (the training loop's own step, through accelerate) on
batches collated by `asr_sft.training.loop.collate` (audio read from disk, as the loop does), starting from
the same random CTC model with its convolutional feature encoder frozen, under the same budget of
padded audio seconds per batch. They differ in what the loop adds:

    ours   duration-bucketed batches (DurationBatchSampler), bf16 autocast on GPU (fp32 on CPU)
    naive  random batches cut greedily under the same budget (no buckets), fp32

Each setup takes `--warmup` untimed steps, then `--steps` timed ones; throughput is REAL (unpadded)
audio-seconds trained per wall-second, data loading included. On GPU also audio-hours per GPU-hour
(the same number) and model-FLOP utilisation at ~35 GFLOP per audio-second (wav2vec2-base training
with the CNN frozen) against the H100 SXM dense bf16 peak of 989 TFLOP/s.

Data: espeak-ng speech synthesized into a temporary folder, clips of the same voice joined into
utterances whose durations roughly follow LibriSpeech train-clean-100's (mostly 10-20 s, a quarter
shorter; mean ~13-14 s), since padding depends on that spread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from asr_sft.data.audio import SAMPLE_RATE, load_audio, write_audio
from asr_sft.data.batching import BatchingOptions, DurationBatchSampler, batch_stats, pack_batches
from asr_sft.training.config import load_config
from asr_sft.data.manifest import make_row, read_manifest, write_manifest
from asr_sft.models import ctc as ctc_family
from asr_sft.models.ctc import CTCModelOptions, build_vocab, init_ctc_model, load_ctc_model
from asr_sft.corpora.synthetic.synth import SynthOptions, synthesize_corpus
from asr_sft.training.loop import TrainState, collate, make_optimizer, train_step

TRAIN_GFLOP_PER_AUDIO_SECOND = 35.0  # wav2vec2-base, forward + backward, CNN frozen (REFERENCE.md)
H100_BF16_PEAK_TFLOPS = 989.0  # H100 SXM dense bf16 (PCIe: ~756)
GAP_SECONDS = 0.15  # silence between joined clips
CLIP_SECONDS = 3.5  # mean espeak-ng clip of a generated sentence (BENCHMARKS.md, synthesis)
SHORT_FRACTION = 0.25  # utterances drawn uniform in SHORT_RANGE; the rest around LONG_MEAN
SHORT_RANGE = (1.5, 10.0)  # seconds
LONG_MEAN, LONG_STD, LONG_MAX = 13.0, 2.0, 24.5  # seconds (targets; joined clips overshoot a little)
DEFAULTS = {  # per device: model size, minutes of audio, padded seconds per batch, buckets, steps
    "cpu": dict(size="small", minutes=15.0, max_batch_seconds=60.0, num_buckets=4, steps=8, warmup=1,
                workers=1),
    # 3 h of audio: each of the 8 buckets then holds ~3 batches of 400 s, so few are partly filled.
    "cuda": dict(size="base", minutes=180.0, max_batch_seconds=400.0, num_buckets=8, steps=15, warmup=3,
                 workers=min(8, os.cpu_count() or 1)),
}


# --- data ----------------------------------------------------------------------------------------
def target_durations(n: int, rng: np.random.Generator) -> np.ndarray:
    short = rng.uniform(*SHORT_RANGE, size=n)
    long = np.clip(rng.normal(LONG_MEAN, LONG_STD, size=n), SHORT_RANGE[1], LONG_MAX)
    return np.where(rng.random(n) < SHORT_FRACTION, short, long)


def make_corpus(out: Path, minutes: float, seed: int, workers: int) -> Path:
    """A manifest of ~`minutes` of LibriSpeech-like utterances under `out`; returns its path."""
    speakers = 10
    per_speaker = math.ceil(minutes * 60 / CLIP_SECONDS / speakers)
    synth = synthesize_corpus(out / "synth", SynthOptions(
        speakers_per_accent=speakers, utterances_per_speaker=per_speaker, splits=(("train", 1.0),),
        seed=seed, num_workers=workers))
    clips = read_manifest(synth.manifests["train"])
    rng = np.random.default_rng(seed)
    rows, by_speaker = [], {}
    for clip in clips:
        by_speaker.setdefault(clip["speaker"], []).append(clip)
    gap = torch.zeros(int(GAP_SECONDS * SAMPLE_RATE))
    for speaker, pending in by_speaker.items():
        targets = iter(target_durations(len(pending), rng))
        while pending:
            target, parts, seconds = next(targets), [], 0.0
            while pending and (not parts or seconds < target):
                clip = pending.pop(0)
                parts.append(clip)
                seconds += clip["duration"] + GAP_SECONDS
            wave = torch.cat([x for c in parts for x in (load_audio(c["audio_filepath"]), gap)][:-1])
            path = out / "joined" / f"{speaker}-{len(rows):05d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_audio(path, wave, SAMPLE_RATE)
            rows.append(make_row(id=path.stem, audio_filepath=str(path), duration=len(wave) / SAMPLE_RATE,
                                 text=" ".join(c["text"] for c in parts), speaker=speaker, corpus="synth",
                                 split="train", sampling_rate=SAMPLE_RATE))
    return write_manifest(out / "joined.jsonl", rows)


# --- batches -------------------------------------------------------------------------------------
def bucketed_batches(durations: list[float], args, needed: int) -> list[list[int]]:
    """The loop's batches (DurationBatchSampler, shuffled buckets), epochs in turn until `needed`."""
    sampler = DurationBatchSampler(durations, BatchingOptions(
        max_batch_seconds=args.max_batch_seconds, max_batch_size=args.max_batch_size,
        num_buckets=args.num_buckets, seed=args.seed))
    batches, epoch = [], 0
    while len(batches) < needed:
        sampler.set_epoch(epoch)
        batches += list(iter(sampler))
        epoch += 1
    return batches[:needed]


def random_batches(durations: list[float], args, needed: int) -> list[list[int]]:
    """Random order cut greedily under the same padded-seconds budget, epochs in turn until `needed`."""
    batches, epoch = [], 0
    while len(batches) < needed:
        order = np.random.default_rng([args.seed, epoch]).permutation(len(durations))
        batches += pack_batches(order, np.asarray(durations), args.max_batch_seconds, args.max_batch_size)
        epoch += 1
    return batches[:needed]


# --- one setup -----------------------------------------------------------------------------------
def run_setup(name: str, model_dir: Path, rows: list[dict], batches: list[list[int]], precision: str,
              device: str, warmup: int) -> dict:
    """Train len(batches) steps (the first `warmup` untimed); throughput of the timed ones."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # a second Accelerator may use another mixed precision
    accelerator = Accelerator(mixed_precision=precision, cpu=device == "cpu")
    torch.manual_seed(0)
    model, processor = load_ctc_model(model_dir, options=CTCModelOptions(freeze_feature_encoder=True))
    config = load_config(None, ["optim.lr=5e-5", "optim.warmup_steps=1", f"train.max_steps={len(batches)}",
                                "optim.max_grad_norm=1.0"])
    optimizer, scheduler = make_optimizer(model, ctc_family.trainable_parameters(model), config)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()
    durations = np.array([r["duration"] for r in rows])
    load_s = step_s = 0.0
    losses = []
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        micro = [collate(ctc_family, processor, [rows[j] for j in batch])]
        t1 = time.perf_counter()
        # train_step syncs the device (it returns float(loss)), so t2 - t1 is the step's real time
        stats = train_step(ctc_family, model, optimizer, scheduler, micro, accelerator, config, state)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= warmup:
            load_s, step_s = load_s + t1 - t0, step_s + t2 - t1
            losses.append(stats["loss"])
    timed = batches[warmup:]
    stats = batch_stats(timed, durations)
    result = {
        "setup": name, "precision": precision, "device": str(accelerator.device), "steps": len(timed),
        "audio_seconds": stats["audio_seconds"], "padded_seconds": stats["padded_seconds"],
        "padding_fraction": stats["padding_fraction"], "mean_batch_size": stats["mean_batch_size"],
        "load_seconds": load_s, "step_seconds": step_s, "wall_seconds": load_s + step_s,
        "audio_seconds_per_second": stats["audio_seconds"] / (load_s + step_s),
        "mean_loss": float(np.mean(losses)),
        "parameters": sum(t.numel() for t in model.parameters()),
    }
    if accelerator.device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del model, optimizer
    return result


# --- report --------------------------------------------------------------------------------------
def print_results(results: list[dict], args, corpus: dict) -> None:
    print(f"data: {corpus['utterances']} utterances, {corpus['seconds'] / 60:.1f} min of synthetic speech "
          f"(mean {corpus['mean']:.1f} s, max {corpus['max']:.1f} s); model {args.size} "
          f"({corpus['parameters'] / 1e6:.1f} M parameters, CNN frozen); budget {args.max_batch_seconds:g} "
          f"padded s per batch; {args.num_buckets} buckets; torch threads {torch.get_num_threads()}")
    gpu = results[0]["device"].startswith("cuda")
    print(f"{'setup':<7} {'prec':<5} {'steps':>5} {'audio s':>8} {'padding':>8} {'utts/batch':>10} "
          f"{'load s':>7} {'step s':>7} {'audio-s/s':>10}" + (f" {'MFU':>6} {'peak GiB':>8}" if gpu else ""))
    for r in results:
        line = (f"{r['setup']:<7} {r['precision']:<5} {r['steps']:>5} {r['audio_seconds']:>8.0f} "
                f"{r['padding_fraction']:>8.1%} {r['mean_batch_size']:>10.1f} {r['load_seconds']:>7.2f} "
                f"{r['step_seconds']:>7.2f} {r['audio_seconds_per_second']:>10.1f}")
        if gpu:
            line += f" {r.get('mfu', float('nan')):>6.1%} {r['peak_memory_gib']:>8.1f}"
        print(line)
    ours, naive = results
    print(f"throughput ours / naive: {ours['audio_seconds_per_second'] / naive['audio_seconds_per_second']:.2f}x "
          f"(padding {ours['padding_fraction']:.1%} vs {naive['padding_fraction']:.1%})")
    if gpu:
        print(f"ours: {ours['audio_seconds_per_second']:.0f} audio-hours per GPU-hour; MFU {ours['mfu']:.1%} at "
              f"{TRAIN_GFLOP_PER_AUDIO_SECOND:g} GFLOP per audio-second vs {H100_BF16_PEAK_TFLOPS:g} TFLOP/s "
              "(H100 SXM bf16 dense peak)" + ("" if args.size == "base" else
                                                 "; not meaningful: the FLOP figure is wav2vec2-base's"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--size", choices=["tiny", "small", "base"], help="default: small (CPU), base (GPU)")
    parser.add_argument("--minutes", type=float, help="audio to synthesize (default: 15 CPU, 180 GPU)")
    parser.add_argument("--max-batch-seconds", type=float, help="padded seconds per batch (default: 60 CPU, 400 GPU)")
    parser.add_argument("--max-batch-size", type=int, default=128)
    parser.add_argument("--num-buckets", type=int, help="(default: 4 CPU, 8 GPU: a few batches per bucket)")
    parser.add_argument("--steps", type=int, help="timed steps per setup (default: 8 CPU, 15 GPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 1 CPU, 3 GPU)")
    parser.add_argument("--precision", choices=["no", "bf16", "fp16"], help="ours (default: bf16 GPU, no CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--workers", type=int, help="synthesis processes (default: 1 CPU, up to 8 GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    for key, value in DEFAULTS[device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    precision = args.precision or ("bf16" if device == "cuda" else "no")
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars between the tables
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = make_corpus(Path(tmp) / "data", args.minutes, args.seed, args.workers)
        rows = read_manifest(manifest)
        durations = [r["duration"] for r in rows]
        print(f"synthesized and joined the data in {time.perf_counter() - t0:.1f} s")
        model_dir = init_ctc_model(Path(tmp) / "model", args.size, vocab=build_vocab(r["text"] for r in rows))
        needed = args.warmup + args.steps
        results = [
            run_setup("ours", model_dir, rows, bucketed_batches(durations, args, needed), precision, device,
                      args.warmup),
            run_setup("naive", model_dir, rows, random_batches(durations, args, needed), "no", device,
                      args.warmup),
        ]
    if device == "cuda":  # model-FLOP utilisation: useful (unpadded) audio only
        for r in results:
            r["mfu"] = (r["audio_seconds_per_second"] * TRAIN_GFLOP_PER_AUDIO_SECOND * 1e9
                        / (H100_BF16_PEAK_TFLOPS * 1e12))
    corpus = {"utterances": len(rows), "seconds": sum(durations), "mean": float(np.mean(durations)),
              "max": max(durations), "parameters": results[0]["parameters"]}
    print_results(results, args, corpus)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "corpus": corpus,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
