"""Training transcripts in the form a model family is taught: the letter case a config's
model.text_case asks for (Whisper: "sentence" for LibriSpeech-style upper case; CTC: "upper" for an
upper-case letter vocabulary), and for CTC without punctuation. Each family allows its own subset of
CASES and applies these as its collate builds labels."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from asr_sft.errors import OptionError

CASES = ("keep", "lower", "upper", "sentence")  # every text_case a family may allow


def check_text_case(case: str, allowed: Sequence[str]) -> None:
    if case not in allowed:
        raise OptionError(f"model.text_case must be one of {', '.join(allowed)}, got {case!r}")


def change_case(text: str, case: str) -> str:
    """`text` as written ("keep"), lower-cased, upper-cased, or in sentence case (lower case, a
    capital first letter and a capital pronoun "I")."""
    if case == "keep":
        return text
    if case == "upper":
        return text.upper()
    text = text.lower()
    if case == "sentence":
        text = re.sub(r"\bi\b", "I", text)
        text = text[:1].upper() + text[1:]
    return text


def drop_punctuation(text: str) -> str:
    """`text` without Unicode punctuation (apostrophes kept: "don't"), spaces collapsed."""
    return " ".join("".join(c for c in text if c == "'" or not unicodedata.category(c).startswith("P")).split())
