"""English sentences for speech synthesis, and transcripts in LibriSpeech form.

The default source is `generate_sentences`: a seeded probabilistic grammar (asr_sft/grammar.py:
statements, questions, subordinate and relative clauses, conditionals, lists, imperatives, numbers,
prices, years, dates and clock times spelled out as words, people's names, cities and countries) over
the vocabulary in `asr_sft/assets/sentences/` (~2,000 lemmas, ~3,500 word types once inflected). A
base model trained on a few hundred sentences only memorises them, so variety of words and structure
matters.

Origin and licence: the grammar and the vocabulary lists were written for this project; they are
part of asr_sft and licensed Apache-2.0 like the rest of the package. No third-party text is used.

Every generated sentence is plain English words that espeak-ng pronounces as written: no digits,
symbols or abbreviations, between MIN_WORDS and MAX_WORDS words.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from asr_sft.errors import SynthesisError

ASSETS = Path(__file__).parents[2] / "assets" / "sentences"
MIN_WORDS = 4  # words per generated sentence, inclusive
MAX_WORDS = 25
MAX_TRIES_PER_SENTENCE = 50  # generation attempts per requested sentence before giving up
GRAMMAR_VERSION = 1  # bump when the grammar or vocabulary changes what a seed produces

# Characters a user sentence may not contain: espeak-ng would read them aloud ("42" -> "forty two",
# "&" -> "and") and the transcript would no longer match the audio.
_UNSPEAKABLE = re.compile(r"[0-9&%$#@+=/\\<>*_|~^{}\[\]]")
_HARVARD_LINE = re.compile(r'^"(.*)",?$')  # "The birch canoe slid on the smooth planks.",


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str  # equal to singular for uncountable nouns


@dataclass(frozen=True)
class Verb:
    base: str  # walk
    third: str  # walks
    past: str  # walked
    participle: str  # walked
    gerund: str  # walking


@dataclass(frozen=True)
class Vocabulary:
    nouns: dict[str, list[Noun]]  # section (person, animal, thing, ...) -> nouns
    verbs: dict[str, list[Verb]]  # section (thing, person, idea, intransitive, motion) -> verbs
    adjectives: dict[str, list[str]]
    adverbs: dict[str, list[str]]
    names: dict[str, list[str]]  # female, male, surname
    places: dict[str, list[str]]  # city, country

    def word_types(self) -> set[str]:
        """Every distinct word (lower case) the vocabulary can put into a sentence."""
        words: list[str] = []
        for nouns in self.nouns.values():
            words += [w for n in nouns for w in (n.singular, n.plural)]
        for verbs in self.verbs.values():
            words += [w for v in verbs for w in (v.base, v.third, v.past, v.participle, v.gerund)]
        for table in (self.adjectives, self.adverbs, self.names, self.places):
            words += [w for ws in table.values() for w in ws]
        return {part.lower() for w in words for part in w.split()}


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences (distinct as LibriSpeech transcripts), the same for the same seed.

    The first k sentences of a longer request equal a request for k: the stream is a prefix.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # Imported here: the grammar is built on this module's vocabulary and number words.
    from asr_sft.corpora.synthetic.grammar import Grammar

    rng = random.Random(seed)
    vocab = load_vocabulary()
    seen: set[str] = set()
    sentences: list[str] = []
    for _ in range(MAX_TRIES_PER_SENTENCE * n + 100):
        if len(sentences) == n:
            return sentences
        sentence = Grammar(rng, vocab).sentence()
        key = to_librispeech_text(sentence)
        if key in seen or not MIN_WORDS <= len(key.split()) <= MAX_WORDS:
            continue
        seen.add(key)
        sentences.append(sentence)
    if len(sentences) < n:
        raise SynthesisError(f"the sentence grammar produced only {len(sentences)} distinct sentences, {n} asked")
    return sentences


def read_sentence_file(path: str | Path) -> list[str]:
    """Sentences from a UTF-8 text file, one per line, in file order.

    Blank lines are skipped. Lines in the Harvard-list form `"text",` lose the quotes and comma.
    Raises SynthesisError for an unreadable or empty file, or a line espeak-ng would not read as
    written (digits, symbols, no words), naming the line.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SynthesisError(f"{path}: cannot read sentence file ({err})") from err
    sentences = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        match = _HARVARD_LINE.match(line)
        if match:
            line = match.group(1).strip()
        bad = _UNSPEAKABLE.search(line)
        if bad:
            raise SynthesisError(
                f"{path}:{number}: {bad.group(0)!r} in {line!r}: espeak-ng would not read it as "
                "written; spell numbers and symbols out as words"
            )
        if not to_librispeech_text(line):
            raise SynthesisError(f"{path}:{number}: no words in {line!r}")
        sentences.append(line)
    if not sentences:
        raise SynthesisError(f"{path}: sentence file is empty (no non-blank lines)")
    return sentences


def to_librispeech_text(sentence: str) -> str:
    """Upper case, punctuation removed except apostrophes inside words, single spaces.

    >>> to_librispeech_text("Don't stop, Maria's 'old' dog-cart!")
    "DON'T STOP MARIA'S OLD DOG CART"
    """
    text = sentence.replace("\u2019", "'").upper()
    text = re.sub(r"[^\w']|_", " ", text)
    text = re.sub(r"(?<!\w)'+|'+(?!\w)", " ", text)  # quotes, not apostrophes inside words
    return " ".join(text.split())


# --- vocabulary ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """The word lists in ASSETS, inflected (see assets/sentences/README.md for the format)."""
    nouns = _read_sections("nouns.txt")
    verbs = _read_sections("verbs.txt")
    return Vocabulary(
        nouns={k: [_noun(t, countable=k != "mass") for t in v] for k, v in nouns.items()},
        verbs={k: [_verb(t) for t in v] for k, v in verbs.items()},
        adjectives=_read_sections("adjectives.txt"),
        adverbs=_read_sections("adverbs.txt"),
        names=_read_sections("names.txt"),
        places={k: [t.replace("_", " ") for t in v] for k, v in _read_sections("places.txt").items()},
    )


def _read_sections(name: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in (ASSETS / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif line:
            if current is None:
                raise SynthesisError(f"{ASSETS / name}: words before the first [section]")
            current += [w for w in line.split() if w not in current]
    return sections


def _noun(token: str, countable: bool) -> Noun:
    singular, _, plural = token.replace("_", " ").partition("/")
    if not countable:
        return Noun(singular, singular)
    return Noun(singular, plural or _add_s(singular))


def _verb(token: str) -> Verb:
    base, *irregular = token.split("/")
    double = base.endswith("+")
    base = base.rstrip("+")
    stem = base + base[-1] if double else base
    if irregular:
        past = irregular[0]
        participle = irregular[1] if len(irregular) > 1 else past
    elif base.endswith("e"):
        past = participle = base + "d"
    elif re.search(r"[^aeiou]y$", base):
        past = participle = base[:-1] + "ied"
    else:
        past = participle = stem + "ed"
    if base.endswith("ie"):
        gerund = base[:-2] + "ying"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        gerund = base[:-1] + "ing"
    else:
        gerund = stem + "ing"
    return Verb(base, _add_s(base, verb=True), past, participle, gerund)


def _add_s(word: str, verb: bool = False) -> str:
    """Plural of a noun or third person of a verb; the last word of a compound inflects."""
    if word.endswith(("s", "x", "z", "ch", "sh")) or (verb and word.endswith("o")):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


# --- numbers, dates and times as words ----------------------------------------------------------------
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
MONTHS = "January February March April May June July August September October November December".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def number_to_words(n: int) -> str:
    """0 <= n < 1,000,000 in words, British style: 312 -> 'three hundred and twelve'."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_to_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    words = f"{number_to_words(thousands)} thousand"
    return words + ((" and " if rest < 100 else " ") + number_to_words(rest) if rest else "")


def ordinal_to_words(n: int) -> str:
    """21 -> 'twenty first'."""
    *head, last = number_to_words(n).split()
    if last in _ORDINAL:
        last = _ORDINAL[last]
    else:
        last = last[:-1] + "ieth" if last.endswith("y") else last + "th"
    return " ".join([*head, last])


def year_to_words(year: int) -> str:
    """1994 -> 'nineteen ninety four', 1905 -> 'nineteen oh five', 2006 -> 'two thousand and six'."""
    if 2000 <= year < 2010:
        return "two thousand" + (f" and {_ONES[year - 2000]}" if year > 2000 else "")
    high, low = divmod(year, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    return f"{number_to_words(high)} " + (f"oh {_ONES[low]}" if low < 10 else number_to_words(low))


def time_to_words(hour: int, minute: int, spoken: bool = True) -> str:
    """Clock time, 1 <= hour <= 12: (7, 30) -> 'half past seven' (spoken) or 'seven thirty'."""
    following = _ONES[hour % 12 + 1]
    if minute == 0:
        return f"{_ONES[hour]} o'clock"
    if not spoken:
        return f"{_ONES[hour]} " + (f"oh {_ONES[minute]}" if minute < 10 else number_to_words(minute))
    named = {15: f"a quarter past {_ONES[hour]}", 30: f"half past {_ONES[hour]}", 45: f"a quarter to {following}"}
    if minute in named:
        return named[minute]
    if minute < 30:
        return f"{number_to_words(minute)} past {_ONES[hour]}"
    return f"{number_to_words(60 - minute)} to {following}"
