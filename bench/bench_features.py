"""Throughput of audio loading and Whisper log-mel features, in audio-seconds per CPU-second.

  python bench/bench_features.py [--clips 16] [--seconds 10] [--threads 1] [--repeat 3]

(a) decode + resample: FLAC files at 22.05 kHz (cut from the real clips in ../shared/data/real-clips)
    loaded with asr_sft.audio.load_audio to 16 kHz, one file at a time; decode alone for reference.
(b) Whisper log-mel of the same clips (padded to 30 s as Whisper does): asr_sft.features (batched)
    vs transformers' WhisperFeatureExtractor numpy path and its default path, same run, as ratios.
    On a CUDA machine, ours on the GPU too (inputs already on the device, timer synchronised).

CPU-seconds are time.process_time (all threads of this process); wall is time.perf_counter.
Each figure is the best of --repeat runs after one warm-up. Audio seconds count real audio, not padding.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from asr_sft.data import features
from asr_sft.data.audio import load_audio, write_audio

REAL_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-clips"
FLAC_RATE = 22050  # Hz: LJSpeech's rate, so loading has to resample


def make_flacs(folder: Path, clips: int, seconds: float) -> list[Path]:
    """`clips` FLAC files of `seconds` each at 22.05 kHz, cut from the real clips end to end."""
    lines = (REAL_CLIPS / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    speech = torch.cat([load_audio(REAL_CLIPS / line.split("\t")[0], FLAC_RATE) for line in lines])
    size = int(seconds * FLAC_RATE)
    reps = -(-clips * size // len(speech))  # ceil: enough copies to cut every clip
    speech = speech.repeat(reps)
    paths = []
    for i in range(clips):
        path = folder / f"clip{i:03d}.flac"
        write_audio(path, speech[i * size : (i + 1) * size], FLAC_RATE)
        paths.append(path)
    return paths


def measure(fn, repeat: int, sync=lambda: None) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of `repeat` calls after one warm-up call."""
    fn()
    sync()
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        sync()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall


def report(name: str, audio_s: float, cpu_s: float, wall_s: float) -> float:
    rate = audio_s / cpu_s
    print(f"  {name:<44} {rate:>10.1f} audio-s/CPU-s {audio_s / wall_s:>10.1f} audio-s/wall-s")
    return rate


def bench_loading(paths: list[Path], audio_s: float, repeat: int) -> None:
    print(f"(a) loading {len(paths)} FLAC files at {FLAC_RATE} Hz, one at a time")
    report("decode only (soundfile)", audio_s, *measure(lambda: [load_audio(p, None) for p in paths], repeat))
    report("decode + resample to 16 kHz (load_audio)", audio_s,
           *measure(lambda: [load_audio(p) for p in paths], repeat))


def bench_whisper_mel(waves: list[torch.Tensor], audio_s: float, repeat: int) -> None:
    print(f"(b) Whisper log-mel (80 bins, 30 s chunks) of {len(waves)} clips, one batch")
    arrays = [w.numpy() for w in waves]
    default = WhisperFeatureExtractor()
    numpy_only = WhisperFeatureExtractor()
    numpy_only._torch_extract_fbank_features = numpy_only._np_extract_fbank_features  # force numpy path
    ours = report("asr_sft.features.log_mel_spectrogram", audio_s,
                  *measure(lambda: features.log_mel_spectrogram(waves), repeat))
    np_rate = report("WhisperFeatureExtractor, numpy path", audio_s,
                     *measure(lambda: numpy_only(arrays, sampling_rate=16000, return_tensors="np"), repeat))
    pt_rate = report("WhisperFeatureExtractor, default path", audio_s,
                     *measure(lambda: default(arrays, sampling_rate=16000, return_tensors="np"), repeat))
    print(f"  ours / numpy path: {ours / np_rate:.1f}x   ours / default path: {ours / pt_rate:.1f}x  (CPU-s)")
    if torch.cuda.is_available():
        on_gpu = [w.cuda() for w in waves]
        cpu_s, wall_s = measure(lambda: features.log_mel_spectrogram(on_gpu), repeat, torch.cuda.synchronize)
        print(f"  ours on {torch.cuda.get_device_name()}: {audio_s / wall_s:.1f} audio-s/wall-s "
              f"(device-synchronised, inputs already on the GPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16, help="number of clips (one batch)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per clip (<= 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: a one-core figure)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure; the best is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.clips} clips x {args.seconds:g} s, torch threads {args.threads}, "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        paths = make_flacs(Path(tmp), args.clips, args.seconds)
        audio_s = args.clips * args.seconds
        bench_loading(paths, audio_s, args.repeat)
        waves = [load_audio(p) for p in paths]
    bench_whisper_mel(waves, audio_s, args.repeat)


if __name__ == "__main__":
    main()
