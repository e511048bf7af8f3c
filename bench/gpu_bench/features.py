"""(d) Whisper log-mel of one batch (30-s windows, 80 bins): asr_sft.data.features.log_mel_spectrogram
on the GPU (waves copied there inside the timer; the features stay there, where the model reads
them) and on the CPU, vs transformers' WhisperFeatureExtractor (its default torch path on the CPU,
and its device="cuda" path, which copies the features back to numpy). Median of plan.feature_repeats
timed calls after one warm-up; audio seconds are real (unpadded) ones."""

from __future__ import annotations

import statistics

import numpy as np
import torch

from asr_sft.data.features import WhisperMelOptions, log_mel_spectrogram

from gpu_bench import models
from gpu_bench.common import SAMPLE_RATE, AudioMaker, Budget, Plan, duration_summary, guarded, librispeech_durations, timed


def measure(fn, plan: Plan, device: str, budget: Budget) -> dict:
    out, _ = timed(fn, device)  # warm-up (kernels, filterbank caches)
    times = []
    for _ in range(plan.feature_repeats):
        if budget.expired() and times:
            break
        out, seconds = timed(fn, device)
        times.append(seconds)
    return {"out": out, "repeats": len(times), "seconds": statistics.median(times)}


def features_part(plan: Plan, env: dict, budget: Budget) -> dict:
    rng = np.random.default_rng(4)
    durations = librispeech_durations(plan.feature_batch, rng, plan.duration_scale)
    waves = AudioMaker(seed=4).waves(durations)
    arrays = [w.numpy() for w in waves]
    audio = float(durations.sum())
    options = WhisperMelOptions(n_mels=models.whisper.N_MELS)
    extractor = models.whisper_processor().feature_extractor

    def transformers_mel(device: str):
        return extractor(arrays, sampling_rate=SAMPLE_RATE, return_tensors="pt", device=device).input_features

    setups = [("asr-sft cpu", "cpu", lambda: log_mel_spectrogram(waves, options=options))]
    if plan.device == "cuda":
        setups.insert(0, ("asr-sft cuda", "cuda",
                          lambda: log_mel_spectrogram([w.to("cuda") for w in waves], options=options)))
    setups.append(("WhisperFeatureExtractor cpu", "cpu", lambda: transformers_mel("cpu")))
    if plan.device == "cuda":
        setups.append(("WhisperFeatureExtractor cuda", "cuda", lambda: transformers_mel("cuda")))

    reference = transformers_mel("cpu")
    rows = []
    for j, (name, device, fn) in enumerate(setups):
        share = budget.share(1 / (len(setups) - j))

        def run(fn=fn, device=device, share=share):
            result = measure(fn, plan, device, share)
            out = result.pop("out").float().cpu()
            return {"device": device, "utterances": len(waves), **result,
                    "ms_per_utterance": 1000 * result["seconds"] / len(waves),
                    "audio_s_per_s": audio / result["seconds"],
                    "max_abs_diff_vs_transformers": float((out - reference).abs().max())}
        rows.append(guarded(name, run))
    base = next((r for r in rows if r["setup"] == "WhisperFeatureExtractor cpu" and "seconds" in r), None)
    for row in rows:
        if base and "seconds" in row:
            row["speedup_vs_transformers_cpu"] = base["seconds"] / row["seconds"]
    return {"rows": rows, "durations": duration_summary(durations),
            "config": {"n_mels": options.n_mels, "window_s": 30, "torch_threads": torch.get_num_threads()}}
