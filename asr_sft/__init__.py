"""asr_sft: supervised fine-tuning of speech recognition models."""

__version__ = "0.1.0"
