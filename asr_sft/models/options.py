"""Decoding options shared by every model family (each family's `decode_batch` takes them), and
`Transcript`, what a family's `transcribe_batch` says about each utterance it decoded."""

from __future__ import annotations

from dataclasses import dataclass

from asr_sft.errors import OptionError

DTYPES = ("float32", "bfloat16", "float16")
MAX_NEW_TOKENS = 224  # Whisper: tokens generated at most (openai/whisper's sample_len, half the context)
# Whisper's guard against runaway decoding (openai/whisper transcribe.py defaults)
FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # sampling temperatures tried after greedy, in order
COMPRESSION_RATIO_THRESHOLD = 2.4  # gzip ratio of the text above which it repeats itself
LOGPROB_THRESHOLD = -1.0  # average log-probability per token below which the text is a guess


@dataclass(frozen=True)
class DecodeOptions:
    batch_size: int = 16  # utterances per batch at most
    # Padded audio seconds per batch at most (utterances x longest duration); None: no limit.
    # Batches are cut from the utterances sorted longest first, so an out-of-memory shows at once.
    max_batch_seconds: float | None = None
    device: str = "auto"  # "auto" (a GPU when there is one), "cpu", "cuda", "cuda:1", ...
    dtype: str = "float32"  # model and features: "float32", "bfloat16" or "float16"
    num_beams: int = 1  # Whisper: beam width of generate (1 = greedy); CTC is always greedy
    max_new_tokens: int = MAX_NEW_TOKENS  # Whisper: generated tokens per utterance at most
    # Whisper: also at most this many tokens per second of the batch's longest audio (+ 16), so a
    # decode that loops ("the end of the end of ...") stops near the speech's length instead of at
    # 224 tokens; English speech is ~3-5 tokens/s. None: only max_new_tokens.
    max_tokens_per_second: float | None = 12.0
    language: str | None = "en"  # Whisper: the language token of the prefix
    task: str = "transcribe"  # Whisper: "transcribe" or "translate"
    warmup: bool = False  # decode the first batch once, untimed, before the timed pass
    progress: bool = True  # a tqdm bar on stderr
    # Whisper: decode an utterance again, by sampling at each of fallback_temperatures in turn, when
    # its text at temperature 0 repeats itself (compression ratio above the threshold) or its
    # average token log-probability is below the threshold (openai/whisper's temperature fallback).
    fallback: bool = True
    fallback_temperatures: tuple[float, ...] = FALLBACK_TEMPERATURES
    compression_ratio_threshold: float | None = COMPRESSION_RATIO_THRESHOLD  # None: no such check
    logprob_threshold: float | None = LOGPROB_THRESHOLD  # None: no such check
    fallback_seed: int = 0  # of the sampling; with each utterance's waveform, so batching does not matter
    # Whisper: feed the encoder the batch's own window (its longest utterance) instead of 30 s of
    # padding; None: as the checkpoint was trained (asr_sft/models/whisper.py, `variable_length`).
    variable_length: bool | None = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_batch_seconds is not None and not self.max_batch_seconds > 0:
            raise OptionError(f"max_batch_seconds must be > 0, got {self.max_batch_seconds}")
        if self.dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.num_beams < 1:
            raise OptionError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens < 1:
            raise OptionError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_tokens_per_second is not None and not self.max_tokens_per_second > 0:
            raise OptionError(f"max_tokens_per_second must be > 0, got {self.max_tokens_per_second}")
        object.__setattr__(self, "fallback_temperatures", tuple(self.fallback_temperatures))
        if any(not 0 < t <= 2 for t in self.fallback_temperatures):
            raise OptionError(f"fallback_temperatures must be in (0, 2], got {self.fallback_temperatures}")
        if self.compression_ratio_threshold is not None and not self.compression_ratio_threshold > 0:
            raise OptionError(f"compression_ratio_threshold must be > 0, got {self.compression_ratio_threshold}")


@dataclass(frozen=True)
class Transcript:
    """One utterance's decoded text and how decoding got there (families that do not track a
    field leave its default)."""

    text: str
    tokens: int | None = None  # text tokens generated (None: not counted)
    hit_max_tokens: bool = False  # stopped at max_new_tokens without an end token
    temperature: float = 0.0  # of the attempt kept (0: greedy or beam search)
    attempts: int = 1  # decodes of this utterance: 1, plus one per fallback temperature tried
    failed: bool = False  # every attempt failed the checks; the kept one is the best of them
    compression_ratio: float | None = None  # of the kept text (gzip; openai/whisper's definition)
    avg_logprob: float | None = None  # of the kept attempt, per token (the end token included)
