"""Whisper fine-tuning with 30 s encoder windows vs variable-length windows, on LibriSpeech-like
durations: the same fine-tune (same data, batches, steps, seed) through the training loop, then
the same held-out decode and score. Prints training throughput and held-out WER for each, and the
ratios, in one run.

    OMP_NUM_THREADS=2 python bench/bench_whisper_windows.py             # builtin:whisper-tiny.en, 24 steps of 8
    python bench/bench_whisper_windows.py --model random --steps 4      # tiny.en's shape, random weights: plumbing

Data: espeak-ng speech (en-us voices) synthesized into a temporary folder, clips of one voice joined
into utterances whose durations follow LibriSpeech train-clean-100's (bench_train.make_corpus:
mostly 10-20 s, mean ~13 s); speakers split 7 train / 1 dev / 2 test. Both runs use
`asr_sft.training.loop.train` with the same config but `model.variable_length`; the batches are the
same (the sampler's budget counts real seconds, not windows). Throughput: the loop's own log,
real audio-seconds trained per second (evaluation and loading excluded), mean over the steps
after the first. WER: `asr-sft decode`'s path on the test speakers with each run's checkpoint
(each decodes with the windows it was trained with), scored with whisper_en; the unadapted model
with 30 s windows as the reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from bench_train import make_corpus  # same folder: LibriSpeech-like joined utterances
from bench_whisper_train import base_model

from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest
from asr_sft.evaluation.scoring import score_texts
from asr_sft.training.config import load_config
from asr_sft.training.loop import train

SPLIT = {"train": 7, "dev": 1, "test": 2}  # speakers of the 10 make_corpus synthesizes
MODES = {"30 s windows": False, "variable windows": True}


def split_by_speaker(manifest: Path, out: Path) -> dict[str, Path]:
    rows = read_manifest(manifest)
    speakers = sorted({r["speaker"] for r in rows})
    paths, start = {}, 0
    for name, n in SPLIT.items():
        chosen = set(speakers[start:start + n])
        start += n
        paths[name] = write_manifest(out / f"{name}.jsonl", [r for r in rows if r["speaker"] in chosen])
    return paths


def fine_tune(model: str, paths: dict[str, Path], out: Path, variable: bool, args) -> dict:
    config = load_config(None, [
        f"data.train_manifest={paths['train']}", f"data.dev_manifest={paths['dev']}", f"train.output_dir={out}",
        "model.type=whisper", f"model.name_or_path={model}", "model.text_case=sentence",
        f"model.variable_length={str(variable).lower()}", "data.max_duration=30.0", "data.max_batch_seconds=240.0",
        f"data.max_batch_size={args.batch}", "data.num_buckets=4", "data.dev_max_utterances=4",
        f"optim.lr={args.lr}", "optim.warmup_steps=2", f"train.max_steps={args.steps}", "train.log_every=1",
        f"train.eval_every={args.steps}", f"train.save_every={args.steps}", "train.keep_last=0",
        "train.tensorboard=false", "train.eval_normalizer=whisper_en", "train.device=cpu", "data.loader_threads=1"])
    t0 = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - t0
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["audio_seconds_per_second"] for r in log if "loss" in r][1:]
    return {"checkpoint": result.best_checkpoint, "wall_s": wall, "audio_s_per_s": statistics.mean(rates),
            "padding": statistics.mean(r["padding_fraction"] for r in log if "loss" in r),
            "final_loss": [r["loss"] for r in log if "loss" in r][-1]}


def held_out_wer(model, test: Path, out: Path) -> tuple[float, float]:
    """(WER, decode seconds) of `model` on the test manifest, greedy, no fallback."""
    t0 = time.perf_counter()
    hyps = decode_manifest(model, test, out, DecodeOptions(progress=False, fallback=False))
    seconds = time.perf_counter() - t0
    rows = [json.loads(x) for x in hyps.read_text().splitlines()]
    return score_texts([r["ref"] for r in rows], [r["hyp"] for r in rows]).summary().wer, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:whisper-tiny.en", help="or 'random' (tiny.en's shape)")
    parser.add_argument("--minutes", type=float, default=30.0, help="audio to synthesize (all speakers)")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1.5e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = split_by_speaker(make_corpus(tmp / "data", args.minutes, seed=0, workers=2), tmp / "split")
        model = base_model(args.model, tmp)
        test = read_manifest(paths["test"])
        train_rows = read_manifest(paths["train"])
        print(f"data: {len(train_rows)} train utterances ({sum(r['duration'] for r in train_rows) / 60:.1f} min, "
              f"mean {statistics.mean(r['duration'] for r in train_rows):.1f} s), {len(test)} test utterances "
              f"of 2 held-out speakers; {args.steps} steps of up to {args.batch}, lr {args.lr:g}, model {args.model}")
        base_wer, base_s = held_out_wer(model, paths["test"], tmp / "decode-base")
        results = {}
        for name, variable in MODES.items():
            run = fine_tune(model, paths, tmp / name.replace(" ", "-"), variable, args)
            run["wer"], run["decode_s"] = held_out_wer(run.pop("checkpoint"), paths["test"], tmp / f"decode-{variable}")
            results[name] = run
    print(f"{'setup':<18} {'train audio-s/s':>15} {'train wall s':>12} {'final loss':>10} {'held-out WER':>12} "
          f"{'decode s':>8}")
    print(f"{'unadapted (30 s)':<18} {'-':>15} {'-':>12} {'-':>10} {base_wer:>12.1%} {base_s:>8.1f}")
    for name, r in results.items():
        print(f"{name:<18} {r['audio_s_per_s']:>15.2f} {r['wall_s']:>12.1f} {r['final_loss']:>10.3f} "
              f"{r['wer']:>12.1%} {r['decode_s']:>8.1f}")
    fixed, variable = results["30 s windows"], results["variable windows"]
    print(f"variable / 30 s: training throughput {variable['audio_s_per_s'] / fixed['audio_s_per_s']:.2f}x, "
          f"held-out WER {100 * (variable['wer'] - fixed['wer']):+.1f} points, decoding "
          f"{fixed['decode_s'] / variable['decode_s']:.2f}x faster")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "base_wer": base_wer,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
