"""Text normalisers: named, versioned functions applied to references and hypotheses at scoring time.

Every score records the normaliser it used (`Normalizer.tag`, e.g. "whisper_en/v1"), so two WERs can
only be compared when their tags agree. A normaliser returns its words joined by single spaces, with
no leading or trailing space; scoring splits on whitespace.

- whisper_en: Whisper's English normaliser (transformers' `EnglishTextNormalizer`, fed with the
  British->American spelling map shipped in `asr_sft/assets/english.json`): lower case, numbers
  as digits ("twenty five" -> "25", "two dollars" -> "$2"), "colour" -> "color", fillers
  ("uh", "um", "hmm") removed, contractions expanded ("can't" -> "can not"), symbols and accents
  dropped.
- whisper_en_digits: whisper_en, then every digit spelled as its own word ("555-0123", "5 5 5 0 1 2 3"
  and "five five five oh one two three" all become "five five five zero one two three"; "25" and
  "twenty five" both "two five"; "2.5" "two point five"). For digit-only and alphanumeric test sets
  (spoken digits, phone numbers), where whisper_en regroups digit words into numbers ("one two
  three" -> "123": one word), so that WER and CER count digits, not formatting. Digit strings with
  a leading zero are split before whisper_en, which would drop the zero ("0123" -> "123"). Like
  whisper_en it reads "oh"/"o" as zero, and it cannot tell "eleven" from "one one" (both "11").
- whisper_basic: transformers' `BasicTextNormalizer`: lower case, bracketed words removed,
  punctuation and symbols become spaces, accents kept.
- librispeech: LibriSpeech transcript style: upper case, no punctuation except apostrophes inside
  words, whitespace collapsed; numbers are left as written.
- none: the text as given; scoring only splits it on whitespace.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from asr_sft.errors import ScoringError

SPELLINGS_ASSET = "english.json"  # British->American map from openai/whisper (MIT), in asr_sft/assets
WHISPER_KEPT_SYMBOLS = ".%$¢€£"  # Whisper keeps these through symbol removal: they carry numbers

# Steps of Whisper's English normaliser, compiled once (same patterns as transformers).
_BRACKETED = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENTHESISED = re.compile(r"\(([^)]+?)\)")
_SPACE_BEFORE_APOSTROPHE = re.compile(r"\s+'")
_COMMA_IN_NUMBER = re.compile(r"(\d),(\d)")
_PERIOD_NOT_DECIMAL = re.compile(r"\.([^0-9]|$)")
_LONE_PREFIX_SYMBOL = re.compile(r"[.$¢€£]([^0-9])")
_LONE_PERCENT = re.compile(r"([^0-9])%")
_DIGIT = re.compile(r"\d")
_PREFIX_SYMBOLS = frozenset(".$¢€£")
_CURRENCY_SYMBOLS = frozenset("$¢€£")
_NUMERIC = re.compile(r"^\d+(\.\d+)?$")  # what EnglishNumberNormalizer parses as a number
_AND_A_HALF = re.compile(r"\band\s+a\s+half\b")
_REGEX_SYNTAX = re.compile(r"[.^$*+?{}\[\]|()\\]")
_WORD_RUN = re.compile(r"\w+")
# What remove_symbols_and_diacritics does to ASCII text: NFKD changes nothing, no ASCII character is
# a combining mark, and marks/symbols/punctuation become spaces. A bytes table runs ~8x faster
# than str.translate.
_ASCII_SYMBOLS_TO_SPACE = bytes(
    32 if c < 128 and unicodedata.category(chr(c))[0] in "MSP" and chr(c) not in WHISPER_KEPT_SYMBOLS
    else c for c in range(256))
# For a "plain" ASCII string: letters stay, spaces and punctuation that Whisper's normaliser only
# turns into spaces become spaces, and every character that some step treats specially (digits,
# apostrophes, brackets, "$%", "_", control characters) becomes NUL, which sends the string down
# the full path. A period is plain too when no digit and no other period follows it: Whisper's
# r"\.([^0-9]|$)" step then removes it.
_ASCII_PLAIN = bytes(
    c if c < 128 and chr(c).isalpha()
    else 32 if c < 128 and (chr(c).isspace() or (unicodedata.category(chr(c))[0] in "MSP"
                                                   and chr(c) not in "'<[(_$%"))
    else 0 for c in range(256))
_ASCII_SYMBOLS_TO_SPACE_ALL = bytes(
    32 if c < 128 and unicodedata.category(chr(c))[0] in "MSP" else c for c in range(256))
# After Whisper's contraction step the remaining apostrophes only become spaces.
_ASCII_PLAIN_AFTER_REPLACERS = bytes(32 if c == ord("'") else v for c, v in enumerate(_ASCII_PLAIN))
# ASCII characters that are not word characters (\w) become spaces: splits text into word runs.
_ASCII_NON_WORD_TO_SPACE = bytes(
    c if c < 128 and (chr(c).isalnum() or chr(c) == "_") else 32 for c in range(256))

# LibriSpeech style: anything but letters, digits, apostrophes and spaces becomes a space.
_NOT_WORD = re.compile(r"[^\w\s']|_")
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_ASCII_NOT_WORD_TO_SPACE = bytes(  # _NOT_WORD for ASCII text, as a table
    c if c < 128 and (chr(c).isalnum() or chr(c) in "'" or chr(c).isspace()) else 32 for c in range(256))
# Digits: a digit string with a leading zero that is not part of a decimal or 1,000-style number.
_LEADING_ZERO_RUN = re.compile(r"(?<![\d.,])0\d+(?!\d|[.,]\d)")
_NUMBER_PIECE = re.compile(r"\d|\.|[^\d.]+")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_TYPOGRAPHIC_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class Normalizer:
    name: str  # registry key; recorded with every score
    version: int  # bumped whenever the output changes for some input
    description: str  # one line for reports and --help
    function: Callable[[str], str] = field(repr=False, compare=False)

    def __call__(self, text: str) -> str:
        return self.function(text)

    @property
    def tag(self) -> str:
        """Name and version, e.g. "whisper_en/v1": what a score records."""
        return f"{self.name}/v{self.version}"

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "tag": self.tag,
                "description": self.description}


def load_spellings() -> dict[str, str]:
    """Whisper's British->American spelling map, read from the package (never from ../shared)."""
    text = resources.files("asr_sft").joinpath("assets", SPELLINGS_ASSET).read_text(encoding="utf-8")
    return json.loads(text)


def normalize_whisper_en(text: str) -> str:
    """Whisper's English normaliser; output words joined by single spaces."""
    return _whisper_english()(text)


def normalize_whisper_en_digits(text: str) -> str:
    """whisper_en with each digit spelled as a word (see the module docstring)."""
    if "0" in text:
        text = _LEADING_ZERO_RUN.sub(lambda m: " ".join(m.group()), text)
    return " ".join(_spell_digits(word) for word in normalize_whisper_en(text).split())


def _spell_digits(word: str) -> str:
    """"25" -> "two five", "2.5" -> "two point five", "$20" -> "$ two zero", "21st" -> "two one st"."""
    if not _DIGIT.search(word):
        return word
    pieces = _NUMBER_PIECE.findall(word)
    return " ".join(DIGIT_WORDS[int(p)] if p.isdigit() else "point" if p == "." else p for p in pieces)


def normalize_whisper_basic(text: str) -> str:
    """transformers' BasicTextNormalizer; output words joined by single spaces."""
    if not text.isascii():
        return " ".join(_whisper_basic()(text).split())
    # The same steps for ASCII text, where NFKC changes nothing and symbol removal is a table.
    text = text.lower()
    if "<" in text or "[" in text:
        text = _BRACKETED.sub("", text)
    if "(" in text:
        text = _PARENTHESISED.sub("", text)
    return " ".join(text.encode("ascii").translate(_ASCII_SYMBOLS_TO_SPACE_ALL).decode("ascii").split())


def normalize_librispeech(text: str) -> str:
    """Upper case, no punctuation except apostrophes inside words ("DON'T"), single spaces."""
    if text.isascii():
        text = text.upper().encode("ascii").translate(_ASCII_NOT_WORD_TO_SPACE).decode("ascii")
    else:
        # NFC first so that combining accents stay attached to their letters ("e\u0301" -> "é").
        text = unicodedata.normalize("NFC", text).translate(_TYPOGRAPHIC_APOSTROPHES)
        text = _NOT_WORD.sub(" ", text.upper())
    if "'" in text:
        text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def normalize_none(text: str) -> str:
    """The text unchanged: scoring splits it on whitespace and compares words exactly."""
    return text


NORMALIZERS: dict[str, Normalizer] = {
    n.name: n
    for n in (
        Normalizer("whisper_en", 1, "Whisper English normaliser (transformers EnglishTextNormalizer "
                   "with Whisper's British->American spellings): lower case, numbers as digits, "
                   "fillers removed, contractions expanded, symbols and accents dropped",
                   normalize_whisper_en),
        Normalizer("whisper_en_digits", 1, "whisper_en, then every digit spelled as its own word "
                   "(\"555-0123\" and \"five five five oh one two three\" -> \"five five five zero one two "
                   "three\"): for spoken digits and alphanumeric test sets", normalize_whisper_en_digits),
        Normalizer("whisper_basic", 1, "Whisper basic normaliser (transformers BasicTextNormalizer): "
                   "lower case, bracketed words removed, symbols and punctuation removed",
                   normalize_whisper_basic),
        Normalizer("librispeech", 1, "LibriSpeech style: upper case, no punctuation except "
                   "apostrophes inside words, whitespace collapsed", normalize_librispeech),
        Normalizer("none", 1, "identity: words are the text split on whitespace", normalize_none),
    )
}


def get_normalizer(name: str | Normalizer) -> Normalizer:
    """The registered normaliser called `name` (a Normalizer is returned as is)."""
    if isinstance(name, Normalizer):
        return name
    try:
        return NORMALIZERS[name]
    except KeyError:
        raise ScoringError(f"unknown text normaliser {name!r}; known: {', '.join(NORMALIZERS)}") from None


@functools.cache
def _whisper_basic():
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer  # slow import

    return BasicTextNormalizer()


@functools.cache
def _whisper_english() -> _FastWhisperEnglish:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer  # slow import

    return _FastWhisperEnglish(EnglishTextNormalizer(load_spellings()))


class _FastWhisperEnglish:
    """transformers' EnglishTextNormalizer, step for step, skipping steps that cannot change the text.

    The reference implementation runs ~60 regular expressions and a per-word number parser on
    every string (~280 us for 20 words). Here each step runs only when its input could match
    (a pattern's literal text occurs, the string has a digit or a number word...), which is the
    same output ~10x faster; tests compare the two on thousands of sentences.
    """

    def __init__(self, reference):
        self.reference = reference
        self.ignore = re.compile(reference.ignore_patterns)
        self.fillers = _alternated_words(reference.ignore_patterns)  # None: always run self.ignore
        self.replacers = [(_required_literal(p), re.compile(p), r) for p, r in reference.replacers.items()]
        # Replacers whose literal is a plain word (r"\bmr\b") can only match that word as a whole
        # run of word characters; all others need an apostrophe. Otherwise run them all, always.
        words = {lit for lit, _, _ in self.replacers if lit and _WORD_RUN.fullmatch(lit)}
        gated = all(lit and (lit in words or "'" in lit) for lit, _, _ in self.replacers)
        self.replacer_words = frozenset(words) if gated else None
        self.numbers = reference.standardize_numbers
        self.spellings = reference.standardize_spellings.mapping
        self.number_words = frozenset(self.numbers.words)
        self.specials = frozenset(self.numbers.specials)
        # For letters-only strings: the spelling map, plus None for every word that some other
        # step acts on (fillers, replacer words, number words except the specials such as "and",
        # which only act next to another number word).
        self.plain_spellings = self.post_spellings = None
        if self.fillers is not None and self.replacer_words is not None:
            blockers = self.fillers | self.replacer_words | (self.number_words - self.specials)
            self.plain_spellings = {**self.spellings, **dict.fromkeys(blockers)}
            # Once fillers are gone and contractions expanded, only number words still block.
            self.post_spellings = {**self.spellings, **dict.fromkeys(self.number_words - self.specials)}

    def __call__(self, s: str) -> str:
        s = s.lower()
        if s.isascii() and self.plain_spellings is not None:
            out = self._plain(s)
            if out is not None:
                return out
        return self._full(s)

    def _plain(self, s: str) -> str | None:
        """The normalised text of a lower-case "plain" string (see _ASCII_PLAIN), in which only
        fillers and spellings can change, or None when `s` needs the full path."""
        plain = s.encode("ascii").translate(_ASCII_PLAIN)
        if b"\0" in plain or ".." in s:
            return None
        words = plain.decode("ascii").split()
        try:  # words that another step acts on map to None, which join refuses
            out = " ".join(map(self.plain_spellings.get, words, words))
        except TypeError:
            if self.fillers.isdisjoint(words):
                return None
            # Whisper deletes fillers first; what remains may still be plain (but "a.uh." would
            # become "a..": the check above runs again).
            return self._plain(self.ignore.sub("", s))
        found = self.specials.intersection(words)
        if found and (("and" in found and "half" in words) or _adjacent(found, words)):
            return None
        return out

    def _plain_after_replacers(self, s: str) -> str | None:
        """What is left of the full path once contractions are expanded, for a string in which
        only the spelling map can still change a word (apostrophes now just become spaces), or
        None when the remaining steps are needed."""
        plain = s.encode("ascii").translate(_ASCII_PLAIN_AFTER_REPLACERS)
        if b"\0" in plain or ".." in s:
            return None
        words = plain.decode("ascii").split()
        try:  # number words map to None, which join refuses
            out = " ".join(map(self.post_spellings.get, words, words))
        except TypeError:
            return None
        found = self.specials.intersection(words)
        if found and (("and" in found and "half" in words) or _adjacent(found, words)):
            return None
        return out

    def _full(self, s: str) -> str:
        if "<" in s or "[" in s:
            s = _BRACKETED.sub("", s)
        if "(" in s:
            s = _PARENTHESISED.sub("", s)
        runs = _word_runs(s)  # removing fillers below only shrinks this set
        if self.fillers is None or not runs.isdisjoint(self.fillers):
            s = self.ignore.sub("", s)
        if "'" in s:
            s = _SPACE_BEFORE_APOSTROPHE.sub("'", s)
        if self.replacer_words is None or "'" in s or not runs.isdisjoint(self.replacer_words):
            for literal, pattern, replacement in self.replacers:
                if literal is None or literal in s:
                    s = pattern.sub(replacement, s)
            if s.isascii() and self.post_spellings is not None:
                out = self._plain_after_replacers(s)
                if out is not None:
                    return out
        if "," in s:
            s = _COMMA_IN_NUMBER.sub(r"\1\2", s)
        if "." in s:
            s = _PERIOD_NOT_DECIMAL.sub(r" \1", s)
        if s.isascii():
            s = s.encode("ascii").translate(_ASCII_SYMBOLS_TO_SPACE).decode("ascii")
        else:
            s = _remove_symbols_and_diacritics(s)
        words = s.split()
        if self._has_numbers(s, words):
            words = self._standardize_numbers(s).split()
        s = " ".join(map(self.spellings.get, words, words))  # EnglishSpellingNormalizer
        if not _PREFIX_SYMBOLS.isdisjoint(s):
            s = _LONE_PREFIX_SYMBOL.sub(r" \1", s)
        if "%" in s:
            s = _LONE_PERCENT.sub(r"\1 ", s)
        return " ".join(s.split())

    def _standardize_numbers(self, s: str) -> str:
        """EnglishNumberNormalizer(s), with its per-word parser run only on the spans of words it
        acts on. A word it ignores (not a number word, not numeric) ends any number before it and
        passes through unchanged, and as a neighbour it counts the same as the sentence edge, so
        parsing span by span gives the same words. Its pre- and post-processing regexes only run
        when their input could match (digits, "half", currency symbols)."""
        numbers = self.numbers
        if "half" in s or _DIGIT.search(s):
            s = numbers.preprocess(s)
        out, span = [], []
        for word in s.split():
            if word in self.number_words or (word[-1].isdecimal() and (
                    _NUMERIC.match(word) or (word[0] in numbers.prefixes and _NUMERIC.match(word[1:])))):
                span.append(word)
                continue
            if span:
                out.extend(numbers.process_words(span))
                span = []
            out.append(word)
        if span:
            out.extend(numbers.process_words(span))
        s = " ".join(word for word in out if word is not None)
        return numbers.postprocess(s) if "1" in s or not _CURRENCY_SYMBOLS.isdisjoint(s) else s

    def _has_numbers(self, s: str, words: list[str]) -> bool:
        """False when EnglishNumberNormalizer would only re-join the words: no digit, no "and a
        half", and no number word (a "special" such as "and"/"point" counts only when the next
        word is a number word, as only then does the parser treat it specially)."""
        if _DIGIT.search(s) or ("half" in s and _AND_A_HALF.search(s)):
            return True
        found = self.number_words.intersection(words)
        if not found:
            return False
        return not found <= self.specials or _adjacent(found, words)


def _adjacent(specials: set[str], words: list[str]) -> bool:
    """Whether two of `specials` ("and", "point"...) follow each other in `words`. When the only
    number words present are specials, this is the only way one is followed by a number word,
    the one case where the number parser acts on it."""
    text = f" {' '.join(words)} "
    return any(f" {a} {b} " in text for a in specials for b in specials)


def _word_runs(s: str) -> set[str]:
    """The maximal runs of word characters in `s`: the words that r"\\bword\\b" can match."""
    if s.isascii():
        return set(s.encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).decode("ascii").split())
    return set(_WORD_RUN.findall(s))


def _alternated_words(pattern: str) -> frozenset[str] | None:
    """The words of a pattern like r"\\b(hmm|mm|uh)\\b", or None if it has another shape."""
    match = re.fullmatch(r"\\b\((\w+(?:\|\w+)*)\)\\b", pattern)
    return frozenset(match.group(1).split("|")) if match else None


def _required_literal(pattern: str) -> str | None:
    """Text that must occur for `pattern` to match ("won't" for r"\\bwon't\\b"), or None when the
    pattern has regex syntax other than word boundaries (then it always runs)."""
    literal = pattern.replace(r"\b", "")
    return None if not literal or _REGEX_SYNTAX.search(literal) else literal


def _remove_symbols_and_diacritics(s: str) -> str:
    from transformers.models.whisper.english_normalizer import remove_symbols_and_diacritics

    return remove_symbols_and_diacritics(s, keep=WHISPER_KEPT_SYMBOLS)
