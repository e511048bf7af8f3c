"""model.text_case: the case Whisper's training labels are given in (LibriSpeech-style upper-case
transcripts are turned into sentence case)."""

from __future__ import annotations

import pytest

from asr_sft.errors import OptionError
from asr_sft.models.whisper import WhisperOptions, change_case


@pytest.mark.parametrize("text, case, expected", [
    ("I THINK I AM IN DELHI", "sentence", "I think I am in Delhi".replace("Delhi", "delhi")),
    ("IT IS MINE SAID I", "sentence", "It is mine said I"),
    ("ISLAND IDEAS", "sentence", "Island ideas"),  # only the word "i" is capitalised
    ("HELLO WORLD", "lower", "hello world"),
    ("Hello World", "keep", "Hello World"),
    ("", "sentence", ""),
])
def test_change_case(text, case, expected):
    assert change_case(text, case) == expected


def test_text_case_is_checked():
    with pytest.raises(OptionError, match="model.text_case must be one of keep, lower, sentence"):
        WhisperOptions(text_case="title")
