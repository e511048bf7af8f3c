"""(c) Decoding RTFx: asr-sft's batched decoder vs transformers' ASR pipeline, same model object,
same GPU, same inputs (whisper-small- and wav2vec2-base-shaped random models, bf16).

Timing follows the Open ASR Leaderboard: one untimed warm-up batch, device-synchronised wall
timers, from waveform (already in memory: audio loading is outside) to text; RTFx = audio seconds /
those seconds. asr-sft: the batches `decode_rows_timed` makes (asr_sft.evaluation.decode.make_batches:
longest first) through the families' `decode_batch`, each timed as decode_rows_timed times it
(decode_rows_timed itself reads audio files, which this benchmark does not have). Features on the
model's device. Pipeline: `pipeline("automatic-speech-recognition")` on the list of arrays with
batch_size set (its WhisperFeatureExtractor / Wav2Vec2FeatureExtractor on the CPU).

Random weights emit arbitrary lengths, so Whisper is forced to generate exactly plan.decode_tokens
tokens in both (min_new_tokens = max_new_tokens, greedy); a hook counts the decoder's forward
calls to show it (one per token, in every setup: our default's fallback check takes greedy
attempts' log-probabilities from the search itself, with no extra pass). Two asr-sft Whisper rows:
greedy alone, and the default with fallback checks that cannot trigger (see asr_sft_setups).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from transformers import pipeline

from asr_sft.evaluation.decode import decode_batch, make_batches
from asr_sft.models.options import DecodeOptions

from gpu_bench import models
from gpu_bench.common import LETTERS, AudioMaker, Budget, Plan, duration_summary, guarded, librispeech_durations, timed
from gpu_bench.train import RECIPE_CONFIG

DTYPE = torch.bfloat16
OPTIONS_SHOWN = ("batch_size", "max_new_tokens", "num_beams", "dtype", "fallback", "logprob_threshold",
                 "compression_ratio_threshold")  # recorded with each asr-sft row


class CallCounter:
    """Counts forward calls of a module (the Whisper decoder: one per generated token)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1

    def remove(self) -> None:
        self.handle.remove()


def time_ours(model, processor, waves, durations, options: DecodeOptions, plan: Plan, budget: Budget) -> dict:
    rows = [{"duration": float(d)} for d in durations]
    batches = make_batches(rows, options)
    decode_batch(model, processor, [waves[i] for i in batches[0]], options)  # warm-up, untimed
    seconds, audio, done = 0.0, 0.0, 0
    for batch in batches:
        if budget.expired() and done:
            break
        texts, elapsed = timed(lambda: decode_batch(model, processor, [waves[i] for i in batch], options),
                               plan.device)
        seconds, audio, done = seconds + elapsed, audio + float(sum(durations[i] for i in batch)), done + 1
        assert len(texts) == len(batch)
    return {"batches": done, "utterances": sum(len(b) for b in batches[:done]), "audio_seconds": audio,
            "seconds": seconds, "rtfx": audio / seconds, "truncated": done < len(batches)}


def time_pipeline(pipe, waves, durations, plan: Plan, budget: Budget, generate_kwargs: dict | None) -> dict:
    arrays = [w.numpy() for w in waves]  # the pipeline takes numpy (made outside the timer)
    kwargs = {"batch_size": plan.decode_batch}
    if generate_kwargs is not None:
        kwargs["generate_kwargs"] = generate_kwargs
    pipe(arrays[:plan.decode_batch], **kwargs)  # warm-up, untimed
    seconds, audio, done = 0.0, 0.0, 0
    # Chunks of a few batches, so the time cap can stop it between them.
    chunk = 2 * plan.decode_batch
    for start in range(0, len(arrays), chunk):
        if budget.expired() and done:
            break
        part = arrays[start:start + chunk]
        out, elapsed = timed(lambda: pipe(part, **kwargs), plan.device)
        assert len(out) == len(part)
        seconds, audio = seconds + elapsed, audio + float(durations[start:start + chunk].sum())
        done += len(part)
    return {"batches": -(-done // plan.decode_batch), "utterances": done, "audio_seconds": audio,
            "seconds": seconds, "rtfx": audio / seconds, "truncated": done < len(arrays)}


def asr_sft_setups(whisper: bool, plan: Plan) -> dict[str, DecodeOptions]:
    """Our decoder's settings. Whisper: greedy alone (the pipeline's work), and the default with its
    fallback checks (a log-probability per step of the search, a compression ratio per
    utterance) whose thresholds no attempt can fail, so it costs what a model whose output passes
    costs; random weights would otherwise fail the log-probability check and re-decode every
    utterance at 5 temperatures."""
    base = DecodeOptions(batch_size=plan.decode_batch, max_new_tokens=plan.decode_tokens, num_beams=1,
                         dtype="bfloat16", progress=False)
    if not whisper:
        return {"asr-sft": base}
    return {"asr-sft greedy": replace(base, fallback=False),
            "asr-sft default": replace(base, fallback=True, logprob_threshold=-math.inf,
                                       compression_ratio_threshold=math.inf)}


def compare(model_name: str, model, processor, waves, durations, plan: Plan, budget: Budget,
            counter_module=None) -> list[dict]:
    """Rows for asr-sft's decoder and the pipeline on one model, the budget shared equally."""
    tokens = plan.decode_tokens
    whisper = counter_module is not None
    if whisper:  # our decoder builds its generation config from the model's: the minimum comes from it
        model.generation_config.min_new_tokens = tokens
    generate_kwargs = (dict(min_new_tokens=tokens, max_new_tokens=tokens, num_beams=1, do_sample=False)
                       if whisper else None)
    setups = {**asr_sft_setups(whisper, plan), "pipeline": None}
    rows = []
    for j, (name, options) in enumerate(setups.items()):
        share = budget.share(1 / (len(setups) - j))

        def run(options=options, share=share):
            counter = CallCounter(counter_module) if whisper else None
            try:
                if options is not None:
                    row = time_ours(model, processor, waves, durations, options, plan, share)
                    row["options"] = {k: getattr(options, k, None) for k in OPTIONS_SHOWN}
                else:
                    pipe = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                                    feature_extractor=processor.feature_extractor, device=torch.device(plan.device))
                    row = time_pipeline(pipe, waves, durations, plan, share, generate_kwargs)
            finally:
                if counter:
                    counter.remove()
            if counter:  # warm-up batch included: calls per batch over every generate
                row["decoder_calls_per_batch"] = counter.calls / (row["batches"] + 1)
            return {"model": model_name, **row}
        rows.append(guarded(name, run))
    theirs = rows[-1]
    for ours in rows[:-1]:
        if "rtfx" in ours and "rtfx" in theirs:
            ours["speedup_vs_pipeline"] = ours["rtfx"] / theirs["rtfx"]
    return rows


def decode_part(plan: Plan, env: dict, budget: Budget) -> dict:
    rng = np.random.default_rng(3)
    durations = librispeech_durations(plan.decode_utterances, rng, plan.duration_scale)
    waves = AudioMaker(seed=3).waves(durations)
    rows = []

    whisper_budget = budget.share(0.6)
    processor = models.whisper_processor()
    model = models.whisper_model(plan.whisper_size, processor, plan.device).to(DTYPE).eval()
    rows += compare(f"whisper-{plan.whisper_size}", model, processor, waves, durations, plan, whisper_budget,
                    counter_module=model.get_decoder())
    del model

    from asr_sft.training.config import load_config

    options = load_config(RECIPE_CONFIG).model
    ctc_processor = models.ctc_processor(["".join(LETTERS)], return_attention_mask=False)
    model = models.wav2vec2_model(plan.wav2vec2_size, options, len(ctc_processor.tokenizer), plan.device)
    model = model.to(DTYPE).eval()
    rows += compare(f"wav2vec2-{plan.wav2vec2_size}", model, ctc_processor, waves, durations, plan, budget.share(1.0))
    return {"rows": rows, "durations": duration_summary(durations),
            "config": {"batch_size": plan.decode_batch, "whisper_new_tokens": plan.decode_tokens,
                       "dtype": "bfloat16", "greedy": True}}
