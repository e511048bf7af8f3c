"""Scoring: WER/CER with sclite-compatible alignments, groups and bootstrap intervals.

References and hypotheses are normalised here, at scoring time (see asr_sft/text.py), then split on
whitespace. Word alignments use NIST sclite's edit costs and tie-breaking (SCTK src/sclite/word.c
`wwd_WORD` and net_dp.c), so per-utterance correct/substitution/deletion/insertion counts match
`sclite -s` exactly; corpus WER = sum(S + D + I) / sum(reference words). Characters are aligned
with unit costs (CER = edit distance / reference characters, the spaces between words included).

Everything aggregate (WER, groups, bootstrap intervals, paired tests) is computed from the
per-utterance counts kept in `Scores`. Bootstrap intervals resample speakers (clusters), because
utterances of one speaker are not independent; utterances without a speaker are their own cluster.

The alignment itself lives in asr_sft/alignment.py; the files written from scores (icefall's
recogs/errs/wer-summary, sclite trn, benchmark reports) in asr_sft/report.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

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
]

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95  # of bootstrap intervals
MIN_SPEAKERS = 5  # a group with fewer speakers is flagged: its WER says little about new speakers
DRAWS_PER_CHUNK = 4_000_000  # bootstrap cluster draws held in memory at once (~32 MB)
DURATION_BUCKETS_S = (5.0, 10.0, 20.0, 30.0)  # upper edges (seconds) of the duration_bucket groups
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
    low: float
    high: float
    confidence: float
    resamples: int
    clusters: int  # speakers (or utterances without one) resampled

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))


@dataclass(frozen=True)
class GroupScore:
    name: str  # the field's value ("unknown" when rows have none)
    utterances: int
    speakers: int  # distinct known speakers
    ref_words: int
    errors: int
    wer: float
    low: float  # bootstrap interval of wer, resampling this group's speakers
    high: float
    few_speakers: bool  # fewer than MIN_SPEAKERS: the interval says little about new speakers

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))


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


@dataclass(frozen=True)
class PairedTest:
    wer_a: float
    wer_b: float
    delta: float  # wer_b - wer_a: negative when system B makes fewer errors
    low: float  # bootstrap interval of delta
    high: float
    p_value: float  # two-sided, for "no difference"
    confidence: float
    resamples: int
    seed: int
    clusters: int

    def to_dict(self) -> dict:
        return _json_ready(asdict(self))


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
    """nan (undefined rates) becomes None: JSON has no NaN."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


# ---------------------------------------------------------------------------------------- bootstrap

def bootstrap_wer(scores: Scores, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                  confidence: float = CONFIDENCE, cluster_field: str | None = "speaker") -> Interval:
    """Corpus WER with a percentile bootstrap interval that resamples speakers (utterances when
    cluster_field is None or the scores have no such field)."""
    clusters = _cluster_codes(scores, cluster_field, np.arange(len(scores)))
    sums = _cluster_sums(clusters, scores.ref_words, scores.errors)
    draws = _resample(np.random.default_rng(seed), sums, resamples)
    low, high = _percentiles(draws[:, 1] / _nonzero(draws[:, 0]), confidence)
    return Interval(_ratio(sums[:, 1].sum(), sums[:, 0].sum()), low, high, confidence, resamples, len(sums))


def group_breakdown(scores: Scores, field_name: str, *, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0, confidence: float = CONFIDENCE, min_speakers: int = MIN_SPEAKERS,
                    cluster_field: str | None = "speaker") -> GroupBreakdown:
    """WER per value of `field_name`, each with an interval from resampling that group's speakers;
    the worst and best groups, and the gap between them with its interval."""
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
    speakers = scores.fields.get(cluster_field) if cluster_field else None
    groups, draws = [], []
    for name, members in zip(names, by_group):
        sums = _cluster_sums(_cluster_codes(scores, cluster_field, members), words[members], errors[members])
        resampled = _resample(rng, sums, resamples)
        wer_draws = resampled[:, 1] / _nonzero(resampled[:, 0])
        draws.append(wer_draws)
        low, high = _percentiles(wer_draws, confidence)
        n_speakers = 0 if speakers is None else len({speakers[k] for k in members} - {None})
        groups.append(GroupScore(name, len(members), n_speakers, int(sums[:, 0].sum()),
                                 int(sums[:, 1].sum()), _ratio(sums[:, 1].sum(), sums[:, 0].sum()),
                                 low, high, n_speakers < min_speakers))
    ranked = [k for k in range(len(groups)) if not math.isnan(groups[k].wer)] or [0]
    worst = max(ranked, key=lambda k: groups[k].wer)
    best = min(ranked, key=lambda k: groups[k].wer)
    gap_low, gap_high = _percentiles(draws[worst] - draws[best], confidence)
    warnings = tuple(f"{field_name}={g.name}: only {g.speakers} speaker(s) (< {min_speakers}); its WER "
                     "and interval say little about other speakers" for g in groups if g.few_speakers)
    return GroupBreakdown(field_name, tuple(groups), groups[worst].name, groups[best].name,
                          groups[worst].wer - groups[best].wer, gap_low, gap_high, confidence,
                          resamples, seed, warnings)


def paired_bootstrap(a: Scores, b: Scores, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                     confidence: float = CONFIDENCE, cluster_field: str | None = "speaker") -> PairedTest:
    """Is system B's WER different from system A's on the same utterances? Both are scored on the
    same resampled speakers each time; p is two-sided, for "no difference"."""
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
    clusters = _cluster_codes(a, cluster_field, np.arange(len(a)))
    sums = _cluster_sums(clusters, a.ref_words, a.errors, b.errors[order])
    draws = _resample(np.random.default_rng(seed), sums, resamples)
    deltas = (draws[:, 2] - draws[:, 1]) / _nonzero(draws[:, 0])
    low, high = _percentiles(deltas, confidence)
    n = sums[:, 0].sum()
    wer_a, wer_b = _ratio(sums[:, 1].sum(), n), _ratio(sums[:, 2].sum(), n)
    # Two-sided percentile p-value, (k + 1) / (R + 1) so that it is never exactly 0.
    tail = min((deltas <= 0).sum(), (deltas >= 0).sum())
    p_value = min(1.0, 2.0 * (tail + 1) / (resamples + 1))
    return PairedTest(wer_a, wer_b, wer_b - wer_a, low, high, p_value, confidence, resamples, seed, len(sums))


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
