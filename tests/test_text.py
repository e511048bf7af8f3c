"""Text normalisers: table-driven cases per normaliser (openai/whisper tests/test_normalizer.py style)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from asr_sft.evaluation import text
from asr_sft.errors import ScoringError
from asr_sft.evaluation.text import NORMALIZERS, get_normalizer, load_spellings

WHISPER_EN = [
    # numbers
    ("two", "2"),
    ("twenty five", "25"),
    ("thirty one", "31"),
    ("nineteen ninety nine", "1999"),
    ("two point five million", "2500000"),
    ("three thousand twenty nine", "3029"),
    ("forty three thousand two hundred and sixty", "43260"),
    ("$20 million", "$20000000"),
    ("$20", "$20"),
    ("200 thousand dollars", "$200000"),
    ("two dollars and seventy cents", "$2.70"),
    ("3 cents", "¢3"),
    ("ninety percent", "90%"),
    ("seventy six per cent", "76%"),
    ("double oh seven", "007"),
    ("nineteen fifties", "1950s"),
    ("thirty first", "31st"),
    ("july third twenty twenty", "july 3rd 2020"),
    ("minus 500", "-500"),
    ("1,000 people", "1000 people"),
    ("3.14", "3.14"),
    ("10km", "10 km"),
    ("RC232", "rc 232"),
    ("one", "one"),  # a lone "1" is written as a word again
    # British -> American spellings
    ("colour", "color"),
    ("The colour of the theatre", "the color of the theater"),
    ("mobilisation", "mobilization"),
    ("favourite neighbour", "favorite neighbor"),
    # fillers
    ("uh I think um yes", "i think yes"),
    ("hmm okay mhm", "okay"),
    ("umbrella humming", "umbrella humming"),  # only whole filler words go
    # contractions
    ("Let's", "let us"),
    ("he's like", "he is like"),
    ("she's been like", "she has been like"),
    ("I can't go", "i can not go"),
    ("they won't", "they will not"),
    ("we're here", "we are here"),
    ("I'd go", "i would go"),
    ("we've I'm", "we have i am"),
    ("gonna wanna", "going to want to"),
    ("Mr. Park visited Assoc. Prof. Kim Jr.", "mister park visited associate professor kim junior"),
    # punctuation, brackets, symbols
    ("Hello, world!", "hello world"),
    ('"Quoted" text... yes?', "quoted text yes"),
    ("well-known", "well known"),
    ("[NOISE] hello <unk> (laughs) there", "hello there"),
    # unicode and accents
    ("Café naïve", "cafe naive"),
    ("Straße Œuvre", "strasse oeuvre"),
    ("ｆｕｌｌ width", "full width"),
    # whitespace and empty strings
    ("", ""),
    ("   ", ""),
    ("\tHello\n  World ", "hello world"),
]

WHISPER_EN_DIGITS = [
    # digit sequences come out as one word per digit, however they were written
    ("five five five oh one two three", "five five five zero one two three"),
    ("555-0123", "five five five zero one two three"),  # whisper_en alone drops the 0: "555 123"
    ("5 5 5 0 1 2 3", "five five five zero one two three"),  # whisper_en alone: "5 5 5 0 one 2 3"
    ("0123", "zero one two three"),
    ("007", "zero zero seven"),
    ("double oh seven", "zero zero seven"),
    ("one two three", "one two three"),  # whisper_en alone: "123", one word
    ("1, 2, 3", "one two three"),
    # single digit words (spoken digits): zero stays a word, as does one
    ("zero", "zero"),
    ("Seven!", "seven"),
    ("7.", "seven"),
    ("one", "one"),
    ("Oh.", "zero"),  # as whisper_en, "oh" reads as zero
    # numbers: the same digits whichever way they are written
    ("twenty five", "two five"),
    ("25", "two five"),
    ("eleven", "one one"),  # a known limit: "eleven" and "one one" agree
    ("1,000", "one zero zero zero"),
    ("one thousand", "one zero zero zero"),
    ("twelve point five", "one two point five"),
    ("3.14", "three point one four"),
    ("0.5", "zero point five"),
    ("twenty dollars", "$ two zero"),
    ("$20", "$ two zero"),
    ("20%", "two zero %"),
    ("twenty first", "two one st"),
    ("RC232", "rc two three two"),
    ("room one oh one", "room one zero one"),
    # everything else is whisper_en's
    ("The colour, I can't", "the color i can not"),
    ("", ""),
]

WHISPER_BASIC = [
    ("Hello, World!", "hello world"),
    ("Café naïve", "café naïve"),  # accents kept
    ("[noise] a (b) c <unk>", "a c"),
    ("twenty five $20", "twenty five 20"),  # no number handling
    ("colour", "colour"),  # no spelling map
    ("don't", "don t"),
    ("ｆｕｌｌ", "full"),
    ("A\tB\n", "a b"),
    ("", ""),
]

LIBRISPEECH = [
    ("Hello, world!", "HELLO WORLD"),
    ("don't", "DON'T"),
    ("it’s", "IT'S"),  # typographic apostrophe
    ("'quoted' words'", "QUOTED WORDS"),
    ("rock 'n' roll", "ROCK N ROLL"),
    ("twenty-five", "TWENTY FIVE"),
    ("25 $20", "25 20"),  # numbers left as written
    ("café", "CAFÉ"),
    ("cafe\u0301", "CAFÉ"),  # decomposed accent stays on its letter
    ("a_b", "A B"),
    ("HELLO   THERE", "HELLO THERE"),
    ("", ""),
]

NONE = [
    ("Hello,  World!", "Hello,  World!"),
    ("", ""),
]


@pytest.mark.parametrize("name, cases", [("whisper_en", WHISPER_EN), ("whisper_en_digits", WHISPER_EN_DIGITS),
                                         ("whisper_basic", WHISPER_BASIC),
                                         ("librispeech", LIBRISPEECH), ("none", NONE)])
def test_normalizer_table(name, cases):
    normalize = get_normalizer(name)
    failures = [(given, normalize(given), expected) for given, expected in cases
                if normalize(given) != expected]
    assert not failures, failures


# Words that exercise every step of Whisper's English normaliser, for the equivalence tests.
TRICKY = ("the quick brown fox colour favourite twenty five hundred thousand and a half one ones "
          "first second o oh zero double triple point minus plus dollars dollar cents cent pounds "
          "euros per cent percent i'm can't won't let's he's she's been gone it'd they'll we've "
          "Mr. Mrs Dr. St. prof uh um hmm mm mhm 1,000 $20 €5 £3.50 10% 3.14 1960s 21st b747 "
          "10km café naïve straße Œuvre ﬁne ½ ² — – … \"quoted\" 'single' [noise] <unk> "
          "(laughs) hello, world. end? a.b.c. wait.. ... . a.uh. uh. .um 0.5 .5 5. and and "
          "point and double one's "
          "nineteen ninety nine twelfth fifties millions sixes 007 911 o'clock y'all gonna "
          "wanna _under tab\tnew\nline").split(" ")


def test_whisper_en_matches_transformers_implementation():
    # Our fast path must give exactly what transformers' EnglishTextNormalizer gives.
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    reference = EnglishTextNormalizer(load_spellings())
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    sentences += [s.upper() for s in sentences[:300]] + [given for given, _ in WHISPER_EN]
    mismatches = [(s, text.normalize_whisper_en(s), " ".join(reference(s).split()))
                  for s in sentences if text.normalize_whisper_en(s) != " ".join(reference(s).split())]
    assert not mismatches, mismatches[:5]


def test_whisper_en_matches_transformers_on_number_dense_text():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    reference = EnglishTextNormalizer(load_spellings())
    vocab = sorted(text._whisper_english().number_words) + [
        "foo", "$5", "£3.50", "10", "3.14", "1,000", "20th", "1960s", "$", "%", "-5", "¢", "a", "half",
        "o'clock", "5.", ".5"]
    rng = random.Random(2)
    sentences = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 10))) for _ in range(2000)]
    mismatches = [s for s in sentences if text.normalize_whisper_en(s) != " ".join(reference(s).split())]
    assert not mismatches, mismatches[:5]


def test_librispeech_ascii_table_matches_its_regular_expressions():
    rng = random.Random(3)
    chars = "abcXYZ019 '_-.,;:!?\"()[]{}<>@#$%^&*+=/\\|~`\t\n\x00\x07\x7f"
    for _ in range(3000):
        s = "".join(rng.choice(chars) for _ in range(rng.randint(0, 30)))
        slow = text._LONE_APOSTROPHE.sub(" ", text._NOT_WORD.sub(" ", s.upper()))
        assert text.normalize_librispeech(s) == " ".join(slow.split()), repr(s)


def test_whisper_basic_matches_transformers_implementation():
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    reference = BasicTextNormalizer()
    rng = random.Random(1)
    sentences = [" ".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 12))) for _ in range(2000)]
    mismatches = [s for s in sentences if text.normalize_whisper_basic(s) != " ".join(reference(s).split())]
    assert not mismatches, mismatches[:5]


def test_fast_path_is_taken_for_plain_text_and_not_for_numbers(monkeypatch):
    fast = text._whisper_english()
    calls = []
    monkeypatch.setattr(fast, "_full", lambda s: calls.append(s) or "FULL")
    assert fast("The Colour, of the sky and sea.") == "the color of the sky and sea"
    assert fast("wait.. what") == "FULL"  # Whisper keeps the second period of ".."
    assert fast("twenty five") == "FULL" and fast("and and") == "FULL" and fast("uh mr") == "FULL"
    assert fast("it's") == "FULL" and fast("$5") == "FULL"
    assert fast("Uh, the colour, um.") == "the color"  # fillers go, then the rest is plain
    assert fast("a.uh.") == "FULL"  # without the filler: "a..", which keeps a period
    assert len(calls) == 7


def test_registry_names_versions_and_errors():
    assert set(NORMALIZERS) == {"whisper_en", "whisper_en_digits", "whisper_basic", "librispeech", "none"}
    assert get_normalizer("whisper_en_digits").tag == "whisper_en_digits/v1"
    norm = get_normalizer("whisper_en")
    assert norm.tag == "whisper_en/v1" and norm.to_dict()["version"] == 1
    assert get_normalizer(norm) is norm
    with pytest.raises(dataclasses.FrozenInstanceError):
        norm.version = 2
    with pytest.raises(ScoringError, match="unknown text normaliser 'whisper'.*whisper_en"):
        get_normalizer("whisper")


def test_spellings_come_from_the_package_not_shared_data():
    spellings = load_spellings()
    assert len(spellings) == 1739 and spellings["colour"] == "color"
    assert (Path(text.__file__).parents[1] / "assets" / text.SPELLINGS_ASSET).is_file()
    source = Path(text.__file__).read_text(encoding="utf-8")
    assert "shared/data" not in source and "whisper-assets" not in source
