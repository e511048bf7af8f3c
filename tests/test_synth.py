"""Sentence generator, espeak-ng corpus synthesis, packing, and the `synth` CLI.

Synthesis is kept small (a few dozen utterances of a few seconds): one module-scoped corpus is
shared by the read-only tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from asr_sft import cli

from asr_sft.corpora.synthetic import espeak

from asr_sft.corpora.synthetic import pack

from asr_sft.corpora.synthetic import synth
from asr_sft.data.audio import audio_info
from asr_sft.corpora.librispeech import read_speakers
from asr_sft.errors import SynthesisError
from asr_sft.data.manifest import check_manifest, read_manifest
from asr_sft.corpora.synthetic.sentences import (
    MAX_WORDS,
    MIN_WORDS,
    generate_sentences,
    load_vocabulary,
    number_to_words,
    ordinal_to_words,
    read_sentence_file,
    time_to_words,
    to_librispeech_text,
    year_to_words,
)
from asr_sft.corpora.synthetic.pack import pack_split
from asr_sft.corpora.synthetic.synth import SynthOptions, split_counts, synthesize_corpus

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

OPTIONS = SynthOptions(
    accents=("en-us", "en-gb-scotland"), speakers_per_accent=3, utterances_per_speaker=3,
    chapters_per_speaker=2, seed=7,
)  # fmt: skip
LIBRISPEECH_TEXT = re.compile(r"^[A-Z']+( [A-Z']+)*$")


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (hidden ones included), by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, synthesize_corpus(out, OPTIONS)


# --- sentences ------------------------------------------------------------------------------------
def test_generator_gives_10000_distinct_speakable_sentences():
    sentences = generate_sentences(10_000, seed=0)
    transcripts = [to_librispeech_text(s) for s in sentences]
    assert len(set(transcripts)) == 10_000
    lengths = [len(t.split()) for t in transcripts]
    assert min(lengths) >= MIN_WORDS and max(lengths) <= MAX_WORDS
    assert all(re.fullmatch(r"[A-Z][A-Za-z' ,]*[.?!]", s) for s in sentences), "letters and punctuation only"
    words = Counter(w for t in transcripts for w in t.split())
    assert len(words) > 3000  # variety of words, not a few hundred memorisable sentences
    assert len(load_vocabulary().word_types()) > 3000
    starts = Counter(" ".join(t.split()[:1]) for t in transcripts)
    assert starts.most_common(1)[0][1] < 0.2 * len(transcripts)  # varied structure
    assert sum(s.endswith("?") for s in sentences) > 1000  # questions are common


def test_generator_is_deterministic_and_seeded():
    first = generate_sentences(300, seed=3)
    assert generate_sentences(300, seed=3) == first
    assert generate_sentences(100, seed=3) == first[:100]  # a longer request extends a shorter one
    other = generate_sentences(300, seed=4)
    assert len(set(first) & set(other)) < 10


@pytest.mark.parametrize("sentence, expected", [
    ("The birch canoe slid on the smooth planks.", "THE BIRCH CANOE SLID ON THE SMOOTH PLANKS"),
    ("Don't stop, Maria's 'old' dog-cart!", "DON'T STOP MARIA'S OLD DOG CART"),
    ("  Where did  you go?  ", "WHERE DID YOU GO"),
    ("It\u2019s late; isn't it?", "IT'S LATE ISN'T IT"),
    ("The boys' books", "THE BOYS BOOKS"),
    ("...", ""),
])  # fmt: skip
def test_to_librispeech_text(sentence, expected):
    assert to_librispeech_text(sentence) == expected


@pytest.mark.parametrize("call, expected", [
    (lambda: number_to_words(0), "zero"),
    (lambda: number_to_words(40), "forty"),
    (lambda: number_to_words(99), "ninety nine"),
    (lambda: number_to_words(312), "three hundred and twelve"),
    (lambda: number_to_words(1005), "one thousand and five"),
    (lambda: number_to_words(21_340), "twenty one thousand three hundred and forty"),
    (lambda: ordinal_to_words(1), "first"),
    (lambda: ordinal_to_words(12), "twelfth"),
    (lambda: ordinal_to_words(20), "twentieth"),
    (lambda: ordinal_to_words(23), "twenty third"),
    (lambda: year_to_words(1994), "nineteen ninety four"),
    (lambda: year_to_words(1905), "nineteen oh five"),
    (lambda: year_to_words(1900), "nineteen hundred"),
    (lambda: year_to_words(2006), "two thousand and six"),
    (lambda: year_to_words(2021), "twenty twenty one"),
    (lambda: time_to_words(7, 0), "seven o'clock"),
    (lambda: time_to_words(7, 30), "half past seven"),
    (lambda: time_to_words(12, 45), "a quarter to one"),
    (lambda: time_to_words(3, 40), "twenty to four"),
    (lambda: time_to_words(9, 5, spoken=False), "nine oh five"),
])  # fmt: skip
def test_numbers_dates_and_times_as_words(call, expected):
    assert call() == expected


def test_inflections():
    vocab = load_vocabulary()
    verbs = {v.base: v for kind in vocab.verbs.values() for v in kind}
    nouns = {n.singular: n for kind in vocab.nouns.values() for n in kind}
    assert dataclasses.astuple(verbs["stop"])[1:] == ("stops", "stopped", "stopped", "stopping")
    assert dataclasses.astuple(verbs["carry"])[1:] == ("carries", "carried", "carried", "carrying")
    assert dataclasses.astuple(verbs["go"])[1:] == ("goes", "went", "gone", "going")
    assert dataclasses.astuple(verbs["make"])[1:] == ("makes", "made", "made", "making")
    assert dataclasses.astuple(verbs["begin"])[1:] == ("begins", "began", "begun", "beginning")
    assert (verbs["see"].gerund, verbs["wash"].third) == ("seeing", "washes")
    assert [nouns[w].plural for w in ("child", "church", "toy", "fishing rod", "knife", "milk")] == [
        "children", "churches", "toys", "fishing rods", "knives", "milk"]  # fmt: skip


def test_read_sentence_file_harvard(shared_data):
    sentences = read_sentence_file(shared_data / "text" / "harvard_sentences.txt")
    assert len(sentences) == 720
    assert sentences[0] == "The birch canoe slid on the smooth planks."
    assert sentences[1] == "Glue the sheet to the dark blue background"
    assert not any(s.startswith('"') or s.endswith((",", '"')) for s in sentences)
    assert "A zestful food is the hot-cross bun" in sentences


def test_read_sentence_file_plain_lines(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("  First sentence here.\n\n\"Second, quoted\",\nThird one without a stop\n", encoding="utf-8")
    assert read_sentence_file(path) == ["First sentence here.", "Second, quoted", "Third one without a stop"]


@pytest.mark.parametrize("content, message", [
    (b"", "sentence file is empty"),
    (b"\n   \n\n", "sentence file is empty"),
    (b"Fine words.\nIt costs 42 pounds.\n", r"mine.txt:2: '4'.*spell numbers"),
    (b"Fine words.\n...\n", r"mine.txt:2: no words"),
    (b"caf\xe9\n", "cannot read sentence file"),
])  # fmt: skip
def test_read_sentence_file_errors(tmp_path, content, message):
    path = tmp_path / "mine.txt"
    path.write_bytes(content)
    with pytest.raises(SynthesisError, match=message):
        read_sentence_file(path)
    with pytest.raises(SynthesisError, match="cannot read sentence file"):
        read_sentence_file(tmp_path / "absent.txt")


# --- planning --------------------------------------------------------------------------------------
@pytest.mark.parametrize("speakers, splits, expected", [
    (4, (("train", 0.8), ("dev", 0.1), ("test", 0.1)), {"train": 2, "dev": 1, "test": 1}),
    (3, (("train", 0.8), ("dev", 0.1), ("test", 0.1)), {"train": 1, "dev": 1, "test": 1}),
    (10, (("train", 0.8), ("dev", 0.1), ("test", 0.1)), {"train": 8, "dev": 1, "test": 1}),
    (10, (("train", 3), ("dev", 3), ("test", 4)), {"train": 3, "dev": 3, "test": 4}),
    (5, (("a", 1.0), ("b", 1.0)), {"a": 3, "b": 2}),
    (1, (("dev-clean", 1),), {"dev-clean": 1}),
])  # fmt: skip
def test_split_counts(speakers, splits, expected):
    assert split_counts(SynthOptions(speakers_per_accent=speakers, splits=splits)) == expected


@pytest.mark.parametrize("speakers, splits, message", [
    (2, (("train", 0.8), ("dev", 0.1), ("test", 0.1)), "cannot fill 3"),
    (4, (("train", 2), ("dev", 1)), "must sum to speakers_per_accent=4"),
    (4, (("train", 0.5), ("train", 0.5)), "distinct folder names"),
    (4, (("../up", 0.5), ("dev", 0.5)), "distinct folder names"),
    (4, (("train", 1.0), ("dev", 0.0)), "must be positive"),
])  # fmt: skip
def test_split_counts_errors(speakers, splits, message):
    with pytest.raises(SynthesisError, match=message):
        split_counts(SynthOptions(speakers_per_accent=speakers, splits=splits))


@pytest.mark.parametrize("total, weights, expected", [
    (3, [2.8, 0.1, 0.1], [1, 1, 1]),
    (4, [6, 6, 6], [2, 1, 1]),
    (10, [0.8, 0.1, 0.1], [8, 1, 1]),
    (7, [1, 1], [4, 3]),
    (5, [1, 100], [1, 4]),
])  # fmt: skip
def test_apportion(total, weights, expected):
    assert synth.apportion(total, weights) == expected


def test_speakers_are_drawn_from_the_seed():
    speakers = synth.plan_speakers(OPTIONS)
    assert speakers == synth.plan_speakers(OPTIONS)
    assert len({s.id for s in speakers}) == 6 and all(100 <= s.id <= 9999 for s in speakers)
    assert {(s.accent, s.split) for s in speakers} == {(a, x) for a in OPTIONS.accents for x in ("train", "dev", "test")}
    for accent in OPTIONS.accents:  # distinct voice variants within an accent
        assert len({s.variant for s in speakers if s.accent == accent}) == 3
    assert all(s.sex == s.variant[0].upper() and 140 <= s.rate <= 190 and 30 <= s.pitch <= 70 for s in speakers)
    other = synth.plan_speakers(dataclasses.replace(OPTIONS, seed=8))
    assert [s.id for s in other] != [s.id for s in speakers]


# --- the corpus -------------------------------------------------------------------------------------
@needs_espeak
def test_layout_and_transcripts(corpus):
    out, result = corpus
    assert result.synthesized == 18 and result.synthesized_seconds > 18  # ~2-5 s each
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    flacs = [f for f in files if f.endswith(".flac")]
    expected = {f"LibriSpeech/{r['split']}/{r['speaker']}/{r['custom']['chapter']}/{r['id']}.flac" for r in result.rows}
    assert set(flacs) == expected and len(flacs) == 18
    assert set(files) - set(flacs) == {
        ".synth-options.json", ".synth-done.json", "LibriSpeech/SPEAKERS.TXT",
        "manifests/train.jsonl", "manifests/dev.jsonl", "manifests/test.jsonl",
        *(str(Path(f).parent / f"{Path(f).parent.parent.name}-{Path(f).parent.name}.trans.txt") for f in flacs),
    }  # fmt: skip
    numbers = Counter(tuple(r["id"].split("-")[:2]) for r in result.rows)
    assert sorted(numbers.values()) == [1] * 6 + [2] * 6  # 3 utterances over 2 chapters per speaker
    for row in result.rows:
        speaker, chapter, number = row["id"].split("-")
        assert re.fullmatch(r"\d{4}", number) and int(number) < numbers[speaker, chapter]
        info = audio_info(row["audio_filepath"])
        assert (info.sample_rate, info.channels) == (16000, 1)
        assert info.duration == pytest.approx(row["duration"])
        trans = Path(row["audio_filepath"]).parent / f"{speaker}-{chapter}.trans.txt"
        assert f"{row['id']} {row['text']}" in trans.read_text(encoding="utf-8").splitlines()
        assert LIBRISPEECH_TEXT.match(row["text"]) and row["text"] == to_librispeech_text(row["custom"]["sentence"])


@needs_espeak
def test_speakers_txt(corpus):
    out, result = corpus
    text = (out / "LibriSpeech" / "SPEAKERS.TXT").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0].startswith(";") and ";ID  |SEX| SUBSET           |MINUTES| ACCENT         | NAME" in lines
    body = [line for line in lines if not line.startswith(";")]
    assert len(body) == 6
    for line in body:
        assert re.fullmatch(r"\d+ *\| [MF] \| \S+ *\| +\d+\.\d\d \| \S+ *\| espeak-ng \S+\+[mf]\d s\d+ p\d+", line), line
    assert [int(line.split("|")[0]) for line in body] == sorted(s.id for s in result.speakers)
    parsed = read_speakers(out / "LibriSpeech" / "SPEAKERS.TXT")  # the LibriSpeech parser reads it
    seconds = Counter()
    for row in result.rows:
        seconds[row["speaker"]] += row["duration"]
    for s in result.speakers:
        p = parsed[str(s.id)]
        assert (p.accent, p.subset, p.gender) == (s.accent, s.split, {"M": "male", "F": "female"}[s.sex])
        minutes = float(next(line for line in body if line.startswith(f"{s.id} ")).split("|")[3])
        assert minutes == pytest.approx(seconds[str(s.id)] / 60, abs=0.006)


@needs_espeak
def test_librispeech_parser_reads_the_corpus(corpus, tmp_path):
    from asr_sft.corpora.librispeech import prepare_librispeech

    out, result = corpus
    manifests = prepare_librispeech(out, tmp_path / "m")
    assert sorted(manifests) == ["dev", "test", "train"]
    parsed = {r["id"]: r for path in manifests.values() for r in read_manifest(path)}
    assert set(parsed) == {r["id"] for r in result.rows}
    for row in result.rows:
        mine = parsed[row["id"]]
        assert (mine["text"], mine["speaker"], mine["accent"], mine["gender"], mine["split"]) == (
            row["text"], row["speaker"], row["accent"], row["gender"], row["split"])  # fmt: skip
        assert mine["duration"] == pytest.approx(row["duration"])


@needs_espeak
def test_manifests(corpus):
    out, result = corpus
    for split, path in result.manifests.items():
        check = check_manifest(path)
        assert check.ok and len(check.rows) == 6, check.problems
        for row in check.rows:
            assert (row["split"], row["corpus"], row["sampling_rate"]) == (split, "synth", 16000)
            assert row["accent"] in OPTIONS.accents and row["gender"] in ("male", "female")
            assert row["custom"]["voice"].startswith(row["accent"] + "+")
        raw = path.read_text(encoding="utf-8")
        assert '"audio_filepath": "../LibriSpeech/' in raw  # relative: the folder can move


@needs_espeak
def test_splits_are_speaker_disjoint_with_unseen_sentences(corpus):
    _, result = corpus
    speakers = {split: {r["speaker"] for r in result.rows if r["split"] == split} for split in result.manifests}
    texts = {split: {r["text"] for r in result.rows if r["split"] == split} for split in result.manifests}
    for a in speakers:
        for b in speakers:
            if a < b:
                assert not speakers[a] & speakers[b] and not texts[a] & texts[b]
    assert len({r["text"] for r in result.rows}) == 18  # generated sentences are never reused
    assert {(r["split"], r["accent"]) for r in result.rows} == {
        (s, a) for s in ("train", "dev", "test") for a in OPTIONS.accents}  # fmt: skip


@needs_espeak
def test_same_seed_is_byte_identical_whatever_the_workers(corpus, tmp_path):
    out, _ = corpus
    again = synthesize_corpus(tmp_path / "again", dataclasses.replace(OPTIONS, num_workers=2))
    assert again.synthesized == 18
    assert _hashes(tmp_path / "again") == _hashes(out)


@needs_espeak
def test_another_seed_gives_another_corpus(corpus, tmp_path):
    out, result = corpus
    other = synthesize_corpus(tmp_path / "other", dataclasses.replace(OPTIONS, seed=8))
    assert {r["text"] for r in other.rows}.isdisjoint({r["text"] for r in result.rows})
    assert {s.id for s in other.speakers} != {s.id for s in result.speakers}
    assert set(_hashes(tmp_path / "other").values()).isdisjoint(
        v for k, v in _hashes(out).items() if k.endswith(".flac"))  # fmt: skip


@needs_espeak
def test_rerun_skips_finished_work_and_resumes(tmp_path):
    options = SynthOptions(speakers_per_accent=3, utterances_per_speaker=1)
    out = tmp_path / "c"
    first = synthesize_corpus(out, options)
    before = _hashes(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    done = synthesize_corpus(out, options)
    assert done.synthesized == 0 and len(done.rows) == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps  # nothing rewritten
    # An interrupted run (one file missing, no done marker) finishes the missing work only.
    (out / synth.DONE_FILE).unlink()
    Path(first.rows[1]["audio_filepath"]).unlink()
    resumed = synthesize_corpus(out, dataclasses.replace(options, num_workers=2))
    assert resumed.synthesized == 1 and _hashes(out) == before


@needs_espeak
def test_other_options_into_the_same_folder_fail(tmp_path):
    options = SynthOptions(speakers_per_accent=3, utterances_per_speaker=1)
    synthesize_corpus(tmp_path / "c", options)
    with pytest.raises(SynthesisError, match=r"other options \(differing: seed, utterances_per_speaker\)"):
        synthesize_corpus(tmp_path / "c", dataclasses.replace(options, seed=1, utterances_per_speaker=2))
    (tmp_path / "foreign" / "LibriSpeech").mkdir(parents=True)
    with pytest.raises(SynthesisError, match="not made by `asr-sft synth`"):
        synthesize_corpus(tmp_path / "foreign", options)


@needs_espeak
def test_pack_split(corpus, tmp_path):
    out, result = corpus
    packed = pack_split(out, "dev", tmp_path / "a")
    data = packed.path.read_bytes()
    assert packed.path == tmp_path / "a" / "dev.tar.gz" and packed.size == len(data)
    assert (packed.md5, packed.sha256) == (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    assert (tmp_path / "a" / "dev.tar.gz.sha256").read_text() == f"{packed.sha256}  dev.tar.gz\n"
    assert (tmp_path / "a" / "dev.tar.gz.md5").read_text() == f"{packed.md5}  dev.tar.gz\n"
    assert data[4:8] == b"\0\0\0\0"  # gzip header time
    with tarfile.open(packed.path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:3] == ["LibriSpeech", "LibriSpeech/SPEAKERS.TXT", "LibriSpeech/dev"]
        files = {m.name for m in members if m.isfile()}
        source = out / "LibriSpeech"
        wanted = {f"LibriSpeech/{p.relative_to(source).as_posix()}" for p in (source / "dev").rglob("*") if p.is_file()}
        assert files == wanted | {"LibriSpeech/SPEAKERS.TXT"}
        assert len([n for n in files if n.endswith(".flac")]) == 6
        assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (pack.ARCHIVE_MTIME, 0, 0, "", "") for m in members)
        assert tar.extractfile("LibriSpeech/SPEAKERS.TXT").read() == (source / "SPEAKERS.TXT").read_bytes()
    again = pack_split(out, "dev", tmp_path / "b")
    assert again.path.read_bytes() == data  # byte-identical on re-pack
    assert sorted(os.listdir(tmp_path / "a")) == ["dev.tar.gz", "dev.tar.gz.md5", "dev.tar.gz.sha256"]
    with pytest.raises(SynthesisError, match="no such split to pack.*found: dev, test, train"):
        pack_split(out, "dev-clean", tmp_path / "a")


@needs_espeak
def test_corpus_from_harvard_sentences(shared_data, tmp_path):
    harvard = shared_data / "text" / "harvard_sentences.txt"
    options = SynthOptions(speakers_per_accent=3, utterances_per_speaker=2, sentences=str(harvard))
    result = synthesize_corpus(tmp_path / "h", options)
    allowed = {to_librispeech_text(s) for s in read_sentence_file(harvard)}
    texts = {split: {r["text"] for r in result.rows if r["split"] == split} for split in result.manifests}
    assert all(t in allowed for split in texts.values() for t in split)
    assert sum(len(t) for t in texts.values()) == len(set().union(*texts.values())) == 6


@needs_espeak
def test_short_sentence_file_is_shared_out_without_crossing_splits(tmp_path):
    path = tmp_path / "few.txt"
    path.write_text("One small sentence.\nAnother small sentence.\nA third small sentence.\nAnd a fourth one.\n")
    options = SynthOptions(speakers_per_accent=3, utterances_per_speaker=2, sentences=str(path),
                           splits=(("train", 1), ("dev", 1), ("test", 1)))  # fmt: skip
    result = synthesize_corpus(tmp_path / "c", options)
    texts = {split: [r["text"] for r in result.rows if r["split"] == split] for split in result.manifests}
    assert sorted(len(set(t)) for t in texts.values()) == [1, 1, 2]  # 4 sentences over 3 splits
    assert len(set().union(*map(set, texts.values()))) == 4
    path.write_text("Only one.\nAnd two.\n")
    with pytest.raises(SynthesisError, match="2 distinct sentences cannot be shared between 3 splits"):
        synthesize_corpus(tmp_path / "d", options)


# --- espeak-ng errors -----------------------------------------------------------------------------
def test_missing_espeak_is_a_synthesis_error(monkeypatch, tmp_path):
    monkeypatch.setattr(espeak, "ESPEAK_NG", "espeak-ng-not-installed-here")
    with pytest.raises(SynthesisError, match="espeak-ng not found: 'espeak-ng-not-installed-here'"):
        synthesize_corpus(tmp_path / "c", SynthOptions(speakers_per_accent=3, utterances_per_speaker=1))
    assert not (tmp_path / "c").exists()  # checked before the folder is claimed
    with pytest.raises(SynthesisError, match=r"espeak-ng not found: espeak-ng-not-installed-here -v en-us\+m1"):
        espeak.speak("hello", "en-us+m1", 170, 50)


@needs_espeak
def test_failing_espeak_reports_command_and_stderr(tmp_path):
    with pytest.raises(SynthesisError, match=r"exit 1\): espeak-ng -v nowhere -s 170 -p 50 --stdout .*voice does not exist"):
        espeak.speak("hello", "nowhere", 170, 50)
    # espeak-ng itself would fall back to en-gb for a misspelt en-gb voice: we refuse instead.
    with pytest.raises(SynthesisError, match="unknown espeak-ng voice.s. en-gb-scotlnd; English ones here: .*en-gb-scotland"):
        synthesize_corpus(tmp_path / "c", SynthOptions(accents=("en-gb-scotlnd",), speakers_per_accent=3))


@pytest.mark.parametrize("raw", [b"", b"not a wav at all", b"RIFF\xff\xff\xff\x7fWAVEfmt "])
def test_unusable_espeak_output(raw):
    with pytest.raises(SynthesisError, match="espeak-ng wrote"):
        espeak._parse_wav(raw, "espeak-ng -v en-us --stdout")


# --- CLI ------------------------------------------------------------------------------------------
@needs_espeak
def test_cli_synth_and_pack(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "c"), "--accents", "en-us,en-029", "--speakers-per-accent", "2",
            "--utterances-per-speaker", "1", "--splits", "train=1,test=1", "--seed", "3",
            "--pack", "test", "--pack-dir", str(tmp_path / "packed")]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^test +en-029 +1 +1 +0\.\d{3}$", out, re.M)
    assert re.search(r"^total +4 +4 ", out, re.M)
    assert re.search(r"synthesized 4 utterances .* \d+x real time", out)
    assert (tmp_path / "packed" / "test.tar.gz.sha256").is_file()
    rows = read_manifest(tmp_path / "c" / "manifests" / "train.jsonl")
    assert sorted(r["accent"] for r in rows) == ["en-029", "en-us"]
    assert cli.main(argv) == 0 and "already complete" in capsys.readouterr().out
    assert cli.main(argv[:3] + ["--seed", "4"]) == 2
    assert "other options" in capsys.readouterr().err


def test_sentence_offset_skips_a_base_models_text(tmp_path):
    """A corpus synthesized with sentence_offset=N never repeats the first N generated sentences
    (the text a base model was trained on), and records the option."""
    options = SynthOptions(speakers_per_accent=3, utterances_per_speaker=2, seed=9, sentence_seed=5,
                           sentence_offset=40)
    result = synthesize_corpus(tmp_path / "c", options)
    heard = {to_librispeech_text(s) for s in generate_sentences(40, seed=5)}
    texts = {row["text"] for split in result.manifests.values() for row in read_manifest(split)}
    assert len(texts) == 6 and not texts & heard
    assert texts <= {to_librispeech_text(s) for s in generate_sentences(46, seed=5)}
    with pytest.raises(SynthesisError, match="sentence_offset"):
        synthesize_corpus(tmp_path / "c", dataclasses.replace(options, sentence_offset=0))
