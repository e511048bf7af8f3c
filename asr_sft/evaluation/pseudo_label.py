"""Pseudo-labelling: a teacher model transcribes unlabelled audio, and a confidence filter keeps the
transcripts worth training on.

    pseudo_label(teacher, manifest, out_dir, PseudoLabelOptions(...)) -> PseudoLabelReport, and
        out_dir/pseudo.jsonl        the kept rows, `text` = the teacher's transcript (a training manifest;
                                    custom.pseudo_label holds the teacher and its confidence)
        out_dir/candidates.jsonl    every row: hypothesis, confidence, kept or the reasons it was dropped,
                                    and (with references) its reference and word errors
        out_dir/pseudo_label.json   the report (format REPORT_FORMAT): kept / dropped by reason, and with
                                    references the teacher's WER on the kept, dropped and all rows

The teacher decodes greedily (or with beams) and never by sampling: a pseudo-label is the teacher's
most likely transcript. The decoder's fallback is switched on with no temperatures, which makes it
measure each transcript's average token log-probability and compression ratio (openai/whisper's
definitions, asr_sft/models/whisper_decoding.py) without re-decoding anything. A row is dropped when

    empty          its transcript has fewer than min_words words
    low_logprob    average log-probability per token below min_avg_logprob (the teacher was unsure)
    repetitive     compression ratio above max_compression_ratio (a decoding loop)
    too_fast       more than max_words_per_second words per second of audio (hallucinated text)
    disagreement   with an agreement model: 1 - WER(teacher -> second model) below min_agreement

The manifest's `text` is treated as hidden: pseudo.jsonl replaces it by the teacher's (the row's other
fields stay as they are; training reads `text` only, so a corpus that also keeps its transcript
elsewhere, as asr-sft synth's custom.sentence, does not leak it into training). With `references`
on (the default) it is the true transcript the report scores the teacher against, which is how the
filter's effect is measured on a corpus that has labels; for audio that truly has none, give any
placeholder text and references=False.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.data.splits import group_value
from asr_sft.errors import ManifestError, ModelError, OptionError, ScoringError
from asr_sft.evaluation import decode
from asr_sft.evaluation.scoring import score_texts
from asr_sft.evaluation.text import get_normalizer
from asr_sft.models.options import DecodeOptions, Transcript
from asr_sft.models.whisper_decoding import compression_ratio

log = logging.getLogger(__name__)

PSEUDO_NAME, CANDIDATES_NAME, REPORT_NAME = "pseudo.jsonl", "candidates.jsonl", "pseudo_label.json"
REPORT_FORMAT = "asr_sft.pseudo_label/v1"
REASONS = ("empty", "low_logprob", "repetitive", "too_fast", "disagreement")


@dataclass(frozen=True)
class PseudoLabelOptions:
    # Drop transcripts whose average log-probability per token (end token included) is below this;
    # None: no such check. openai/whisper re-decodes below -1.0; a training target should be surer.
    min_avg_logprob: float | None = -0.5
    max_compression_ratio: float | None = 2.4  # gzip ratio above which text repeats itself; None: none
    max_words_per_second: float | None = 5.0  # read speech is 2-3.5 words/s; None: no such check
    min_words: int = 1  # shorter transcripts (after normalisation) are dropped as empty
    agreement_model: str | None = None  # a second model decoding the same audio; None: no agreement check
    min_agreement: float = 0.8  # with agreement_model: 1 - WER(teacher -> second), clipped at 0
    normalizer: str = "whisper_en"  # for word counts, agreement and the report's WER
    group_by: str = "accent"  # row field (or custom key) the report breaks counts down by; "" for none
    references: bool = True  # the manifest's text is the true transcript (scored, never copied)

    def __post_init__(self):
        if self.max_compression_ratio is not None and not self.max_compression_ratio > 0:
            raise OptionError(f"pseudo_label.max_compression_ratio must be > 0, got {self.max_compression_ratio}")
        if self.max_words_per_second is not None and not self.max_words_per_second > 0:
            raise OptionError(f"pseudo_label.max_words_per_second must be > 0, got {self.max_words_per_second}")
        if self.min_words < 1:  # an empty transcript is never a training target
            raise OptionError(f"pseudo_label.min_words must be >= 1, got {self.min_words}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise OptionError(f"pseudo_label.min_agreement must be in [0, 1], got {self.min_agreement}")
        get_normalizer(self.normalizer)  # an unknown name fails before any decoding


@dataclass(frozen=True)
class Candidate:
    """One row as the teacher heard it and what the filter made of it."""

    id: str
    hyp: str  # the teacher's transcript, as decoded
    words: int  # after normalisation
    words_per_second: float
    avg_logprob: float | None
    compression_ratio: float
    agreement: float | None  # with the agreement model; None without one
    second_hyp: str | None
    reasons: tuple[str, ...]  # why it was dropped (REASONS); () = kept

    @property
    def kept(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class GroupCount:
    name: str  # the group value ("unknown" for rows without one)
    utterances: int
    kept: int
    wer_all: float | None  # the teacher's WER on every row of the group (None without references)
    wer_kept: float | None  # ... on the kept rows (None when none was kept)


@dataclass(frozen=True)
class PseudoLabelReport:
    teacher: str
    agreement_model: str | None
    manifest: str  # absolute
    options: PseudoLabelOptions
    utterances: int
    kept: int
    kept_seconds: float
    dropped_by: Mapping[str, int]  # reason -> rows it applies to (a row may have several)
    # The teacher's WER against the hidden references (None without references, or no rows):
    wer_all: float | None
    wer_kept: float | None
    wer_dropped: float | None
    groups: tuple[GroupCount, ...]
    decode_seconds: float  # teacher and agreement model, feature->text
    format: str = field(default=REPORT_FORMAT, init=False)

    @property
    def kept_fraction(self) -> float:
        return self.kept / self.utterances if self.utterances else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dropped_by"] = dict(self.dropped_by)
        return d

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "") -> PseudoLabelReport:
        if d.get("format") != REPORT_FORMAT:
            raise ScoringError(f"{where or 'pseudo-label report'}: format {d.get('format')!r}; this asr_sft "
                               f"reads {REPORT_FORMAT!r} only. Re-run asr-sft pseudo-label.")
        values = {k: v for k, v in d.items() if k != "format"}
        values["options"] = PseudoLabelOptions(**values["options"])
        values["groups"] = tuple(GroupCount(**g) for g in values["groups"])
        return cls(**values)


# --- the filter -----------------------------------------------------------------------------------
def judge(row: dict, transcript: Transcript, options: PseudoLabelOptions, agreement: float | None = None,
          second_hyp: str | None = None) -> Candidate:
    """One row's candidate: its confidence measures and the REASONS to drop it."""
    words = get_normalizer(options.normalizer).function(transcript.text).split()
    rate = len(words) / max(float(row["duration"]), 1e-3)
    ratio = transcript.compression_ratio
    if ratio is None:  # families that do not measure it (CTC)
        ratio = compression_ratio(transcript.text)
    reasons = []
    if len(words) < options.min_words:
        reasons.append("empty")
    if options.min_avg_logprob is not None and words:
        if transcript.avg_logprob is None:
            raise ModelError("the teacher gives no token log-probabilities (a CTC model); set "
                             "min_avg_logprob to none")
        if transcript.avg_logprob < options.min_avg_logprob:
            reasons.append("low_logprob")
    if options.max_compression_ratio is not None and ratio > options.max_compression_ratio:
        reasons.append("repetitive")
    if options.max_words_per_second is not None and rate > options.max_words_per_second:
        reasons.append("too_fast")
    if agreement is not None and agreement < options.min_agreement:
        reasons.append("disagreement")
    return Candidate(str(row["id"]), transcript.text, len(words), rate, transcript.avg_logprob, ratio, agreement,
                     second_hyp, tuple(reasons))


def agreement_scores(first: Sequence[str], second: Sequence[str], normalizer: str = "whisper_en") -> list[float]:
    """Per utterance, 1 - WER of `second` against `first` (normalised), clipped at 0; 1.0 when both
    are empty, 0.0 when only `first` is."""
    scores = score_texts(list(first), list(second), normalizer=normalizer)
    out = []
    for ref_words, errors in zip(scores.ref_words.tolist(), scores.errors.tolist()):
        out.append((1.0 if errors == 0 else 0.0) if ref_words == 0 else max(0.0, 1.0 - errors / ref_words))
    return out


def teacher_options(options: DecodeOptions) -> DecodeOptions:
    """The decode options with the fallback's measurements on and its re-decoding off (module docstring)."""
    from asr_sft.models.options import COMPRESSION_RATIO_THRESHOLD, LOGPROB_THRESHOLD

    return replace(options, fallback=True, fallback_temperatures=(),
                   logprob_threshold=LOGPROB_THRESHOLD if options.logprob_threshold is None
                   else options.logprob_threshold,
                   compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD if options.compression_ratio_threshold
                   is None else options.compression_ratio_threshold)


def transcribe_rows(model_name: str, rows: Sequence[dict], options: DecodeOptions) -> tuple[list[Transcript], float]:
    """(transcripts in row order, feature->text seconds) of a model, loaded here and freed after."""
    model, processor = decode.load_model(model_name, options)
    run = decode.decode_rows_report(model, processor, rows, options)
    del model
    if run.timing.errors:
        log.warning("%s: %d utterance(s) could not be decoded (empty, so dropped)", model_name, len(run.timing.errors))
    return list(run.transcripts), run.timing.decode_seconds


def pseudo_label(teacher: str, manifest: str | Path, out_dir: str | Path,
                 options: PseudoLabelOptions = PseudoLabelOptions(),
                 decode_options: DecodeOptions = DecodeOptions()) -> PseudoLabelReport:
    """Transcribe `manifest` with `teacher`, filter, and write out_dir (module docstring)."""
    rows = read_manifest(manifest)
    if not rows:
        raise ManifestError(f"{manifest}: no utterances to pseudo-label")
    decoding = teacher_options(decode_options)
    log.info("pseudo-labelling %d utterance(s) with %s", len(rows), teacher)
    transcripts, seconds = transcribe_rows(teacher, rows, decoding)
    agreements, second_hyps = [None] * len(rows), [None] * len(rows)
    if options.agreement_model is not None:
        log.info("second opinion from %s", options.agreement_model)
        second, more = transcribe_rows(options.agreement_model, rows, decoding)
        seconds += more
        second_hyps = [t.text for t in second]
        agreements = agreement_scores([t.text for t in transcripts], second_hyps, options.normalizer)
    candidates = [judge(r, t, options, a, h) for r, t, a, h in zip(rows, transcripts, agreements, second_hyps,
                                                                    strict=True)]
    truth = (score_texts([r["text"] for r in rows], [c.hyp for c in candidates], normalizer=options.normalizer)
             if options.references else None)
    report = make_report(teacher, manifest, rows, candidates, truth, options, seconds)
    write_outputs(Path(out_dir), teacher, rows, candidates, truth, report)
    log.info("kept %d of %d utterance(s)%s", report.kept, report.utterances,
             "" if report.wer_kept is None or report.wer_all is None else
             f"; teacher WER on the kept {100 * report.wer_kept:.1f}%, on all {100 * report.wer_all:.1f}%")
    return report


# --- the report and the files ---------------------------------------------------------------------
def _wer(truth, members: Sequence[int]) -> float | None:
    """Corpus WER of the teacher on the rows `members` (indices), None without references or words."""
    if truth is None or not members:
        return None
    words = int(truth.ref_words[list(members)].sum())
    return None if words == 0 else int(truth.errors[list(members)].sum()) / words


def make_report(teacher: str, manifest, rows: Sequence[dict], candidates: Sequence[Candidate], truth,
                options: PseudoLabelOptions, decode_seconds: float) -> PseudoLabelReport:
    """`truth`: Scores of the teacher against the references (None without references)."""
    every = range(len(rows))
    kept = [i for i in every if candidates[i].kept]
    groups = []
    if options.group_by:
        names = [group_value(r, options.group_by) or "unknown" for r in rows]
        for name in sorted(set(names)):
            members = [i for i in every if names[i] == name]
            chosen = [i for i in members if candidates[i].kept]
            groups.append(GroupCount(name, len(members), len(chosen), _wer(truth, members), _wer(truth, chosen)))
    dropped_by = Counter(reason for c in candidates for reason in c.reasons)
    return PseudoLabelReport(
        teacher=teacher, agreement_model=options.agreement_model, manifest=str(Path(manifest).absolute()),
        options=options, utterances=len(rows), kept=len(kept),
        kept_seconds=sum(float(rows[i]["duration"]) for i in kept),
        dropped_by={reason: dropped_by.get(reason, 0) for reason in REASONS},
        wer_all=_wer(truth, list(every)), wer_kept=_wer(truth, kept),
        wer_dropped=_wer(truth, [i for i in every if not candidates[i].kept]),
        groups=tuple(groups), decode_seconds=decode_seconds)


def write_outputs(out: Path, teacher: str, rows: Sequence[dict], candidates: Sequence[Candidate], truth,
                  report: PseudoLabelReport) -> None:
    """pseudo.jsonl (the kept rows; not written when none is kept), candidates.jsonl, and
    pseudo_label.json last (a folder without it holds an unfinished run)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_NAME).unlink(missing_ok=True)
    (out / PSEUDO_NAME).unlink(missing_ok=True)
    kept = [{**row, "text": c.hyp, "custom": {**(row.get("custom") or {}), "pseudo_label": {
                "teacher": teacher, "avg_logprob": c.avg_logprob, "compression_ratio": c.compression_ratio,
                "agreement": c.agreement}}}
            for row, c in zip(rows, candidates) if c.kept]
    if kept:
        write_manifest(out / PSEUDO_NAME, kept)
    else:
        log.warning("no utterance passed the filter: %s not written", out / PSEUDO_NAME)
    group_by = report.options.group_by
    lines = []
    for i, (row, c) in enumerate(zip(rows, candidates)):
        record = {**asdict(c), "kept": c.kept, "duration": row["duration"]}
        if group_by:
            record[group_by] = group_value(row, group_by)
        if truth is not None:
            record.update(ref=row["text"], ref_words=int(truth.ref_words[i]), word_errors=int(truth.errors[i]))
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_text_atomic(out / CANDIDATES_NAME, "".join(lines))
    write_text_atomic(out / REPORT_NAME, json.dumps(report.to_dict(), indent=2) + "\n")


def read_report(path: str | Path) -> PseudoLabelReport:
    """A pseudo_label.json (or the folder holding it) read back."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_NAME
    try:
        return PseudoLabelReport.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, json.JSONDecodeError) as err:
        raise ScoringError(f"{path}: cannot read a pseudo-label report ({err})") from err
