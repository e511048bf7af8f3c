"""Benchmarking: several systems on several test sets, and whether their differences are real.

    run_benchmark(systems, testsets, out_dir, options) -> BenchmarkResults, and out_dir/ holding
        results.json  everything, machine-readable, with the resolved options and the environment
                      (BenchmarkResults.to_dict(), format asr_sft.benchmark/v2: asr_sft/evaluation/results.py)
        report.md     tables a person reads (asr_sft/report.py renders it from the results)
        summary.csv   the main table; plots/*.png  WER per system and per group, with intervals
        systems/<system>/  recogs-, errs-, wer-summary-<testset>.txt, <testset>.{ref,hyp}.trn,
                           hyps-<testset>.jsonl (the hypotheses scored, in our format)

A system is a model (folder, hub id or builtin:<name>) decoded here through asr_sft.decode, or
hypothesis files made elsewhere: our hyps.jsonl, Kaldi `text` ("uttid words...") or sclite trn
("words (spk-uttid)"), read by asr_sft/hypotheses.py. One file may hold several test sets'
utterances; every hypothesis must match an utterance and every utterance needs a hypothesis, or the
run stops naming the file.

Every score is made twice: with the chosen normaliser and raw (normaliser "none"), and records
the normaliser's tag. Intervals and paired tests resample speakers, or utterances where there are
fewer than min_speakers (asr_sft/scoring.py), and say which. Every result has hallucination signals
(insertion rate, repeated n-grams, loops, empty outputs) and, for a model decoded here, what the
decoding guard caught and RTFx per duration bucket. A test set whose references the normaliser
lengthens or shortens by more than 10% (of words or characters) gets a warning.
results.json is written last: a folder without it holds an unfinished run.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from itertools import combinations
from pathlib import Path

from asr_sft.evaluation import report
from asr_sft.atomic import write_text_atomic
from asr_sft.errors import ScoringError
from asr_sft.evaluation.hypotheses import assign_hypotheses, read_hyp_rows, read_hypotheses, read_references
from asr_sft.data.manifest import read_manifest
from asr_sft.evaluation.results import (DEFAULT_GROUP_BY, RESULTS_FORMAT, BenchmarkResults, BenchOptions,
                                        DecodeCounts, HypFile, NormalizerInfo, PairedResult, Speed, SystemInfo,
                                        SystemResult, TestsetInfo, finite)
from asr_sft.evaluation.scoring import (GROUP_FIELDS, Scores, bootstrap_wer, group_breakdown, hallucination_signals,
                                        normalizer_effect, paired_bootstrap, score_rows)
from asr_sft.evaluation.text import get_normalizer

__all__ = ["System", "BenchOptions", "BenchmarkResults", "run_benchmark", "score_file", "environment",
           "device_name", "ALL_TESTSETS", "RESULTS_FORMAT", "RESULTS_NAME", "DEFAULT_GROUP_BY"]

log = logging.getLogger(__name__)

RAW_NORMALIZER = "none"  # the "raw WER" beside the normalised one: words split on whitespace only
RESULTS_NAME, REPORT_NAME, TABLE_NAME = "results.json", "report.md", "summary.csv"
ALL_TESTSETS = "*"  # a hypothesis file given for every test set
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # system and test set names: file-name safe


@dataclass(frozen=True)
class System:
    name: str
    model: str | None = None  # model folder, hub id or builtin:<name>, decoded here
    # (test set name or ALL_TESTSETS, hypothesis file) pairs, for a system decoded elsewhere
    hyp_files: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if (self.model is None) == (not self.hyp_files):
            raise ScoringError(f"system {self.name!r}: give either a model or hypothesis files, not "
                               + ("both" if self.model else "neither"))


# --------------------------------------------------------------------------- one file (asr-sft score)

def score_file(hyps_path: str | Path, manifest: str | Path | None = None, *,
               normalizer: str = "librispeech", fields: Sequence[str] = GROUP_FIELDS,
               refs: str | Path | None = None) -> Scores:
    """Score a hypothesis file: references from the manifest when given, or from `refs` (an sclite
    trn or Kaldi text file of reference transcripts; speakers from trn ids), else from the "ref" of
    each hyps.jsonl line. Hypotheses in any format. Gives the training loop's WER on the same rows
    and normaliser."""
    return score_rows(*_rows_and_hyps(hyps_path, manifest, refs), normalizer=normalizer, fields=fields)


def _rows_and_hyps(hyps_path, manifest, refs) -> tuple[list[dict], dict[str, str]]:
    if manifest is not None and refs is not None:
        raise ScoringError("give the references once: a manifest or a reference transcript file, not both")
    if manifest is None and refs is None:
        rows = read_hyp_rows(hyps_path)
        hyps = read_hypotheses(hyps_path, "jsonl")
    else:
        source = manifest if manifest is not None else refs
        rows = read_manifest(manifest, check_audio=False) if manifest is not None else read_references(refs)
        hyps = assign_hypotheses(hyps_path, read_hypotheses(hyps_path), {str(source): rows})[str(source)]
    if not rows:
        raise ScoringError(f"{manifest or refs or hyps_path}: no utterances to score")
    return rows, hyps


def score_file_result(hyps_path: str | Path, name: str, manifest: str | Path | None = None, *,
                      normalizer: str = "librispeech", refs: str | Path | None = None):
    """(Scores, ScoreResult): score_file and the wer.json record of it (signals, how much the
    normaliser changes the references, where the references came from)."""
    from asr_sft.evaluation.results import ScoreResult

    rows, hyps = _rows_and_hyps(hyps_path, manifest, refs)
    scores = score_rows(rows, hyps, normalizer=normalizer)
    effect = normalizer_effect([r["text"] for r in rows], normalizer)
    warnings = tuple(w for w in (effect.warning(name),) if w)
    result = ScoreResult(name, scores.summary(), NormalizerInfo(**get_normalizer(normalizer).to_dict()),
                         hallucination_signals(scores), effect, str(Path(hyps_path).absolute()),
                         None if manifest is None else str(Path(manifest).absolute()),
                         None if refs is None else str(Path(refs).absolute()), warnings)
    return scores, result


# --------------------------------------------------------------------------- the benchmark

def run_benchmark(systems: Sequence[System], testsets: Mapping[str, str | Path], out_dir: str | Path,
                  options: BenchOptions = BenchOptions(), decode_options=None) -> BenchmarkResults:
    """Decode (model systems) and score every system on every test set; write out_dir (see the
    module docstring) and return what results.json holds. decode_options is an
    asr_sft.decode.DecodeOptions (default: warm-up on, as the Open ASR Leaderboard times)."""
    _check_names(systems, testsets)
    get_normalizer(options.normalizer)  # an unknown name fails before any decoding
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_NAME).unlink(missing_ok=True)  # the old results must not describe new files
    needs_audio = any(s.model for s in systems)
    rows = {name: read_manifest(path, check_audio=needs_audio) for name, path in testsets.items()}
    for name, r in rows.items():
        if not r:
            raise ScoringError(f"{testsets[name]}: test set {name!r} has no utterances")
    warnings: list[str] = []
    infos = [_testset_info(name, testsets[name], r, options.normalizer) for name, r in rows.items()]
    warnings += [w for t in infos if (w := t.normalizer_effect.warning(f"test set {t.name}"))]
    hyps, speed, decoded, decode_info = _collect_hypotheses(systems, rows, out, decode_options, warnings)
    fields = tuple(dict.fromkeys(("speaker", *options.group_by)))
    results, scores = [], {}
    for t in rows:
        for s in systems:
            scores[t, s.name] = score_rows(rows[t], hyps[s.name][t], normalizer=options.normalizer,
                                           fields=fields)
            results.append(_result(t, s.name, rows[t], hyps[s.name][t], scores[t, s.name],
                                   speed.get((s.name, t)), decoded.get((s.name, t)), out, options, warnings))
    paired = [_paired(t, a.name, b.name, scores[t, a.name], scores[t, b.name], options)
              for t in rows for a, b in combinations(systems, 2)]
    results = BenchmarkResults(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), options=options,
        normalizer_info=NormalizerInfo(**get_normalizer(options.normalizer).to_dict()),
        raw_normalizer_info=NormalizerInfo(**get_normalizer(RAW_NORMALIZER).to_dict()),
        decode=decode_info, environment=environment(decode_info),
        systems=tuple(SystemInfo(s.name, "model" if s.model else "hypotheses", s.model,
                                 tuple(HypFile(t, str(Path(p).absolute())) for t, p in s.hyp_files))
                      for s in systems),
        testsets=tuple(infos), results=tuple(results), paired=tuple(paired),
        warnings=tuple(dict.fromkeys(warnings)))
    results = _write_reports(results, out, options)
    text = json.dumps(results.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)  # JSON has no NaN
    write_text_atomic(out / RESULTS_NAME, text + "\n")
    return results


def _check_names(systems: Sequence[System], testsets: Mapping[str, str | Path]) -> None:
    if not systems or not testsets:
        raise ScoringError("a benchmark needs at least one system and one test set")
    for kind, names in (("system", [s.name for s in systems]), ("test set", list(testsets))):
        for name in names:
            if not _NAME.match(name):
                raise ScoringError(f"{kind} name {name!r}: use letters, digits, '.', '_', '+', '-'")
        dupes = [n for n, c in Counter(names).items() if c > 1]
        if dupes:
            raise ScoringError(f"{kind} name(s) given twice: {', '.join(dupes)}")
    for s in systems:
        unknown = [t for t, _ in s.hyp_files if t != ALL_TESTSETS and t not in testsets]
        if unknown:
            raise ScoringError(f"system {s.name!r}: hypotheses for unknown test set(s) {', '.join(unknown)}; "
                               f"test sets: {', '.join(testsets)}")
        given = [t for t, _ in s.hyp_files]
        if ALL_TESTSETS in given and len(given) > 1 or len(set(given)) < len(given):
            raise ScoringError(f"system {s.name!r}: give one file for all test sets, or one per test set")
        missing = [t for t in testsets if given and ALL_TESTSETS not in given and t not in given]
        if missing:
            raise ScoringError(f"system {s.name!r}: no hypothesis file for test set(s) {', '.join(missing)}")


def _collect_hypotheses(systems, rows, out: Path, decode_options, warnings: list[str]):
    """({system: {test set: {id: text}}}, {(system, test set): Speed}, {(system, test set):
    DecodeCounts}, resolved decode options as a dict). Hypothesis files are read first: a bad one
    stops the run before any (long) decoding."""
    hyps, speed, decoded, decode_info = {}, {}, {}, None
    for s in systems:
        hyps[s.name] = {}
        for testset, path in s.hyp_files:
            wanted = rows if testset == ALL_TESTSETS else {testset: rows[testset]}
            hyps[s.name].update(assign_hypotheses(path, read_hypotheses(path), wanted))
    for s in systems:
        if s.model is None:
            continue
        from asr_sft.evaluation.decode import DecodeOptions

        decode_options = decode_options or DecodeOptions(warmup=True)
        decode_info = asdict(decode_options)
        hyps[s.name], timings, counts = _decode_system(s, rows, decode_options, warnings)
        speed.update({(s.name, t): timing for t, timing in timings.items()})
        decoded.update({(s.name, t): c for t, c in counts.items()})
    for s in systems:  # what was scored, in our format, whatever the system's source
        for t, r in rows.items():
            lines = [json.dumps({"id": row["id"], "ref": row["text"], "hyp": hyps[s.name][t][str(row["id"])]},
                                ensure_ascii=False) + "\n" for row in r]
            _write(out / "systems" / s.name / f"hyps-{t}.jsonl", "".join(lines))
    return hyps, speed, decoded, decode_info


def _decode_system(system: System, rows, options, warnings: list[str]):
    """Load the model once and decode every test set: ({test set: {id: text}}, {test set: Speed},
    {test set: DecodeCounts})."""
    import torch

    from asr_sft.evaluation.decode import (decode_rows_report, guard_counts, load_model, speed_by_duration,
                                           too_long_warning)

    log.info("system %s: loading %s", system.name, system.model)
    model, processor = load_model(system.model, options)
    device = next(model.parameters()).device
    hyps, speed, counts = {}, {}, {}
    for testset, r in rows.items():
        if (warning := too_long_warning(model, r)) is not None:
            warnings.append(f"system {system.name} on {testset}: {warning}")
        log.info("system %s: decoding %s (%d utterances)", system.name, testset, len(r))
        run = decode_rows_report(model, processor, r, options)
        hyps[testset] = {str(row["id"]): text for row, text in zip(r, run.texts, strict=True)}
        t = run.timing
        speed[testset] = Speed(t.utterances, t.audio_seconds, t.load_seconds, t.decode_seconds, finite(t.rtfx),
                               options.warmup, str(device), device_name(device), options.dtype, options.batch_size,
                               torch.get_num_threads(), speed_by_duration(r, run))
        counts[testset] = guard_counts(r, run)
        if counts[testset].redecoded or counts[testset].at_max_tokens:
            c = counts[testset]
            warnings.append(f"system {system.name} on {testset}: {c.redecoded} utterance(s) re-decoded by "
                            f"temperature fallback ({c.still_failing} still failing), {c.at_max_tokens} stopped "
                            f"at max_new_tokens={options.max_new_tokens}")
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return hyps, speed, counts


def _result(testset: str, system: str, rows, hyps, scores: Scores, speed: Speed | None,
            decoded: DecodeCounts | None, out: Path, options: BenchOptions, warnings: list[str]) -> SystemResult:
    """One system on one test set: summaries, interval, signals, groups, files written, per utterance."""
    raw = score_rows(rows, hyps, normalizer=RAW_NORMALIZER, fields=())
    interval = bootstrap_wer(scores, resamples=options.resamples, seed=options.seed,
                             confidence=options.confidence, min_speakers=options.min_speakers)
    groups = {}
    for name in options.group_by:
        if all(v is None for v in scores.fields[name]):
            warnings.append(f"test set {testset}: no {name!r} values in its manifest; not grouped by it")
            continue
        groups[name] = _breakdown(scores, name, options, testset, warnings)
    folder = out / "systems" / system
    files = report.write_icefall_files(folder, scores, testset)
    for side in ("ref", "hyp"):
        try:
            files[f"{side}_trn"] = str(report.write_trn(folder / f"{testset}.{side}.trn", scores, side))
        except ScoringError as err:  # words sclite would misread: said, not hidden
            warnings.append(f"system {system} on {testset}: no {side} trn file: {err}")
    return SystemResult(testset, system, scores.summary(), interval, raw.summary(), hallucination_signals(scores),
                        groups, speed, decoded, {k: os.path.relpath(v, out) for k, v in files.items()},
                        tuple(scores.to_dict(utterances=True)["per_utterance"]))


def _breakdown(scores: Scores, name: str, options: BenchOptions, testset: str, warnings: list[str]):
    """group_breakdown. Per speaker, the interval resamples that speaker's utterances (resampling one
    speaker cluster would give a zero-width interval) and nothing is flagged: one speaker per group
    is what the breakdown asks for."""
    per_speaker = name == "speaker"
    breakdown = group_breakdown(scores, name, resamples=options.resamples, seed=options.seed,
                                confidence=options.confidence, min_speakers=options.min_speakers,
                                cluster_field=None if per_speaker else "speaker")
    if per_speaker:
        groups = tuple(replace(g, speakers=0 if g.name == "unknown" else 1, few_speakers=g.name == "unknown")
                       for g in breakdown.groups)
        breakdown = replace(breakdown, groups=groups, warnings=())
    warnings.extend(f"test set {testset}: {w}" for w in breakdown.warnings)
    return breakdown


def _paired(testset: str, a: str, b: str, sa: Scores, sb: Scores, options: BenchOptions) -> PairedResult:
    test = paired_bootstrap(sa, sb, resamples=options.resamples, seed=options.seed,
                            confidence=options.confidence, min_speakers=options.min_speakers)
    return PairedResult(testset, a, b, test, report.verdict(a, b, test, options.min_speakers))


def _testset_info(name: str, manifest, rows, normalizer: str) -> TestsetInfo:
    speakers = {r.get("speaker") for r in rows} - {None}
    return TestsetInfo(name, str(Path(manifest).absolute()), len(rows), len(speakers),
                       sum(float(r["duration"]) for r in rows),
                       normalizer_effect([r["text"] for r in rows], normalizer))


def _write_reports(results: BenchmarkResults, out: Path, options: BenchOptions) -> BenchmarkResults:
    """Plots first: report.md lists them (and says so when there are none)."""
    if options.plots:
        try:
            results = results.with_plots([os.path.relpath(p, out) for p in report.write_plots(out / "plots", results)])
        except ImportError as err:
            results = results.with_warning(f"no plots: matplotlib is not installed ({err})")
    report.write_markdown(out / REPORT_NAME, results)
    report.write_table_csv(out / TABLE_NAME, results)
    return results


# --------------------------------------------------------------------------- environment

def environment(decode_options: dict | None = None) -> dict:
    """What the numbers were measured on: versions, machine, and the decoding settings."""
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu": _cpu_name(), "cpu_count": os.cpu_count()}
    for package in ("asr_sft", "torch", "transformers", "numpy"):
        try:
            env[package] = version(package.replace("_", "-"))
        except PackageNotFoundError:
            env[package] = None
    if "torch" in sys.modules:  # decoding ran: report the threads and device it used
        import torch

        env["cpu_threads"] = torch.get_num_threads()
        env["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    if decode_options:
        from asr_sft.evaluation.decode import resolve_device

        env["device"] = device_name(resolve_device(decode_options["device"]))
        env.update({k: decode_options[k] for k in ("dtype", "batch_size", "max_batch_seconds")})
    return env


def device_name(device) -> str:
    """"NVIDIA H100 80GB HBM3 (cuda:0)" or the CPU's model name."""
    if device.type == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"{_cpu_name()} ({device})"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path
