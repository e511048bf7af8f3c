"""Decoding options shared by every model family (each family's `decode_batch` takes them)."""

from __future__ import annotations

from dataclasses import dataclass

from asr_sft.errors import OptionError

DTYPES = ("float32", "bfloat16", "float16")
MAX_NEW_TOKENS = 224  # Whisper: tokens generated at most (openai/whisper's sample_len, half the context)


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
    language: str | None = "en"  # Whisper: the language token of the prefix
    task: str = "transcribe"  # Whisper: "transcribe" or "translate"
    warmup: bool = False  # decode the first batch once, untimed, before the timed pass
    progress: bool = True  # a tqdm bar on stderr

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
