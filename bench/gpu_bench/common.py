"""What every part shares: the run's shapes (Plan), LibriSpeech-like durations and generated audio,
time caps, device-synchronised timers, and how a part's failure is recorded.

Durations. LibriSpeech train-clean-100 (28,539 utterances, mean ~12.7 s, max ~24.5 s, REFERENCE.md)
is modelled as a clipped mixture: 72% normal(14.8 s, 2.0 s) (the bulk of its utterances, cut at
sentence ends near 15 s) and 28% uniform(1.3 s, 13 s) (the short tail), clipped to [1.3, 24.5] s.
Drawn 28,539 times (seed 0) this gives mean 12.7 s, max ~23 s, and under the recipe's 400-s batches
~30% padding for random batches vs ~2.5% for 30 duration buckets: REFERENCE.md's 29% / 2%.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000  # Hz (asr_sft.data.audio.SAMPLE_RATE)
LIBRISPEECH_UTTERANCES = 28539  # train-clean-100
LONG_FRACTION, LONG_MEAN, LONG_STD = 0.72, 14.8, 2.0  # seconds: the bulk of the utterances
SHORT_RANGE = (1.3, 13.0)  # seconds: the short tail, uniform
CLIP_RANGE = (1.3, 24.5)  # seconds: train-clean-100's shortest and longest
CHARS_PER_SECOND = 15.0  # LibriSpeech transcripts: ~2.7 words/s, ~5.5 characters per word with its space
TOKENS_PER_SECOND = 3.5  # the same speech in Whisper's BPE tokens (~1.3 per word)
NOISE_POOL_SECONDS = 60  # generated audio is cut from one pool of noise (cheap to make)
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))  # the CTC transcripts' alphabet (plus space)


@dataclass(frozen=True)
class Plan:
    """Shapes and counts of one run: GPU sizes, or tiny ones for the CPU smoke run."""

    smoke: bool  # tiny shapes on CPU (figures prove the code runs; they are not speeds)
    device: str  # "cuda" or "cpu"
    duration_scale: float  # LibriSpeech-like durations are multiplied by this
    utterances: int  # durations drawn for the training sets (batches are cut from them)
    wav2vec2_size: str  # asr_sft.models.ctc.SIZES key
    wav2vec2_overrides: tuple[str, ...]  # config overrides on top of the LibriSpeech recipe's
    whisper_size: str  # "small" (OpenAI whisper-small's shape) or an asr_sft.models.whisper.SIZES key
    train_warmup: int  # untimed optimizer steps per setup
    train_steps: int  # timed optimizer steps per setup (fewer if the time cap is reached)
    whisper_batch: int  # utterances per 30-s-window batch
    decode_utterances: int
    decode_batch: int  # utterances per batch, both decoders (the Open ASR Leaderboard uses 64)
    decode_tokens: int  # Whisper: tokens generated per utterance, forced (min = max new tokens)
    feature_batch: int  # utterances per log-mel batch
    feature_repeats: int  # timed repeats (median) per feature extractor
    matmul_size: int  # n of the n x n x n bf16 matrix product timed as the measured ceiling
    caps: dict  # part name -> seconds it may take (checked between steps)


def make_plan(smoke: bool) -> Plan:
    if smoke:
        return Plan(
            smoke=True, device="cpu", duration_scale=0.25, utterances=400, wav2vec2_size="tiny",
            # 50 padded s per micro-batch, 2 per step (the recipe's 400 s x 4, scaled down); channel
            # masks of 16, not the recipe's 64, which is the tiny model's whole hidden size
            wav2vec2_overrides=("data.max_batch_seconds=50.0", "optim.grad_accum=2",
                                "model.mask_feature_length=16"),
            whisper_size="tiny", train_warmup=1, train_steps=2, whisper_batch=2, decode_utterances=6,
            decode_batch=3, decode_tokens=6, feature_batch=4, feature_repeats=2, matmul_size=256,
            # Generous: on an idle 2-core VM each part takes 1-12 s; the caps only stop a stuck run.
            caps={"environment": 30, "wav2vec2_train": 90, "whisper_train": 90, "decode": 90, "features": 60},
        )
    return Plan(
        smoke=False, device="cuda", duration_scale=1.0, utterances=LIBRISPEECH_UTTERANCES,
        wav2vec2_size="base", wav2vec2_overrides=(), whisper_size="small", train_warmup=2, train_steps=8,
        whisper_batch=64, decode_utterances=256, decode_batch=64, decode_tokens=40, feature_batch=64,
        feature_repeats=5, matmul_size=8192,
        # 410 s in all (imports and start-up come on top): under 8 minutes on one GPU.
        caps={"environment": 30, "wav2vec2_train": 100, "whisper_train": 110, "decode": 130, "features": 40},
    )


# --- inputs ---------------------------------------------------------------------------------------
def librispeech_durations(n: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """(n,) seconds drawn from the clipped mixture in the module docstring, times `scale`."""
    long = rng.normal(LONG_MEAN, LONG_STD, size=n)
    short = rng.uniform(*SHORT_RANGE, size=n)
    seconds = np.clip(np.where(rng.random(n) < LONG_FRACTION, long, short), *CLIP_RANGE)
    return seconds * scale


def duration_summary(durations: np.ndarray) -> dict:
    return {"utterances": int(durations.size), "mean_s": float(durations.mean()),
            "min_s": float(durations.min()), "max_s": float(durations.max()),
            "hours": float(durations.sum() / 3600)}


class AudioMaker:
    """Generated 16 kHz 'speech': slices of one pool of Gaussian noise (inputs cost nothing to make,
    and no audio files or decoders are needed). Deterministic for a seed."""

    def __init__(self, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.pool = 0.1 * torch.randn(NOISE_POOL_SECONDS * SAMPLE_RATE, generator=generator)
        self.rng = np.random.default_rng(seed)

    def wave(self, seconds: float) -> torch.Tensor:
        n = max(int(round(seconds * SAMPLE_RATE)), 1)
        if n > len(self.pool):
            raise ValueError(f"{seconds:.1f} s is longer than the noise pool ({NOISE_POOL_SECONDS} s)")
        start = int(self.rng.integers(0, len(self.pool) - n + 1))
        return self.pool[start : start + n].clone()

    def waves(self, durations) -> list[torch.Tensor]:
        return [self.wave(float(d)) for d in durations]


def random_text(seconds: float, rng: np.random.Generator, per_second: float = CHARS_PER_SECOND) -> str:
    """Lower-case letters and spaces (words of ~5.5 characters), `per_second` characters per second."""
    n = max(int(seconds * per_second), 2)
    chars = np.where(rng.random(n) < 1 / 6.5, " ", LETTERS[rng.integers(0, len(LETTERS), size=n)])
    return " ".join("".join(chars).split()) or "a"


# --- time -----------------------------------------------------------------------------------------
class Budget:
    """A wall-clock deadline that parts check between steps (a running GPU step cannot be cut short,
    so a part can overrun its cap by one step)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.deadline = time.monotonic() + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0

    def share(self, fraction: float) -> "Budget":
        """A budget of `fraction` of what is left (for one of several setups in a part)."""
        return Budget(max(self.left(), 0.0) * fraction)


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable, device: str | torch.device):
    """(fn(), wall seconds), with the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def free_device_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- parts ----------------------------------------------------------------------------------------
def run_part(name: str, fn: Callable[[Budget], dict], cap_seconds: float) -> dict:
    """Run one part under its time cap; a failure is recorded (error text and traceback tail) and
    never raised, so the parts after it still run."""
    budget = Budget(cap_seconds)
    start = time.perf_counter()
    record = {"status": "ok", "cap_seconds": cap_seconds}
    try:
        record["results"] = fn(budget)
    except Exception as err:  # noqa: BLE001 - every failure is data here
        record.update(status="error", error=f"{type(err).__name__}: {err}"[:2000],
                      traceback=traceback.format_exc()[-4000:])
    finally:
        free_device_memory()
    record["seconds"] = time.perf_counter() - start
    return record


def finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def guarded(setup: str, fn: Callable[[], dict]) -> dict:
    """fn()'s row, or a row holding its error: one setup's failure leaves its siblings to run."""
    try:
        return {"setup": setup, **fn()}
    except Exception as err:  # noqa: BLE001
        return {"setup": setup, "error": f"{type(err).__name__}: {err}"[:2000],
                "traceback": traceback.format_exc()[-3000:]}
    finally:
        free_device_memory()
