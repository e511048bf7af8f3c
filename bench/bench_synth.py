"""Benchmark espeak-ng corpus synthesis with num_workers=1 (one core).

    python bench/bench_synth.py [--accents en-us,en-gb-scotland] [--speakers-per-accent 4]
                                [--utterances-per-speaker 25] [--repeat 2] [--num-workers 1]

Synthesizes a fresh corpus into a temporary folder `--repeat` times and prints audio-seconds
produced per wall-second and per CPU-second, where CPU time is this process plus its children
(espeak-ng runs as one child process per utterance): resource.getrusage(RUSAGE_SELF) +
getrusage(RUSAGE_CHILDREN). Then times each stage of one utterance path (espeak-ng, WAV parse +
resample to 16 kHz, FLAC write) on the first 50 sentences, so the total can be traced to its parts.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr_sft.data.audio import resample, write_audio
from asr_sft.corpora.synthetic.espeak import check_espeak, speak
from asr_sft.corpora.synthetic.sentences import generate_sentences
from asr_sft.corpora.synthetic.synth import SynthOptions, synthesize_corpus


def cpu_seconds() -> tuple[float, float]:
    """(this process, its waited-for children) user + system CPU seconds."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def bench_corpus(options: SynthOptions, repeat: int) -> None:
    for run in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            (own0, kids0), wall0 = cpu_seconds(), time.perf_counter()
            result = synthesize_corpus(Path(tmp) / "corpus", options)
            wall = time.perf_counter() - wall0
            own1, kids1 = cpu_seconds()
        audio = result.synthesized_seconds
        cpu = (own1 - own0) + (kids1 - kids0)
        print(f"run {run + 1}: {result.synthesized} utterances, {audio:.0f} s of audio "
              f"({audio / result.synthesized:.2f} s each); wall {wall:.2f} s -> {audio / wall:.0f}x real time; "
              f"CPU {cpu:.2f} s (self {own1 - own0:.2f} + children {kids1 - kids0:.2f}) "
              f"-> {audio / cpu:.0f} audio-s per CPU-s")  # fmt: skip


def bench_stages(accent: str, n: int = 50) -> None:
    """CPU seconds per stage for n utterances (one thread, as synthesize_corpus runs them)."""
    torch.set_num_threads(1)
    sentences = generate_sentences(n, seed=123)
    timings = {"espeak-ng (child)": 0.0, "espeak-ng (parent side)": 0.0, "resample 22.05->16 kHz": 0.0,
               "FLAC write": 0.0}  # fmt: skip
    audio = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(sentences):
            own0, kids0 = cpu_seconds()
            samples, rate = speak(sentence, f"{accent}+m3", 170, 50)
            own1, kids1 = cpu_seconds()
            wave = resample(torch.from_numpy(samples.astype(np.float32) / 32768.0), rate, 16000)
            own2, _ = cpu_seconds()
            write_audio(Path(tmp) / f"{i}.flac", wave.clamp(-1.0, 32767 / 32768), 16000)
            own3, _ = cpu_seconds()
            timings["espeak-ng (child)"] += kids1 - kids0
            timings["espeak-ng (parent side)"] += own1 - own0
            timings["resample 22.05->16 kHz"] += own2 - own1
            timings["FLAC write"] += own3 - own2
            audio += samples.size / rate
    total = sum(timings.values())
    print(f"stages over {n} utterances ({audio:.0f} s of audio), CPU ms per utterance:")
    for name, seconds in timings.items():
        print(f"  {name:<26} {1000 * seconds / n:6.1f} ms  ({100 * seconds / total:4.1f}%)")
    print(f"  {'total':<26} {1000 * total / n:6.1f} ms  -> {audio / total:.0f} audio-s per CPU-s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accents", default="en-us,en-gb-scotland")
    parser.add_argument("--speakers-per-accent", type=int, default=4)
    parser.add_argument("--utterances-per-speaker", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=1)
    args = parser.parse_args()
    options = SynthOptions(
        accents=tuple(args.accents.split(",")), speakers_per_accent=args.speakers_per_accent,
        utterances_per_speaker=args.utterances_per_speaker, num_workers=args.num_workers,
    )  # fmt: skip
    print(check_espeak(options.accents))
    bench_corpus(options, args.repeat)
    bench_stages(options.accents[0])


if __name__ == "__main__":
    main()
