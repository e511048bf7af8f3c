"""Benchmarking: several systems on several test sets, and whether their differences are real.

    run_benchmark(systems, testsets, out_dir, options) -> results dict, and out_dir/ holding
        results.json  everything, machine-readable, with the resolved options and the environment
        report.md     tables a person reads (asr_sft/report.py renders it from the results dict)
        summary.csv   the main table; plots/*.png  WER per system and per group, with intervals
        systems/<system>/  recogs-, errs-, wer-summary-<testset>.txt, <testset>.{ref,hyp}.trn,
                           hyps-<testset>.jsonl (the hypotheses scored, in our format)

A system is a model (folder, hub id or builtin:<name>) decoded here through asr_sft.decode, or
hypothesis files made elsewhere: our hyps.jsonl, Kaldi `text` ("uttid words...") or sclite trn
("words (spk-uttid)"), read by asr_sft/hypotheses.py. One file may hold several test sets'
utterances; every hypothesis must match an utterance and every utterance needs a hypothesis, or the
run stops naming the file.

Every score is made twice: with the chosen normaliser and raw (normaliser "none"), and records
the normaliser's tag. Intervals and paired tests resample speakers (asr_sft/scoring.py).
results.json is written last: a folder without it holds an unfinished run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from itertools import combinations
from pathlib import Path

from asr_sft.evaluation import report
from asr_sft.atomic import write_text_atomic
from asr_sft.errors import ScoringError
from asr_sft.evaluation.hypotheses import assign_hypotheses, read_hyp_rows, read_hypotheses
from asr_sft.data.manifest import read_manifest
from asr_sft.evaluation.scoring import (BOOTSTRAP_RESAMPLES, CONFIDENCE, GROUP_FIELDS, MIN_SPEAKERS, Scores,
                             bootstrap_wer, group_breakdown, paired_bootstrap, score_rows)
from asr_sft.evaluation.text import get_normalizer

log = logging.getLogger(__name__)

RAW_NORMALIZER = "none"  # the "raw WER" beside the normalised one: words split on whitespace only
RESULTS_NAME, REPORT_NAME, TABLE_NAME = "results.json", "report.md", "summary.csv"
RESULTS_FORMAT = "asr_sft.benchmark/v1"  # bumped when results.json changes shape
ALL_TESTSETS = "*"  # a hypothesis file given for every test set
DEFAULT_GROUP_BY = ("accent", "gender", "corpus", "duration_bucket")
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


@dataclass(frozen=True)
class BenchOptions:
    normalizer: str = "whisper_en"  # applied to references and hypotheses before scoring
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY  # manifest fields (or duration_bucket) to break down by
    resamples: int = BOOTSTRAP_RESAMPLES  # bootstrap resamples of speakers
    seed: int = 0  # of every bootstrap
    confidence: float = CONFIDENCE  # of the intervals
    min_speakers: int = MIN_SPEAKERS  # groups with fewer speakers are flagged
    plots: bool = True  # PNG plots (matplotlib)


# --------------------------------------------------------------------------- one file (asr-sft score)

def score_file(hyps_path: str | Path, manifest: str | Path | None = None, *,
               normalizer: str = "librispeech", fields: Sequence[str] = GROUP_FIELDS) -> Scores:
    """Score a hypothesis file: references from the manifest when given (any format), else from the
    "ref" of each hyps.jsonl line. Gives the training loop's WER on the same rows and normaliser."""
    if manifest is None:
        rows = read_hyp_rows(hyps_path)
        hyps = read_hypotheses(hyps_path, "jsonl")
    else:
        rows = read_manifest(manifest, check_audio=False)
        hyps = assign_hypotheses(hyps_path, read_hypotheses(hyps_path), {str(manifest): rows})[str(manifest)]
    if not rows:
        raise ScoringError(f"{manifest or hyps_path}: no utterances to score")
    return score_rows(rows, hyps, normalizer=normalizer, fields=fields)


# --------------------------------------------------------------------------- the benchmark

def run_benchmark(systems: Sequence[System], testsets: Mapping[str, str | Path], out_dir: str | Path,
                  options: BenchOptions = BenchOptions(), decode_options=None) -> dict:
    """Decode (model systems) and score every system on every test set; write out_dir (see the
    module docstring) and return the results dict written to results.json. decode_options is an
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
    hyps, speed, decode_info = _collect_hypotheses(systems, rows, out, decode_options, warnings)
    fields = tuple(dict.fromkeys(("speaker", *options.group_by)))
    results, scores = [], {}
    for t in rows:
        for s in systems:
            scores[t, s.name] = score_rows(rows[t], hyps[s.name][t], normalizer=options.normalizer,
                                           fields=fields)
            results.append(_result(t, s.name, rows[t], hyps[s.name][t], scores[t, s.name],
                                   speed.get((s.name, t)), out, options, warnings))
    paired = [_paired(t, a.name, b.name, scores[t, a.name], scores[t, b.name], options)
              for t in rows for a, b in combinations(systems, 2)]
    results_dict = {
        "format": RESULTS_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {**asdict(options), "normalizer_info": get_normalizer(options.normalizer).to_dict(),
                    "raw_normalizer_info": get_normalizer(RAW_NORMALIZER).to_dict(),
                    "decode": decode_info},
        "environment": environment(decode_info),
        "systems": [{"name": s.name, "kind": "model" if s.model else "hypotheses", "model": s.model,
                     "hyp_files": [{"testset": t, "path": str(Path(p).absolute())} for t, p in s.hyp_files]}
                    for s in systems],
        "testsets": [_testset_info(name, testsets[name], r) for name, r in rows.items()],
        "results": results,
        "paired": paired,
        "warnings": list(dict.fromkeys(warnings)),
    }
    _write_reports(results_dict, out, options)
    text = json.dumps(results_dict, indent=1, ensure_ascii=False, allow_nan=False)  # JSON has no NaN
    write_text_atomic(out / RESULTS_NAME, text + "\n")
    return results_dict


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
    """({system: {test set: {id: text}}}, {(system, test set): speed dict}, resolved decode options).
    Hypothesis files are read first: a bad one stops the run before any (long) decoding."""
    hyps, speed, decode_info = {}, {}, None
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
        hyps[s.name], timings = _decode_system(s, rows, decode_options, warnings)
        speed.update({(s.name, t): timing for t, timing in timings.items()})
    for s in systems:  # what was scored, in our format, whatever the system's source
        for t, r in rows.items():
            lines = [json.dumps({"id": row["id"], "ref": row["text"], "hyp": hyps[s.name][t][str(row["id"])]},
                                ensure_ascii=False) + "\n" for row in r]
            _write(out / "systems" / s.name / f"hyps-{t}.jsonl", "".join(lines))
    return hyps, speed, decode_info


def _decode_system(system: System, rows, options, warnings: list[str]):
    """Load the model once and decode every test set: ({test set: {id: text}}, {test set: speed})."""
    import torch

    from asr_sft.evaluation.decode import decode_rows_timed, load_model, too_long_warning

    log.info("system %s: loading %s", system.name, system.model)
    model, processor = load_model(system.model, options)
    device = next(model.parameters()).device
    hyps, speed = {}, {}
    for testset, r in rows.items():
        if (warning := too_long_warning(model, r)) is not None:
            warnings.append(f"system {system.name} on {testset}: {warning}")
        log.info("system %s: decoding %s (%d utterances)", system.name, testset, len(r))
        texts, timing = decode_rows_timed(model, processor, r, options)
        hyps[testset] = {str(row["id"]): text for row, text in zip(r, texts, strict=True)}
        speed[testset] = {**asdict(timing), "rtfx": _finite(timing.rtfx), "warmup": options.warmup,
                          "device": str(device), "device_name": device_name(device),
                          "dtype": options.dtype, "batch_size": options.batch_size,
                          "cpu_threads": torch.get_num_threads()}
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return hyps, speed


def _result(testset: str, system: str, rows, hyps, scores: Scores, speed, out: Path,
            options: BenchOptions, warnings: list[str]) -> dict:
    """One system on one test set: summaries, interval, groups, files written, per utterance."""
    raw = score_rows(rows, hyps, normalizer=RAW_NORMALIZER, fields=())
    interval = bootstrap_wer(scores, resamples=options.resamples, seed=options.seed,
                             confidence=options.confidence)
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
    return {"testset": testset, "system": system, "summary": scores.summary().to_dict(),
            "interval": interval.to_dict(), "raw": raw.summary().to_dict(), "groups": groups,
            "speed": speed, "files": {k: os.path.relpath(v, out) for k, v in files.items()},
            "per_utterance": scores.to_dict(utterances=True)["per_utterance"]}


def _breakdown(scores: Scores, name: str, options: BenchOptions, testset: str, warnings: list[str]) -> dict:
    """group_breakdown as a dict. Per speaker, the interval resamples that speaker's utterances
    (resampling one speaker cluster would give a zero-width interval) and nothing is flagged:
    one speaker per group is what the breakdown asks for."""
    per_speaker = name == "speaker"
    breakdown = group_breakdown(scores, name, resamples=options.resamples, seed=options.seed,
                                confidence=options.confidence, min_speakers=options.min_speakers,
                                cluster_field=None if per_speaker else "speaker")
    d = breakdown.to_dict()
    if per_speaker:
        d["warnings"] = []
        for g in d["groups"]:
            g["speakers"], g["few_speakers"] = (0, True) if g["name"] == "unknown" else (1, False)
    warnings.extend(f"test set {testset}: {w}" for w in d["warnings"])
    return d


def _paired(testset: str, a: str, b: str, sa: Scores, sb: Scores, options: BenchOptions) -> dict:
    test = paired_bootstrap(sa, sb, resamples=options.resamples, seed=options.seed,
                            confidence=options.confidence)
    d = {"testset": testset, "system_a": a, "system_b": b, **test.to_dict()}
    return {**d, "verdict": report.verdict(d, options.min_speakers)}


def _testset_info(name: str, manifest, rows) -> dict:
    speakers = {r.get("speaker") for r in rows} - {None}
    return {"name": name, "manifest": str(Path(manifest).absolute()), "utterances": len(rows),
            "speakers": len(speakers), "audio_seconds": sum(float(r["duration"]) for r in rows)}


def _write_reports(results: dict, out: Path, options: BenchOptions) -> None:
    """Plots first: report.md lists them (and says so when there are none)."""
    if options.plots:
        try:
            results["plots"] = [os.path.relpath(p, out) for p in report.write_plots(out / "plots", results)]
        except ImportError as err:
            results["warnings"].append(f"no plots: matplotlib is not installed ({err})")
    report.write_markdown(out / REPORT_NAME, results)
    report.write_table_csv(out / TABLE_NAME, results)


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


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path
