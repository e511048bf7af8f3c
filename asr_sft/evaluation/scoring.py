"""Scoring: WER/CER with sclite-compatible alignments, groups and bootstrap intervals.

References and hypotheses are normalised here, at scoring time (see asr_sft/text.py), then split on
whitespace. Word alignments use NIST sclite's edit costs and tie-breaking (SCTK src/sclite/word.c
`wwd_WORD` and net_dp.c), so per-utterance correct/substitution/deletion/insertion counts match
`sclite -s` exactly; corpus WER = sum(S + D + I) / sum(reference words). Characters are aligned
with unit costs (CER = edit distance / reference characters, the spaces between words included).

Everything aggregate (WER, groups, bootstrap intervals, paired tests) is computed from the
per-utterance counts kept in `Scores`. Bootstrap intervals resample speakers (clusters), because
utterances of one speaker are not independent; utterances without a speaker are their own cluster.
With fewer than MIN_SPEAKERS speakers (one speaker: every resample is that speaker, and the interval
collapses to a point) they resample utterances instead, and say so (`resampling`); with fewer than
two units to resample there is no interval and no p-value (nan, None in JSON).

`hallucination_signals` reads runaway decoding off the words alone (insertions, repeated n-grams,
loops, empty outputs); `normalizer_effect` measures how much a normaliser changes the references.

The alignment itself lives in asr_sft/alignment.py; the files written from scores (icefall's
recogs/errs/wer-summary, sclite trn, benchmark reports) in asr_sft/report.py.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cpdist

from asr_sft.evaluation.alignment import (CORRECT, DELETION, INSERTION, SUBSTITUTION, Alignment, align_batch,
                               align_chars, align_words)
from asr_sft.errors import ScoringError
from asr_sft.evaluation.text import NORMALIZERS, get_normalizer

__all__ = [  # the alignment names are re-exported: scoring was their home before alignment.py
    "Alignment", "align_batch", "align_chars", "align_words", "CORRECT", "SUBSTITUTION", "DELETION",
    "INSERTION", "Summary", "Scores", "Interval", "GroupScore", "GroupBreakdown", "PairedTest",
    "score_texts", "score_rows", "duration_bucket", "bootstrap_wer", "group_breakdown",
    "paired_bootstrap", "GROUP_FIELDS", "MIN_SPEAKERS", "BOOTSTRAP_RESAMPLES", "CONFIDENCE",
    "Signals", "hallucination_signals", "loop_repeats", "NormalizerEffect", "normalizer_effect",
    "SPEAKER", "UTTERANCE",
]

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95  # of bootstrap intervals
MIN_SPEAKERS = 5  # fewer speakers: flagged, and intervals resample utterances, not speakers
MIN_UNITS = 2  # fewer speakers/utterances to resample than this: no interval at all
SPEAKER, UTTERANCE = "speaker", "utterance"  # what a bootstrap resampled
REPEAT_N = 3  # n of the repeated n-gram rate
LOOP_REPEATS = 4  # an n-gram said this many times in a row is a loop ("the end of the end of ...")
LOOP_MAX_WORDS = 8  # longest n-gram looked for in loops
NORMALIZER_BASELINE = "whisper_basic"  # normaliser_effect compares against it: case and punctuation only
LENGTH_CHANGE_WARNING = 0.10  # a normaliser changing this share of reference words or characters is reported
DRAWS_PER_CHUNK = 4_000_000  # bootstrap cluster draws held in memory at once (~32 MB)
DURATION_BUCKETS_S = (5.0, 10.0, 20.0, 30.0)  # upper edges (seconds) of the duration_bucket groups
_DIGIT = re.compile(r"\d")
GROUP_FIELDS = ("speaker", "accent", "gender", "corpus", "duration_bucket")


@dataclass(frozen=True)
class Summary:
    normalizer: str  # tag of the normaliser applied to both sides, e.g. "whisper_en/v1"
    utterances: int
    ref_words: int
    correct: int
    substitutions: int
    deletions: int
    insertions: int
    errors: int
    wer: float  # errors / ref_words (nan when there are no reference words)
    ref_chars: int
    char_errors: int
    cer: float
    sentence_errors: int  # utterances with at least one word error
    ser: float

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> Summary:
        return load_dataclass(cls, d)


@dataclass(frozen=True, eq=False)
class Scores:
    """Per-utterance results of one system on one test set; every aggregate is computed from these."""

    normalizer: str  # tag of the normaliser applied to both sides
    ids: tuple[str, ...]
    refs: tuple[list[str], ...]  # normalised reference words per utterance (do not modify)
    hyps: tuple[list[str], ...]
    ops: tuple[str, ...]  # word alignment per utterance (see Alignment.ops)
    counts: np.ndarray  # (utterances, 4) int64: correct, substitutions, deletions, insertions
    char_errors: np.ndarray  # (utterances,) int64: character edit distance (unit costs)
    ref_chars: np.ndarray  # (utterances,) int64: reference characters, spaces between words included
    fields: Mapping[str, tuple] = field(default_factory=dict)  # per-utterance values for groups

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def errors(self) -> np.ndarray:
        return self.counts[:, 1:].sum(axis=1)

    @property
    def ref_words(self) -> np.ndarray:
        return self.counts[:, :3].sum(axis=1)

    def alignment(self, i: int) -> Alignment:
        return Alignment(tuple(self.refs[i]), tuple(self.hyps[i]), self.ops[i])

    def summary(self) -> Summary:
        c, s, d, i = (int(x) for x in self.counts.sum(axis=0))
        n, chars, char_errors = c + s + d, int(self.ref_chars.sum()), int(self.char_errors.sum())
        sentence_errors = int((self.errors > 0).sum())
        return Summary(self.normalizer, len(self), n, c, s, d, i, s + d + i, _ratio(s + d + i, n),
                       chars, char_errors, _ratio(char_errors, chars), sentence_errors,
                       _ratio(sentence_errors, len(self)))

    def to_dict(self, utterances: bool = False) -> dict:
        """The summary; with utterances=True also "per_utterance": every utterance's words, ops,
        counts and group fields."""
        d = self.summary().to_dict()
        if utterances:
            d["per_utterance"] = [
                {"id": self.ids[k], "ref": " ".join(self.refs[k]), "hyp": " ".join(self.hyps[k]),
                 "ops": self.ops[k], **dict(zip(("correct", "substitutions", "deletions", "insertions"),
                                                self.counts[k].tolist())),
                 "char_errors": int(self.char_errors[k]), "ref_chars": int(self.ref_chars[k]),
                 **{name: values[k] for name, values in self.fields.items()}}
                for k in range(len(self))]
        return d


@dataclass(frozen=True)
class Interval:
    estimate: float  # on all the data
    low: float  # nan when there were fewer than MIN_UNITS units to resample
    high: float
    confidence: float
    resamples: int
    clusters: int  # units resampled: speakers (and utterances without one), or utterances
    resampling: str = SPEAKER  # SPEAKER, or UTTERANCE when there were fewer than min_speakers

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> Interval:
        return load_dataclass(cls, d)


@dataclass(frozen=True)
class GroupScore:
    name: str  # the field's value ("unknown" when rows have none)
    utterances: int
    speakers: int  # distinct known speakers
    ref_words: int
    errors: int
    wer: float
    low: float  # bootstrap interval of wer, resampling this group's speakers (or utterances)
    high: float
    few_speakers: bool  # fewer than MIN_SPEAKERS: the interval says little about new speakers
    resampling: str = SPEAKER  # what the interval resampled: SPEAKER, or UTTERANCE with few speakers

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> GroupScore:
        return load_dataclass(cls, d)


@dataclass(frozen=True)
class GroupBreakdown:
    field: str
    groups: tuple[GroupScore, ...]  # by name
    worst: str  # group with the highest WER
    best: str
    gap: float  # WER of worst minus WER of best
    gap_low: float  # bootstrap interval of that gap (groups resampled independently)
    gap_high: float
    confidence: float
    resamples: int
    seed: int
    warnings: tuple[str, ...]  # one per group with too few speakers

    def to_dict(self) -> dict:
        d = _json_ready(asdict(self))
        d["groups"] = [g.to_dict() for g in self.groups]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> GroupBreakdown:
        return load_dataclass(cls, d, groups=lambda gs: tuple(map(GroupScore.from_dict, gs)))


@dataclass(frozen=True)
class PairedTest:
    wer_a: float
    wer_b: float
    delta: float  # wer_b - wer_a: negative when system B makes fewer errors
    low: float  # bootstrap interval of delta
    high: float
    p_value: float  # two-sided, for "no difference" (nan when there is no interval)
    confidence: float
    resamples: int
    seed: int
    clusters: int  # units resampled (speakers, or utterances)
    resampling: str = SPEAKER  # SPEAKER, or UTTERANCE when there were fewer than min_speakers

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> PairedTest:
        return load_dataclass(cls, d)


@dataclass(frozen=True)
class Signals:
    """Signs of runaway decoding (hallucination) in one system's normalised words on one test set."""

    insertion_rate: float  # insertions / reference words
    repeated_ngram_rate: float  # share of hypothesis REPEAT_N-grams said before in the same utterance
    ref_repeated_ngram_rate: float  # the same for the references: what the speech itself repeats
    looping: int  # hypotheses saying one n-gram >= LOOP_REPEATS times in a row (more than the reference)
    empty: int  # empty hypotheses of non-empty references
    looping_ids: tuple[str, ...] = ()  # which utterances loop (at most 20, in test set order)

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> Signals:
        return load_dataclass(cls, d)


@dataclass(frozen=True)
class NormalizerEffect:
    """How much a normaliser changes the references' length, against NORMALIZER_BASELINE (which
    only lower-cases and removes punctuation): numbers turned into digits, contractions expanded,
    fillers dropped. A large change means WER and CER also measure formatting, not recognition."""

    normalizer: str  # tag of the normaliser measured
    baseline: str  # tag of the baseline
    words_before: int  # reference words under the baseline
    words_after: int  # ... and under the normaliser
    chars_before: int
    chars_after: int
    utterances_changed: int  # references whose word count changes
    word_change: float  # sum over utterances of |words after - words before| / words before
    char_change: float  # the same for characters
    digits: bool  # the normalised references hold digits (a digit-aware normaliser may fit better)

    @property
    def large(self) -> bool:
        return max(_zero_if_nan(self.word_change), _zero_if_nan(self.char_change)) > LENGTH_CHANGE_WARNING

    def warning(self, where: str) -> str | None:
        """A line for the report when the change is large, else None."""
        if not self.large:
            return None
        text = (f"{where}: normaliser {self.normalizer} changes the references' length by "
                f"{100 * self.word_change:.0f}% of words and {100 * self.char_change:.0f}% of characters "
                f"(against {self.baseline}), so its WER and CER measure text formatting as well as recognition")
        if self.digits:
            text += "; the references hold digits: consider --normalizer whisper_en_digits"
        return text

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> NormalizerEffect:
        return load_dataclass(cls, d)


# ------------------------------------------------------------------------------------------ scoring

def score_texts(refs: Sequence[str], hyps: Sequence[str], *, ids: Sequence[str] | None = None,
                normalizer: str = "whisper_en", fields: Mapping[str, Sequence] | None = None) -> Scores:
    """Normalise, align and count every utterance. `fields` holds per-utterance values (speaker,
    accent...) used by group_breakdown and the bootstrap."""
    if len(refs) != len(hyps):
        raise ScoringError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ids = tuple(map(str, range(len(refs)) if ids is None else ids))
    if len(ids) != len(refs):
        raise ScoringError(f"{len(ids)} ids for {len(refs)} utterances")
    if len(set(ids)) != len(ids):
        dupes = [k for k, n in Counter(ids).items() if n > 1]
        raise ScoringError(f"duplicate utterance id(s) ({len(dupes)}): {', '.join(dupes[:10])}")
    fields = {name: tuple(values) for name, values in (fields or {}).items()}
    for name, values in fields.items():
        if len(values) != len(refs):
            raise ScoringError(f"field {name!r} has {len(values)} values for {len(refs)} utterances")
    norm = get_normalizer(normalizer)
    ref_text, hyp_text = [norm.function(t) for t in refs], [norm.function(t) for t in hyps]
    ref_words, hyp_words = [t.split() for t in ref_text], [t.split() for t in hyp_text]
    if norm.name == "none" or NORMALIZERS.get(norm.name) is not norm:
        # Registered normalisers already join words with single spaces; others may not.
        ref_text, hyp_text = [" ".join(w) for w in ref_words], [" ".join(w) for w in hyp_words]
    ops, counts = align_batch(ref_words, hyp_words)
    char_errors = (cpdist(ref_text, hyp_text, scorer=Levenshtein.distance, dtype=np.int64)
                   if refs else np.zeros(0, np.int64))
    ref_chars = np.fromiter(map(len, ref_text), np.int64, len(ref_text))
    return Scores(norm.tag, ids, tuple(ref_words), tuple(hyp_words),
                  tuple(ops), counts, np.asarray(char_errors, np.int64), ref_chars, fields)


def score_rows(rows: Sequence[Mapping], hyps: Mapping[str, str], *, normalizer: str = "whisper_en",
               fields: Sequence[str] = GROUP_FIELDS) -> Scores:
    """Score manifest rows against hypotheses by id; a missing or extra id is an error.

    Group fields are read from each row (or its `custom` dict); "duration_bucket" is derived from
    the row's duration.
    """
    row_ids = [str(r["id"]) for r in rows]
    missing = [k for k in row_ids if k not in hyps]
    extra = sorted(set(hyps) - set(row_ids))
    dupes = [k for k, n in Counter(row_ids).items() if n > 1]
    for problem, items in (("no hypothesis for", missing), ("hypotheses for unknown", extra),
                           ("duplicate reference", dupes)):
        if items:
            raise ScoringError(f"{problem} id(s) ({len(items)}): {', '.join(items[:10])}"
                               + (" ..." if len(items) > 10 else ""))
    values = {name: [_row_value(r, name) for r in rows] for name in fields}
    return score_texts([r["text"] for r in rows], [hyps[k] for k in row_ids], ids=row_ids,
                       normalizer=normalizer, fields=values)


def duration_bucket(seconds: float | None) -> str | None:
    """Name of the DURATION_BUCKETS_S bucket holding `seconds`, e.g. "5-10s" or "30s+"."""
    if seconds is None:
        return None
    low = 0.0
    for high in DURATION_BUCKETS_S:
        if seconds < high:
            return f"{low:g}-{high:g}s"
        low = high
    return f"{low:g}s+"


def _row_value(row: Mapping, name: str):
    if name == "duration_bucket":
        return duration_bucket(row.get("duration"))
    if name in row:
        return row[name]
    return (row.get("custom") or {}).get(name)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _json_ready(d: dict) -> dict:
    """nan (undefined rates) becomes None (JSON has no NaN) and tuples lists, as JSON reads back."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else list(v) if isinstance(v, tuple) else v)
            for k, v in d.items()}


def _zero_if_nan(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def load_dataclass(cls, d: Mapping, **nested):
    """A frozen result dataclass from its to_dict() form: None back to nan in float fields, lists
    back to tuples, `nested` fields through their own loaders. A missing field is a ScoringError
    naming it; fields with defaults may be absent."""
    if not isinstance(d, Mapping):
        raise ScoringError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
    kwargs = {}
    for f in fields(cls):
        if not f.init:
            continue
        if f.name not in d:
            if f.default is not MISSING or f.default_factory is not MISSING:
                continue
            raise ScoringError(f"{cls.__name__}: no {f.name!r} (have: {', '.join(d) or 'nothing'})")
        value = d[f.name]
        if f.name in nested:
            value = None if value is None else nested[f.name](value)
        elif value is None and f.type == "float":
            value = math.nan
        elif isinstance(value, list) and str(f.type).startswith("tuple"):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------- hallucination signals

def hallucination_signals(scores: Scores, max_ids: int = 20) -> Signals:
    """Insertion rate, repeated n-gram rates (hypotheses and references), looping and empty
    hypotheses, from the normalised words of `scores`."""
    ins, ref_words = int(scores.counts[:, 3].sum()), int(scores.ref_words.sum())
    hyp_grams = hyp_repeats = ref_grams = ref_repeats = 0
    empty, looping = 0, []
    for k in range(len(scores)):
        ref, hyp = scores.refs[k], scores.hyps[k]
        n, r = _repeated_ngrams(hyp)
        hyp_grams, hyp_repeats = hyp_grams + n, hyp_repeats + r
        n, r = _repeated_ngrams(ref)
        ref_grams, ref_repeats = ref_grams + n, ref_repeats + r
        empty += bool(ref) and not hyp
        repeats = loop_repeats(hyp)
        if repeats >= LOOP_REPEATS and repeats > loop_repeats(ref):
            looping.append(scores.ids[k])
    return Signals(_ratio(ins, ref_words), _ratio(hyp_repeats, hyp_grams), _ratio(ref_repeats, ref_grams),
                   len(looping), int(empty), tuple(looping[:max_ids]))


def _repeated_ngrams(words: Sequence[str], n: int = REPEAT_N) -> tuple[int, int]:
    """(n-grams, n-grams that occurred before in `words`)."""
    if len(words) < n:
        return 0, 0
    grams = list(zip(*(words[i:] for i in range(n))))
    return len(grams), len(grams) - len(set(grams))


def loop_repeats(words: Sequence[str], max_words: int = LOOP_MAX_WORDS) -> int:
    """The most times any n-gram (n <= max_words) is said in a row in `words`: 1 without repeats,
    4 for "the end of the end of the end of the end of"."""
    if len(words) < 2 or max(Counter(words).values()) < 2:
        return 1
    best = 1
    for n in range(1, min(max_words, len(words) // 2) + 1):
        run = 0  # consecutive positions j with words[j] == words[j - n]
        for j in range(n, len(words)):
            run = run + 1 if words[j] == words[j - n] else 0
            if run >= n:
                best = max(best, 1 + run // n)
    return best


def normalizer_effect(refs: Sequence[str], normalizer: str) -> NormalizerEffect:
    """How much `normalizer` changes the length of the reference texts `refs`, per utterance,
    against NORMALIZER_BASELINE (see NormalizerEffect). The "none" normaliser is measured against
    itself (it changes nothing by definition)."""
    norm = get_normalizer(normalizer)
    base = norm if norm.name == "none" else get_normalizer(NORMALIZER_BASELINE)
    before = [base.function(t).split() for t in refs]
    after = [norm.function(t).split() for t in refs]
    words = [(len(b), len(a)) for b, a in zip(before, after)]
    chars = [(len(" ".join(b)), len(" ".join(a))) for b, a in zip(before, after)]
    wb, wa = sum(b for b, _ in words), sum(a for _, a in words)
    cb, ca = sum(b for b, _ in chars), sum(a for _, a in chars)
    return NormalizerEffect(
        norm.tag, base.tag, wb, wa, cb, ca, sum(b != a for b, a in words),
        _ratio(sum(abs(a - b) for b, a in words), wb), _ratio(sum(abs(a - b) for b, a in chars), cb),
        any(_DIGIT.search(" ".join(a)) for a in after))


# ---------------------------------------------------------------------------------------- bootstrap

def bootstrap_wer(scores: Scores, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                  confidence: float = CONFIDENCE, cluster_field: str | None = "speaker",
                  min_speakers: int = MIN_SPEAKERS) -> Interval:
    """Corpus WER with a percentile bootstrap interval that resamples speakers; utterances when
    there are fewer than `min_speakers` of them, or cluster_field is None (see the module docstring)."""
    clusters, resampling = _resampling_units(scores, cluster_field, np.arange(len(scores)), min_speakers)
    sums = _cluster_sums(clusters, scores.ref_words, scores.errors)
    draws = _resample(np.random.default_rng(seed), sums, resamples)
    low, high = _interval(draws[:, 1] / _nonzero(draws[:, 0]), confidence, len(sums))
    return Interval(_ratio(sums[:, 1].sum(), sums[:, 0].sum()), low, high, confidence, resamples, len(sums),
                    resampling)


def group_breakdown(scores: Scores, field_name: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0, confidence: float = CONFIDENCE, min_speakers: int = MIN_SPEAKERS,
                    cluster_field: str | None = "speaker") -> GroupBreakdown:
    """WER per value of `field_name`, each with an interval from resampling that group's speakers
    (its utterances when it has fewer than min_speakers); the worst and best groups, and the gap
    between them with its interval."""
    if field_name not in scores.fields:
        raise ScoringError(f"no field {field_name!r} to group by; have: {', '.join(scores.fields) or 'none'}")
    if not len(scores):
        raise ScoringError("no utterances to group")
    values = ["unknown" if v is None else str(v) for v in scores.fields[field_name]]
    names = sorted(set(values))
    code = {name: n for n, name in enumerate(names)}
    group_of = np.fromiter(map(code.__getitem__, values), np.int64, len(values))
    by_group = np.split(np.argsort(group_of, kind="stable"), np.cumsum(np.bincount(group_of))[:-1])
    rng = np.random.default_rng(seed)
    words, errors = scores.ref_words, scores.errors
    groups, draws = [], []
    for name, members in zip(names, by_group):
        units, resampling = _resampling_units(scores, cluster_field, members, min_speakers)
        sums = _cluster_sums(units, words[members], errors[members])
        resampled = _resample(rng, sums, resamples)
        wer_draws = resampled[:, 1] / _nonzero(resampled[:, 0])
        draws.append(wer_draws if len(sums) >= MIN_UNITS else np.full(resamples, np.nan))
        low, high = _interval(wer_draws, confidence, len(sums))
        n_speakers = _speaker_count(scores, cluster_field, members)
        groups.append(GroupScore(name, len(members), n_speakers, int(sums[:, 0].sum()),
                                 int(sums[:, 1].sum()), _ratio(sums[:, 1].sum(), sums[:, 0].sum()),
                                 low, high, n_speakers < min_speakers, resampling))
    ranked = [k for k in range(len(groups)) if not math.isnan(groups[k].wer)] or [0]
    worst = max(ranked, key=lambda k: groups[k].wer)
    best = min(ranked, key=lambda k: groups[k].wer)
    gap_low, gap_high = _percentiles(draws[worst] - draws[best], confidence)
    warnings = tuple(f"{field_name}={g.name}: "
                     + (f"only {_speakers(g.speakers)} (< {min_speakers})" if g.speakers else "no speaker labels")
                     + "; its WER says little about other speakers, and its interval resamples utterances"
                     for g in groups if g.few_speakers)
    return GroupBreakdown(field_name, tuple(groups), groups[worst].name, groups[best].name,
                          groups[worst].wer - groups[best].wer, gap_low, gap_high, confidence,
                          resamples, seed, warnings)


def paired_bootstrap(a: Scores, b: Scores, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE, cluster_field: str | None = "speaker",
                     min_speakers: int = MIN_SPEAKERS) -> PairedTest:
    """Is system B's WER different from system A's on the same utterances? Both are scored on the
    same resampled speakers each time (utterances, with fewer than min_speakers); p is two-sided,
    for "no difference"."""
    if a.normalizer != b.normalizer:
        raise ScoringError(f"systems were normalised differently: {a.normalizer} vs {b.normalizer}")
    position = {k: n for n, k in enumerate(b.ids)}
    if len(position) != len(a.ids) or any(k not in position for k in a.ids):
        raise ScoringError("paired test needs the same utterance ids in both systems "
                           f"({len(a.ids)} vs {len(b.ids)} utterances)")
    order = np.fromiter((position[k] for k in a.ids), np.int64, len(a.ids))
    changed = [k for i, (k, n) in enumerate(zip(a.ids, order)) if a.refs[i] != b.refs[n]]
    if changed:
        raise ScoringError(f"references differ between the systems for {len(changed)} utterance(s), "
                           f"e.g. {changed[0]}")
    units, resampling = _resampling_units(a, cluster_field, np.arange(len(a)), min_speakers)
    sums = _cluster_sums(units, a.ref_words, a.errors, b.errors[order])
    draws = _resample(np.random.default_rng(seed), sums, resamples)
    deltas = (draws[:, 2] - draws[:, 1]) / _nonzero(draws[:, 0])
    low, high = _interval(deltas, confidence, len(sums))
    n = sums[:, 0].sum()
    wer_a, wer_b = _ratio(sums[:, 1].sum(), n), _ratio(sums[:, 2].sum(), n)
    # Two-sided percentile p-value, (k + 1) / (R + 1) so that it is never exactly 0; none where
    # there is nothing to resample (one unit: every resample is the data itself).
    tail = min((deltas <= 0).sum(), (deltas >= 0).sum())
    p_value = float(min(1.0, 2.0 * (tail + 1) / (resamples + 1))) if not math.isnan(low) else math.nan
    return PairedTest(wer_a, wer_b, wer_b - wer_a, low, high, p_value, confidence, resamples, seed, len(sums),
                      resampling)


def _speakers(n: int) -> str:
    return f"{n} speaker" if n == 1 else f"{n} speakers"


def _speaker_count(scores: Scores, cluster_field: str | None, members: np.ndarray) -> int:
    """Distinct known speakers among `members`."""
    speakers = scores.fields.get(cluster_field) if cluster_field else None
    return 0 if speakers is None else len({speakers[k] for k in members} - {None})


def _resampling_units(scores: Scores, cluster_field: str | None, members: np.ndarray,
                      min_speakers: int) -> tuple[np.ndarray, str]:
    """(unit index per member, SPEAKER or UTTERANCE): speakers when `members` have at least
    min_speakers of them (with one speaker every resample would be that speaker), else utterances."""
    if cluster_field is None or _speaker_count(scores, cluster_field, members) < min_speakers:
        return np.arange(len(members)), UTTERANCE
    return _cluster_codes(scores, cluster_field, members), SPEAKER


def _interval(draws: np.ndarray, confidence: float, units: int) -> tuple[float, float]:
    """Percentile interval of `draws`, or (nan, nan) from fewer than MIN_UNITS units."""
    return _percentiles(draws, confidence) if units >= MIN_UNITS else (math.nan, math.nan)


def _cluster_codes(scores: Scores, cluster_field: str | None, members: np.ndarray) -> np.ndarray:
    """Cluster index per member utterance: its speaker, or itself when it has none (or when
    cluster_field is None: plain utterance resampling)."""
    speakers = scores.fields.get(cluster_field) if cluster_field else None
    if speakers is None:
        return np.arange(len(members))
    index: dict = {}
    keys = ((speakers[k] if speakers[k] is not None else ("utterance", k)) for k in members)
    return np.fromiter((index.setdefault(key, len(index)) for key in keys), np.int64, len(members))


def _cluster_sums(codes: np.ndarray, *columns: np.ndarray) -> np.ndarray:
    """(clusters, columns) sums of each column per cluster."""
    size = int(codes.max()) + 1 if len(codes) else 0
    return np.stack([np.bincount(codes, weights=c, minlength=size) for c in columns], axis=1)


def _resample(rng: np.random.Generator, sums: np.ndarray, resamples: int) -> np.ndarray:
    """(resamples, columns) totals over clusters drawn with replacement, as many as there are."""
    k = len(sums)
    out = np.zeros((resamples, sums.shape[1]))
    if k == 0:
        return out
    per_chunk = max(1, DRAWS_PER_CHUNK // k)
    for start in range(0, resamples, per_chunk):
        stop = min(resamples, start + per_chunk)
        picks = rng.integers(0, k, size=(stop - start, k), dtype=np.int32)
        for c in range(sums.shape[1]):
            out[start:stop, c] = sums[:, c][picks].sum(axis=1)
    return out


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def _nonzero(x: np.ndarray) -> np.ndarray:
    return np.where(x == 0, np.nan, x)
