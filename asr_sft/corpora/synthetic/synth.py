"""Synthetic LibriSpeech-style corpora spoken by espeak-ng, so demos, tests and accent recipes run
anywhere offline.

A speaker is an espeak-ng English voice (the accent) + a voice variant (+m1..+m7, +f1..+f5) + a rate
(words per minute) + a pitch, all drawn from the seed. Output, under `out_dir`:

    LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt:04d>.flac
    LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    LibriSpeech/SPEAKERS.TXT          (LibriSpeech's columns plus ACCENT, see `format_speakers`)
    manifests/<split>.jsonl           (corpus "synth", accent, speaker, gender filled)

Splits are speaker-disjoint and no sentence appears in two splits, so dev/test measure unseen voices
and unseen text. Same options => byte-identical files, whatever `num_workers` is. espeak-ng's output is
deterministic; we resample it with asr_sft.audio on one thread so floating point never varies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import resource
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asr_sft.corpora.synthetic import espeak
from asr_sft.corpora.synthetic import sentences as sentence_source
from asr_sft.data.audio import audio_info, resample, write_audio
from asr_sft.errors import SynthesisError
from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import make_row, read_manifest, write_manifest

log = logging.getLogger(__name__)

VARIANTS = {**{f"m{i}": "M" for i in range(1, 8)}, **{f"f{i}": "F" for i in range(1, 6)}}  # -> SEX
RATE_WPM = (140, 190)  # espeak-ng speaking rate range, words per minute (its default is 175)
PITCH = (30, 70)  # espeak-ng pitch range, 0-99 (its default is 50)
SPEAKER_IDS = (100, 9999)  # LibriSpeech-like integer ids
CHAPTER_IDS = (10000, 199999)
CORPUS = "synth"
OPTIONS_FILE = ".synth-options.json"  # written first: what this folder is being filled with
DONE_FILE = ".synth-done.json"  # written last, same content: the folder is complete
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SynthOptions:
    accents: tuple[str, ...] = ("en-us",)  # espeak-ng English voices, see asr_sft.espeak.ACCENTS
    speakers_per_accent: int = 4
    utterances_per_speaker: int = 10
    sentences: str | None = None  # None: asr_sft.sentences generator; else a sentence file's path
    sample_rate: int = 16000  # Hz of the FLAC files (espeak-ng's 22050 Hz is resampled)
    seed: int = 0
    # Speakers of each accent per split: fractions (normalised; every split gets at least one), or
    # whole counts (all ints) summing to speakers_per_accent.
    splits: tuple[tuple[str, float], ...] = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
    chapters_per_speaker: int = 1
    num_workers: int = 1  # processes; output is identical for any value
    # Skip the generator's first N sentences for this seed, e.g. those a base model was trained on,
    # so that its evaluation and adaptation sets hold only sentences it has never heard.
    sentence_offset: int = 0
    sentence_seed: int | None = None  # seed of the sentence generator; None: `seed`


@dataclass(frozen=True)
class Speaker:
    id: int
    accent: str
    variant: str  # espeak-ng voice variant, m1..m7 / f1..f5
    sex: str  # "M" / "F", from the variant
    rate: int  # words per minute
    pitch: int  # 0-99
    split: str
    chapters: tuple[int, ...]

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class Utterance:
    id: str  # <spk>-<chapter>-<utt:04d>
    speaker: Speaker
    chapter: int
    sentence: str  # as spoken (punctuation helps the prosody)
    path: Path  # the FLAC file


@dataclass(frozen=True)
class SynthResult:
    corpus_dir: Path  # out_dir/LibriSpeech
    manifests: dict[str, Path]  # split -> manifest path
    speakers: tuple[Speaker, ...]
    rows: tuple[dict, ...]  # every manifest row, all splits
    synthesized: int  # utterances synthesized by this call (0 when the folder was complete)
    synthesized_seconds: float  # of audio, by this call
    wall_seconds: float
    cpu_seconds: float  # this process and its children (espeak-ng, workers)



def synthesize_corpus(out_dir: str | Path, options: SynthOptions = SynthOptions()) -> SynthResult:
    """Write a LibriSpeech-layout corpus and its manifests to `out_dir` (see the module docstring).

    Re-running with the same options finishes an interrupted run or, when complete, does nothing;
    other options into the same folder raise SynthesisError.
    """
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    out_dir = Path(out_dir)
    record, speakers = _record(options), plan_speakers(options)  # plan_speakers checks the options
    if _read_record(out_dir / DONE_FILE) == record:
        return _result(out_dir, options, speakers, 0, 0.0, start, cpu_start)
    espeak.check_espeak(options.accents)
    _claim(out_dir, record)
    utterances = plan_utterances(out_dir, options, speakers)
    frames = _synthesize_all(utterances, options)
    todo = sum(1 for u in utterances if frames[u.id][1])
    seconds = sum(n for n, new in frames.values() if new) / options.sample_rate
    _write_transcripts(utterances)
    _write_speakers(out_dir, speakers, utterances, frames, options.sample_rate)
    _write_manifests(out_dir, options, speakers, utterances, frames)
    write_text_atomic(out_dir / DONE_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return _result(out_dir, options, speakers, todo, seconds, start, cpu_start)


# --- planning --------------------------------------------------------------------------------------
def split_counts(options: SynthOptions) -> dict[str, int]:
    """Speakers of each accent per split; every split gets at least one."""
    names = [name for name, _ in options.splits]
    values = [value for _, value in options.splits]
    n = options.speakers_per_accent
    if not names or len(set(names)) != len(names) or not all(_SAFE_NAME.match(x) for x in names):
        raise SynthesisError(f"split names must be distinct folder names, got {names}")
    if any(v <= 0 for v in values):
        raise SynthesisError(f"split sizes must be positive, got {dict(options.splits)}")
    if n < len(names):
        raise SynthesisError(f"speakers_per_accent={n} cannot fill {len(names)} speaker-disjoint splits {names}")
    if all(isinstance(v, int) for v in values):
        if sum(values) != n:
            raise SynthesisError(f"split speaker counts {dict(options.splits)} must sum to speakers_per_accent={n}")
        return dict(options.splits)
    return dict(zip(names, apportion(n, values)))


def apportion(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, at least 1 each (total >= len(weights)):
    largest remainder first, ties to the earlier entry."""
    shares = [w / sum(weights) * total for w in weights]
    counts = [max(1, int(s)) for s in shares]
    while sum(counts) > total:  # take back from the one furthest above its share, keeping one each
        i = max((k for k in range(len(counts)) if counts[k] > 1), key=lambda k: (counts[k] - shares[k], -k))
        counts[i] -= 1
    while sum(counts) < total:
        i = max(range(len(counts)), key=lambda k: (shares[k] - counts[k], -k))
        counts[i] += 1
    return counts


def plan_speakers(options: SynthOptions) -> list[Speaker]:
    """Every speaker, drawn deterministically from the seed: accents in the given order."""
    _check_options(options)
    counts = split_counts(options)
    rng = random.Random(f"asr_sft.synth speakers {options.seed}")
    total = len(options.accents) * options.speakers_per_accent
    ids = rng.sample(range(SPEAKER_IDS[0], SPEAKER_IDS[1] + 1), total)
    chapters = rng.sample(range(CHAPTER_IDS[0], CHAPTER_IDS[1] + 1), total * options.chapters_per_speaker)
    speakers = []
    for accent in options.accents:
        variants = rng.sample(sorted(VARIANTS), len(VARIANTS))  # distinct variants while they last
        splits = [name for name, count in counts.items() for _ in range(count)]
        for i, split in enumerate(splits):
            k = len(speakers)
            variant = variants[i % len(variants)]
            speakers.append(Speaker(
                id=ids[k], accent=accent, variant=variant, sex=VARIANTS[variant],
                rate=rng.randint(*RATE_WPM), pitch=rng.randint(*PITCH), split=split,
                chapters=tuple(chapters[k * options.chapters_per_speaker:(k + 1) * options.chapters_per_speaker]),
            ))  # fmt: skip
    return speakers


def plan_utterances(out_dir: Path, options: SynthOptions, speakers: list[Speaker]) -> list[Utterance]:
    """Every utterance with its sentence; no sentence is shared between splits."""
    per_split = Counter(s.split for s in speakers)
    needed = {split: n * options.utterances_per_speaker for split, n in per_split.items()}
    pools = _sentence_pools(options, needed)
    used = Counter()
    utterances = []
    for speaker in speakers:
        n, c = options.utterances_per_speaker, len(speaker.chapters)
        for u in range(n):
            index = u * c // n  # chapters get consecutive blocks of utterances, numbered from 0
            chapter, number = speaker.chapters[index], u - (index * n + c - 1) // c
            uid = f"{speaker.id}-{chapter}-{number:04d}"
            pool = pools[speaker.split]
            sentence = pool[used[speaker.split] % len(pool)]
            used[speaker.split] += 1
            folder = out_dir / "LibriSpeech" / speaker.split / str(speaker.id) / str(chapter)
            utterances.append(Utterance(uid, speaker, chapter, sentence, folder / f"{uid}.flac"))
    return utterances


def _sentence_pools(options: SynthOptions, needed: dict[str, int]) -> dict[str, list[str]]:
    """Disjoint sentence lists per split. Generated sentences are all distinct; a file's sentences
    are shared out in proportion to each split's utterances and reused within a split if short."""
    total = sum(needed.values())
    if options.sentences is None:
        seed = options.seed if options.sentence_seed is None else options.sentence_seed
        unique = sentence_source.generate_sentences(options.sentence_offset + total, seed)
        unique = unique[options.sentence_offset:]
    else:
        lines = sentence_source.read_sentence_file(options.sentences)
        by_text = {}
        for line in lines:
            by_text.setdefault(sentence_source.to_librispeech_text(line), line)
        if len(by_text) < len(lines):
            log.info("%s: %d duplicate sentences merged", options.sentences, len(lines) - len(by_text))
        unique = list(by_text.values())
        random.Random(f"asr_sft.synth sentences {options.seed}").shuffle(unique)
        if len(unique) < len(needed):
            raise SynthesisError(f"{options.sentences}: {len(unique)} distinct sentences cannot be shared "
                                 f"between {len(needed)} splits without repeats")  # fmt: skip
    sizes = dict(needed)
    if len(unique) < total:  # too few: shares in proportion to the utterances, reused within a split
        sizes = dict(zip(needed, apportion(len(unique), list(needed.values()))))
    pools, start = {}, 0
    for split in needed:
        pools[split] = unique[start:start + sizes[split]]
        start += sizes[split]
    return pools


def _check_options(options: SynthOptions) -> None:
    problems = []
    if not options.accents or len(set(options.accents)) != len(options.accents):
        problems.append(f"accents must be distinct and non-empty, got {list(options.accents)}")
    problems += [f"accent {a!r} is not an espeak-ng voice name" for a in options.accents if not _SAFE_NAME.match(a)]
    for name in ("speakers_per_accent", "utterances_per_speaker", "chapters_per_speaker", "num_workers", "sample_rate"):
        if getattr(options, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(options, name)}")
    if options.chapters_per_speaker > options.utterances_per_speaker:
        problems.append("chapters_per_speaker cannot exceed utterances_per_speaker")
    if len(options.accents) * options.speakers_per_accent > SPEAKER_IDS[1] - SPEAKER_IDS[0]:
        problems.append("too many speakers for the LibriSpeech-like id range")
    if problems:
        raise SynthesisError("bad synthesis options: " + "; ".join(problems))


# --- synthesis ------------------------------------------------------------------------------------
def _job(u: Utterance, options: SynthOptions) -> tuple:
    # The executable travels with the job: a spawned worker re-imports asr_sft.espeak and would
    # not see an ESPEAK_NG changed in this process.
    s = u.speaker
    return (str(u.path), u.sentence, s.voice, s.rate, s.pitch, options.sample_rate, espeak.ESPEAK_NG)


def _synthesize_one(job: tuple) -> int:
    """Speak one sentence into one FLAC file; returns its number of samples."""
    path, text, voice, rate, pitch, sample_rate, executable = job
    samples, espeak_rate = espeak.speak(text, voice, rate, pitch, executable)
    wave = resample(torch.from_numpy(samples.astype(np.float32) / 32768.0), espeak_rate, sample_rate)
    wave = wave.clamp(-1.0, 32767 / 32768)  # resampling can overshoot full scale; never wrap around
    write_audio(path, wave, sample_rate)
    return int(wave.numel())


def _synthesize_all(utterances: list[Utterance], options: SynthOptions) -> dict[str, tuple[int, bool]]:
    """utterance id -> (samples, synthesized now). Finished files (written atomically) are kept."""
    frames: dict[str, tuple[int, bool]] = {}
    todo = []
    for u in utterances:
        if u.path.is_file():
            frames[u.id] = (audio_info(u.path).frames, False)
        else:
            todo.append(u)
    jobs = [_job(u, options) for u in todo]
    if options.num_workers == 1 or len(jobs) < 2:
        with _one_thread():
            counts = [_synthesize_one(job) for job in jobs]
    else:
        # spawn: fork is unsafe once torch threads exist. An executor (not Pool) fails loudly,
        # instead of hanging, when a worker dies.
        context = multiprocessing.get_context("spawn")
        workers = min(options.num_workers, len(jobs))
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
            try:
                counts = list(pool.map(_synthesize_one, jobs, chunksize=4))
            except BrokenProcessPool as err:
                raise SynthesisError(f"a synthesis worker process died ({err})") from err
    frames.update({u.id: (n, True) for u, n in zip(todo, counts)})
    return frames


def _init_worker() -> None:
    torch.set_num_threads(1)


@contextmanager
def _one_thread():
    """Resample on one thread, as workers do: faster for short clips, and identical floats."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- corpus files ---------------------------------------------------------------------------------
def _write_transcripts(utterances: list[Utterance]) -> None:
    chapters: dict[Path, list[str]] = defaultdict(list)
    for u in utterances:
        name = f"{u.speaker.id}-{u.chapter}.trans.txt"
        chapters[u.path.parent / name].append(f"{u.id} {sentence_source.to_librispeech_text(u.sentence)}\n")
    for path, lines in chapters.items():
        write_text_atomic(path, "".join(sorted(lines)))


def format_speakers(speakers: list[Speaker], minutes: dict[int, float]) -> str:
    """SPEAKERS.TXT: LibriSpeech's ';' comment header and '|'-separated columns, with ACCENT added
    before NAME:  `1234 | F | train            |  0.52 | en-gb-scotland | espeak-ng en-gb-scotland+f3 s163 p41`."""
    header = [
        "; Speakers of a synthetic LibriSpeech-style corpus spoken by espeak-ng (asr_sft synth).",
        "; The meaning of the fields in left-to-right order is as follows:",
        ";",
        "; reader_id: the speaker's id, as in the folder and file names",
        "; gender: 'F' for female, 'M' for male (from the espeak-ng voice variant)",
        "; subset: the corpus subset (split) to which the speaker's audio is assigned",
        "; duration: total number of minutes of speech by the speaker, included in the corpus",
        "; accent: the espeak-ng English voice the speaker uses",
        "; name: the espeak-ng voice+variant, speaking rate (s, words per minute) and pitch (p)",
        ";",
        ";ID  |SEX| SUBSET           |MINUTES| ACCENT         | NAME",
    ]
    lines = [
        f"{s.id:<5}| {s.sex} | {s.split:<16} | {minutes[s.id]:5.2f} | {s.accent:<14} | "
        f"espeak-ng {s.voice} s{s.rate} p{s.pitch}"
        for s in sorted(speakers, key=lambda s: s.id)
    ]
    return "\n".join(header + lines) + "\n"


def _write_speakers(out_dir: Path, speakers, utterances, frames, sample_rate: int) -> None:
    seconds = Counter()
    for u in utterances:
        seconds[u.speaker.id] += frames[u.id][0] / sample_rate
    minutes = {s.id: seconds[s.id] / 60 for s in speakers}
    write_text_atomic(out_dir / "LibriSpeech" / "SPEAKERS.TXT", format_speakers(speakers, minutes))


def _write_manifests(out_dir: Path, options: SynthOptions, speakers, utterances, frames) -> None:
    # Audio paths relative to the manifests' folder ("../LibriSpeech/..."): the corpus can move, and
    # two runs into different folders write identical bytes.
    manifests = out_dir / "manifests"
    rows = defaultdict(list)
    for u in utterances:
        s = u.speaker
        rows[s.split].append(make_row(
            id=u.id, audio_filepath=os.path.relpath(u.path, manifests), duration=frames[u.id][0] / options.sample_rate,
            text=sentence_source.to_librispeech_text(u.sentence), speaker=str(s.id), accent=s.accent,
            corpus=CORPUS, split=s.split, sampling_rate=options.sample_rate, language="en",
            gender="male" if s.sex == "M" else "female",
            custom={"voice": s.voice, "rate_wpm": s.rate, "pitch": s.pitch, "chapter": str(u.chapter),
                    "sentence": u.sentence},
        ))  # fmt: skip
    for split, split_rows in rows.items():
        write_manifest(manifests / f"{split}.jsonl", split_rows)


def _record(options: SynthOptions) -> dict:
    """What the folder's content depends on (not num_workers: output is the same for any)."""
    fields = asdict(options)
    del fields["num_workers"]
    # Left out at their defaults, so records written before these options existed stay valid.
    if options.sentence_offset == 0:
        del fields["sentence_offset"]
    if options.sentence_seed is None:
        del fields["sentence_seed"]
    fields["accents"], fields["splits"] = list(options.accents), [list(p) for p in options.splits]
    if options.sentences is not None:
        fields["sentences"] = str(options.sentences)
        try:
            fields["sentences_sha256"] = hashlib.sha256(Path(options.sentences).read_bytes()).hexdigest()
        except OSError as err:
            raise SynthesisError(f"{options.sentences}: cannot read sentence file ({err.strerror})") from err
    return {"options": fields, "grammar_version": sentence_source.GRAMMAR_VERSION, "layout_version": 1}


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise SynthesisError(f"{path}: unreadable synthesis record ({err}); remove the folder and re-run") from err


def _claim(out_dir: Path, record: dict) -> None:
    """Refuse a folder filled (or being filled) with other options; otherwise record ours."""
    for name in (DONE_FILE, OPTIONS_FILE):
        existing = _read_record(out_dir / name)
        if existing is not None and existing != record:
            theirs, ours = existing.get("options", {}), record["options"]
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            raise SynthesisError(
                f"{out_dir} holds a corpus synthesized with other options (differing: "
                f"{', '.join(diff) or 'versions'}); use another folder or delete this one"
            )
        if existing is not None:
            return
    if (out_dir / "LibriSpeech").exists() or (out_dir / "manifests").exists():
        raise SynthesisError(f"{out_dir} already holds a corpus not made by `asr-sft synth`; use an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / OPTIONS_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _result(out_dir, options, speakers, synthesized, seconds, start, cpu_start) -> SynthResult:
    manifests = {split: out_dir / "manifests" / f"{split}.jsonl" for split in split_counts(options)}
    rows = tuple(row for path in manifests.values() for row in read_manifest(path, check_audio=False))
    return SynthResult(
        corpus_dir=out_dir / "LibriSpeech", manifests=manifests, speakers=tuple(speakers), rows=rows,
        synthesized=synthesized, synthesized_seconds=seconds,
        wall_seconds=time.perf_counter() - start, cpu_seconds=_cpu_seconds() - cpu_start,
    )  # fmt: skip


def _cpu_seconds() -> float:
    """CPU time of this process and its waited-for children (espeak-ng, pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
