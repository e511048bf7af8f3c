"""What `asr-sft bench` and `asr-sft score` produce: frozen dataclasses with one versioned JSON form.

    BenchmarkResults   results.json of a benchmark (format RESULTS_FORMAT)
    ScoreResult        wer.json of `asr-sft score` (format SCORE_FORMAT)

`to_dict()` gives the JSON a person reads; `from_dict()` reads it back and refuses a file of any
other format version with a clear error. The report writer, the CLI and the recipes read results
through these classes, not through string keys into nested dicts. The leaf records (Summary,
Interval, GroupBreakdown, PairedTest, Signals, NormalizerEffect) live in asr_sft/evaluation/scoring.py.

Format history:
- asr_sft.benchmark/v1: untyped dicts.
- asr_sft.benchmark/v2: intervals and paired tests say what they resampled ("resampling": "speaker"
  or "utterance"; none from fewer than 2 units); per result "signals" (hallucination) and "decode"
  (what the decoding guard caught); "speed" has "by_duration" (RTFx per duration bucket); per test
  set "normalizer_effect".
- wer.json had no "format" before asr_sft.score/v2 (which adds it, "signals", "normalizer_effect",
  "refs" and "warnings"; the summary stays at the top level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

from asr_sft.errors import ScoringError
from asr_sft.evaluation.scoring import (BOOTSTRAP_RESAMPLES, CONFIDENCE, MIN_SPEAKERS, GroupBreakdown, Interval,
                                        NormalizerEffect, PairedTest, Signals, Summary, duration_bucket,
                                        load_dataclass)

RESULTS_FORMAT = "asr_sft.benchmark/v2"  # bumped when results.json changes shape
SCORE_FORMAT = "asr_sft.score/v2"  # bumped when wer.json changes shape
DEFAULT_GROUP_BY = ("accent", "gender", "corpus", "duration_bucket")
MAX_IDS = 20  # utterance ids listed per decode count (the counts themselves are complete)


def check_format(d: Mapping, expected: str, where: str = "") -> None:
    """Refuse a results dict of another format (or of none) with a message that says what to do."""
    if not isinstance(d, Mapping):
        raise ScoringError(f"{where or 'results'}: not a JSON object")
    found = d.get("format")
    if found != expected:
        what = f"format {found!r}" if found is not None else "no \"format\" (written before it had one)"
        raise ScoringError(f"{where or 'results'}: {what}; this asr_sft reads {expected!r} only. "
                           "Re-run the command that wrote it.")


# --------------------------------------------------------------------------------- options, inputs

@dataclass(frozen=True)
class BenchOptions:
    normalizer: str = "whisper_en"  # applied to references and hypotheses before scoring
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY  # manifest fields (or duration_bucket) to break down by
    resamples: int = BOOTSTRAP_RESAMPLES  # bootstrap resamples of speakers (or utterances)
    seed: int = 0  # of every bootstrap
    confidence: float = CONFIDENCE  # of the intervals
    min_speakers: int = MIN_SPEAKERS  # fewer speakers: flagged, and intervals resample utterances
    plots: bool = True  # PNG plots (matplotlib)

    @classmethod
    def from_dict(cls, d: Mapping) -> BenchOptions:
        return load_dataclass(cls, {k: v for k, v in d.items() if k in _field_names(cls)})


@dataclass(frozen=True)
class NormalizerInfo:
    name: str
    version: int
    tag: str  # "whisper_en/v1"
    description: str

    @classmethod
    def from_dict(cls, d: Mapping) -> NormalizerInfo:
        return load_dataclass(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HypFile:
    testset: str  # a test set's name, or "*" for every test set
    path: str  # absolute


@dataclass(frozen=True)
class SystemInfo:
    name: str
    kind: str  # "model" (decoded here) or "hypotheses" (files made elsewhere)
    model: str | None  # folder, hub id or builtin:<name>
    hyp_files: tuple[HypFile, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "model": self.model,
                "hyp_files": [asdict(f) for f in self.hyp_files]}

    @classmethod
    def from_dict(cls, d: Mapping) -> SystemInfo:
        return load_dataclass(cls, d, hyp_files=lambda fs: tuple(HypFile(**f) for f in fs))


@dataclass(frozen=True)
class TestsetInfo:
    name: str
    manifest: str  # absolute path
    utterances: int
    speakers: int  # distinct known speakers
    audio_seconds: float
    normalizer_effect: NormalizerEffect | None = None  # how much the normaliser changes its references

    def to_dict(self) -> dict:
        d = asdict(self)
        d["normalizer_effect"] = self.normalizer_effect.to_dict() if self.normalizer_effect else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> TestsetInfo:
        return load_dataclass(cls, d, normalizer_effect=NormalizerEffect.from_dict)


# ------------------------------------------------------------------------------------ decoding

@dataclass(frozen=True)
class BucketSpeed:
    """RTFx of the utterances of one duration bucket. Decode batches are cut from utterances sorted
    by length and every utterance of a padded batch costs the same, so each utterance is charged
    its batch's time divided by the batch size."""

    bucket: str  # scoring.duration_bucket name, e.g. "0-5s"
    utterances: int
    audio_seconds: float
    decode_seconds: float  # charged to these utterances
    rtfx: float | None  # audio_seconds / decode_seconds

    @staticmethod
    def from_utterances(durations: Sequence[float], seconds: Sequence[float]) -> tuple[BucketSpeed, ...]:
        """Per bucket (shortest first) from each utterance's audio duration and decode time."""
        totals: dict[str, list] = {}
        for duration, spent in zip(durations, seconds, strict=True):
            t = totals.setdefault(duration_bucket(duration), [0, 0.0, 0.0, duration])
            t[0], t[1], t[2] = t[0] + 1, t[1] + duration, t[2] + spent
        ordered = sorted(totals.items(), key=lambda item: item[1][3])
        return tuple(BucketSpeed(name, n, audio, spent, audio / spent if spent > 0 else None)
                     for name, (n, audio, spent, _) in ordered)


@dataclass(frozen=True)
class DecodeCounts:
    """What decoding's guard against runaway output did on one test set (asr_sft.models.options
    Transcript facts, counted); the id lists hold at most MAX_IDS ids each."""

    utterances: int
    redecoded: int  # failed a check at temperature 0 and were decoded again (temperature fallback)
    still_failing: int  # failed at every temperature (the most probable non-repeating attempt is kept)
    at_max_tokens: int  # stopped at max_new_tokens without an end token
    empty: int  # empty transcripts
    redecoded_ids: tuple[str, ...] = ()
    failing_ids: tuple[str, ...] = ()
    max_tokens_ids: tuple[str, ...] = ()

    @classmethod
    def from_transcripts(cls, ids: Sequence[str], transcripts: Sequence) -> DecodeCounts:
        """From asr_sft.models.options.Transcript objects, one per id."""
        def which(test) -> list[str]:
            return [str(i) for i, t in zip(ids, transcripts, strict=True) if test(t)]
        redecoded, failing = which(lambda t: t.attempts > 1), which(lambda t: t.failed)
        at_max = which(lambda t: t.hit_max_tokens)
        return cls(len(ids), len(redecoded), len(failing), len(at_max), len(which(lambda t: not t.text)),
                   tuple(redecoded[:MAX_IDS]), tuple(failing[:MAX_IDS]), tuple(at_max[:MAX_IDS]))

    def to_dict(self) -> dict:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping) -> DecodeCounts:
        return load_dataclass(cls, d)


@dataclass(frozen=True)
class Speed:
    utterances: int
    audio_seconds: float
    load_seconds: float  # reading and resampling audio
    decode_seconds: float  # waveforms to text, device-synchronised
    rtfx: float | None  # audio_seconds / decode_seconds
    warmup: bool  # a warm-up batch was decoded before timing
    device: str  # "cpu", "cuda:0"
    device_name: str
    dtype: str
    batch_size: int
    cpu_threads: int
    by_duration: tuple[BucketSpeed, ...] = ()  # RTFx per duration bucket

    def to_dict(self) -> dict:
        d = asdict(self)
        d["by_duration"] = [asdict(b) for b in self.by_duration]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Speed:
        return load_dataclass(cls, d, by_duration=lambda bs: tuple(BucketSpeed(**b) for b in bs))


# ------------------------------------------------------------------------------------ results

@dataclass(frozen=True)
class SystemResult:
    """One system on one test set."""

    testset: str
    system: str
    summary: Summary  # with the benchmark's normaliser
    interval: Interval  # of summary.wer
    raw: Summary  # with normaliser "none"
    signals: Signals  # hallucination signals
    groups: Mapping[str, GroupBreakdown]  # by field name
    speed: Speed | None  # None for hypothesis files
    decode: DecodeCounts | None  # None for hypothesis files
    files: Mapping[str, str]  # kind -> path relative to the benchmark folder
    per_utterance: tuple[Mapping, ...]  # Scores.to_dict(utterances=True)["per_utterance"]

    def to_dict(self) -> dict:
        return {"testset": self.testset, "system": self.system, "summary": self.summary.to_dict(),
                "interval": self.interval.to_dict(), "raw": self.raw.to_dict(), "signals": self.signals.to_dict(),
                "groups": {k: g.to_dict() for k, g in self.groups.items()},
                "speed": self.speed.to_dict() if self.speed else None,
                "decode": self.decode.to_dict() if self.decode else None,
                "files": dict(self.files), "per_utterance": [dict(u) for u in self.per_utterance]}

    @classmethod
    def from_dict(cls, d: Mapping) -> SystemResult:
        return load_dataclass(
            cls, d, summary=Summary.from_dict, interval=Interval.from_dict, raw=Summary.from_dict,
            signals=Signals.from_dict, groups=lambda gs: {k: GroupBreakdown.from_dict(g) for k, g in gs.items()},
            speed=Speed.from_dict, decode=DecodeCounts.from_dict, files=dict,
            per_utterance=lambda us: tuple(map(dict, us)))


@dataclass(frozen=True)
class PairedResult:
    testset: str
    system_a: str
    system_b: str
    test: PairedTest
    verdict: str  # the test in plain words

    def to_dict(self) -> dict:  # flat: the test's fields beside the names
        return {"testset": self.testset, "system_a": self.system_a, "system_b": self.system_b,
                **self.test.to_dict(), "verdict": self.verdict}

    @classmethod
    def from_dict(cls, d: Mapping) -> PairedResult:
        names = ("testset", "system_a", "system_b", "verdict")
        missing = [k for k in names if k not in d]
        if missing:
            raise ScoringError(f"PairedResult: no {missing[0]!r}")
        return cls(d["testset"], d["system_a"], d["system_b"],
                   PairedTest.from_dict({k: v for k, v in d.items() if k not in names}), d["verdict"])


@dataclass(frozen=True)
class BenchmarkResults:
    created: str  # local time, ISO 8601
    options: BenchOptions
    normalizer_info: NormalizerInfo
    raw_normalizer_info: NormalizerInfo
    decode: Mapping | None  # the resolved DecodeOptions (asdict) when a model was decoded
    environment: Mapping  # versions, machine, decoding settings: shown as a table
    systems: tuple[SystemInfo, ...]
    testsets: tuple[TestsetInfo, ...]
    results: tuple[SystemResult, ...]  # test set by test set, systems in the order given
    paired: tuple[PairedResult, ...]
    warnings: tuple[str, ...]
    plots: tuple[str, ...] | None = None  # paths relative to the benchmark folder; None: not drawn
    format: str = field(default=RESULTS_FORMAT, init=False)

    def result(self, testset: str, system: str) -> SystemResult:
        for r in self.results:
            if (r.testset, r.system) == (testset, system):
                return r
        raise ScoringError(f"no result for system {system!r} on test set {testset!r}")

    def pair(self, testset: str, a: str, b: str) -> PairedResult | None:
        """The paired test of a and b on testset, in either order (None when there is none)."""
        return next((p for p in self.paired if p.testset == testset and {p.system_a, p.system_b} == {a, b}), None)

    def with_plots(self, plots: Sequence[str]) -> BenchmarkResults:
        return replace(self, plots=tuple(plots))

    def with_warning(self, warning: str) -> BenchmarkResults:
        return replace(self, warnings=(*self.warnings, warning))

    def to_dict(self) -> dict:
        d = {"format": self.format, "created": self.created,
             "options": {**_plain(asdict(self.options)), "normalizer_info": self.normalizer_info.to_dict(),
                         "raw_normalizer_info": self.raw_normalizer_info.to_dict(),
                         "decode": None if self.decode is None else _plain(dict(self.decode))},
             "environment": dict(self.environment),
             "systems": [s.to_dict() for s in self.systems],
             "testsets": [t.to_dict() for t in self.testsets],
             "results": [r.to_dict() for r in self.results],
             "paired": [p.to_dict() for p in self.paired],
             "warnings": list(self.warnings)}
        if self.plots is not None:
            d["plots"] = list(self.plots)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "") -> BenchmarkResults:
        check_format(d, RESULTS_FORMAT, where)
        o = d["options"]
        return cls(d["created"], BenchOptions.from_dict(o), NormalizerInfo.from_dict(o["normalizer_info"]),
                   NormalizerInfo.from_dict(o["raw_normalizer_info"]), o.get("decode"), dict(d["environment"]),
                   tuple(map(SystemInfo.from_dict, d["systems"])), tuple(map(TestsetInfo.from_dict, d["testsets"])),
                   tuple(map(SystemResult.from_dict, d["results"])), tuple(map(PairedResult.from_dict, d["paired"])),
                   tuple(d["warnings"]), None if d.get("plots") is None else tuple(d["plots"]))


@dataclass(frozen=True)
class ScoreResult:
    """wer.json: one hypothesis file scored; the summary's fields sit at the top level."""

    name: str
    summary: Summary
    normalizer_info: NormalizerInfo
    signals: Signals
    normalizer_effect: NormalizerEffect
    hyps: str  # absolute path of the hypotheses
    manifest: str | None = None  # where the references came from: a manifest,
    refs: str | None = None  # ... a trn / Kaldi text file, or (both None) the hyps.jsonl's "ref"
    warnings: tuple[str, ...] = ()
    format: str = field(default=SCORE_FORMAT, init=False)

    def to_dict(self) -> dict:
        return {"format": self.format, "name": self.name, **self.summary.to_dict(),
                "normalizer_info": self.normalizer_info.to_dict(), "signals": self.signals.to_dict(),
                "normalizer_effect": self.normalizer_effect.to_dict(), "hyps": self.hyps,
                "manifest": self.manifest, "refs": self.refs, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "") -> ScoreResult:
        check_format(d, SCORE_FORMAT, where)
        summary = Summary.from_dict({k: v for k, v in d.items() if k in _field_names(Summary)})
        return load_dataclass(cls, {**d, "summary": summary}, summary=lambda s: s,
                              normalizer_info=NormalizerInfo.from_dict, signals=Signals.from_dict,
                              normalizer_effect=NormalizerEffect.from_dict)


def _plain(d: dict) -> dict:
    """Tuples as lists: what JSON reads back."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _field_names(cls) -> set[str]:
    return set(cls.__dataclass_fields__)


def finite(x: float | None) -> float | None:
    """None for nan/inf (JSON has no NaN)."""
    return x if x is not None and math.isfinite(x) else None
