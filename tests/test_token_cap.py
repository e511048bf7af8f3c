"""DecodeOptions.max_tokens_per_second: a Whisper decode of short audio stops near the audio's
length, so a loop costs ~30 tokens on a 1 s clip instead of 224."""

from __future__ import annotations

import pytest
import torch

from asr_sft.errors import OptionError
from asr_sft.models import whisper
from asr_sft.models.options import DecodeOptions
from asr_sft.models.whisper_decoding import TOKEN_CAP_SLACK, _token_cap

from _fixtures_models import tiny_whisper_dir  # noqa: F401 (fixture)


def test_token_cap_follows_the_longest_wave():
    waves = [torch.zeros(16000), torch.zeros(8000)]  # 1 s and 0.5 s
    assert _token_cap(waves, 224, DecodeOptions()) == 12 + TOKEN_CAP_SLACK
    assert _token_cap(waves, 20, DecodeOptions()) == 20  # max_new_tokens still bounds it
    assert _token_cap([torch.zeros(16000 * 30)], 224, DecodeOptions()) == 224
    assert _token_cap(waves, 224, DecodeOptions(max_tokens_per_second=None)) == 224
    with pytest.raises(OptionError, match="max_tokens_per_second must be > 0"):
        DecodeOptions(max_tokens_per_second=0)


def test_a_looping_decode_stops_at_the_cap(tiny_whisper_dir):
    model, processor = whisper.load_whisper_model(tiny_whisper_dir)
    torch.manual_seed(0)
    waves = [0.1 * torch.randn(16000)]  # a random tiny Whisper does not stop on its own
    capped = whisper.transcribe_batch(model, processor, waves, DecodeOptions(fallback=False))
    free = whisper.transcribe_batch(model, processor, waves,
                                    DecodeOptions(fallback=False, max_tokens_per_second=None, max_new_tokens=64))
    assert capped[0].tokens <= 12 + TOKEN_CAP_SLACK < free[0].tokens
    assert capped[0].hit_max_tokens
