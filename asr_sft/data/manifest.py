"""JSONL manifests: the contract between pipeline stages.

One JSON object per line (NeMo/lhotse compatible where they agree):
  id, audio_filepath, duration (s), text, speaker, accent, corpus, split, sampling_rate (Hz)
plus optional offset (s), language, gender, custom (dict).

Audio paths are stored relative to the manifest's folder when the audio lives under it, absolute
otherwise; `read_manifest` hands them back absolute. A manifest is validated when written and when
read; every problem is reported with its line number, never silently dropped.

Two depths of checking: the default looks at each row and that its audio file exists and is not
empty (cheap); `deep=True` also decodes every audio file once (each file once, however many rows
use it, in threads): it must decode to the end, hold only finite samples, and be as long as the row
says within DURATION_TOLERANCE_S (or DURATION_TOLERANCE of the duration), or, for a row with an
offset, long enough to hold its slice. Any sample rate is accepted; loading resamples to 16 kHz.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from asr_sft.atomic import write_text_atomic
from asr_sft.data.audio import scan_audio
from asr_sft.errors import AudioError, ManifestError

log = logging.getLogger(__name__)

FIELDS = ("id", "audio_filepath", "duration", "text", "speaker", "accent", "corpus", "split",
          "sampling_rate")
OPTIONAL_FIELDS = ("offset", "language", "gender", "custom")
KNOWN_SAMPLE_RATES = frozenset({8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000})  # Hz, common ones
MAX_SAMPLE_RATE = 768_000  # Hz; any positive rate up to this is accepted (and resampled on loading)
DURATION_TOLERANCE_S = 0.1  # a row's duration may differ from its file's by this much (seconds) ...
DURATION_TOLERANCE = 0.01  # ... or by this fraction of the duration, whichever is larger
DEEP_CHECK_THREADS = min(8, os.cpu_count() or 1)  # files decoded at once by a deep check
MAX_PROBLEMS_SHOWN = 20  # in an error message; the full list stays on the exception


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line in the manifest (row number when validating rows in memory)
    id: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (id {self.id})" if self.id else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ManifestCheck:
    rows: list[dict]  # the valid rows, audio paths absolute
    problems: list[Problem]  # one per problem found; a row may have several
    lines: int  # non-blank lines read

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class FilterOptions:
    min_duration: float = 0.0  # seconds; shorter utterances are dropped
    max_duration: float | None = None  # seconds; longer utterances are dropped
    max_chars_per_second: float | None = None  # drops rows whose text is too long for the audio


def make_row(**fields) -> dict:
    """A manifest row with the standard fields first (accent and speaker default to None)."""
    unknown = set(fields) - set(FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        raise ManifestError(f"unknown manifest field(s) {sorted(unknown)}; put extras in 'custom'")
    row = {name: fields.get(name) for name in FIELDS}
    row.update({name: fields[name] for name in OPTIONAL_FIELDS if fields.get(name) is not None})
    return row


def check_row(row: dict, base_dir: Path, check_audio: bool = True) -> list[str]:
    """Every problem with one row, as messages (empty list when the row is valid)."""
    problems = [f"missing field '{name}'" for name in FIELDS if name not in row]
    problems += [f"unknown field '{name}' (put extras in 'custom')"
                 for name in row if name not in FIELDS and name not in OPTIONAL_FIELDS]
    if problems:  # the checks below need every field
        return problems
    if not isinstance(row["id"], str) or not row["id"]:
        problems.append(f"id must be a non-empty string, got {row['id']!r}")
    if not isinstance(row["text"], str) or not row["text"].strip():
        problems.append("empty text")
    duration, rate = row["duration"], row["sampling_rate"]
    if not _is_number(duration) or not (duration > 0 and math.isfinite(duration)):
        problems.append(f"duration must be a positive, finite number of seconds, got {duration!r}")
    if not isinstance(rate, int) or isinstance(rate, bool) or not 0 < rate <= MAX_SAMPLE_RATE:
        problems.append(f"sampling_rate must be a whole number of Hz in 1..{MAX_SAMPLE_RATE}, got {rate!r}")
    offset = row.get("offset", 0.0)
    if not _is_number(offset) or not (offset >= 0 and math.isfinite(offset)):
        problems.append(f"offset must be a non-negative, finite number of seconds, got {offset!r}")
    if "custom" in row and not isinstance(row["custom"], dict):
        problems.append("'custom' must be an object")
    if not isinstance(row["audio_filepath"], str) or not row["audio_filepath"]:
        problems.append(f"audio_filepath must be a non-empty string, got {row['audio_filepath']!r}")
    elif check_audio:
        audio = resolve_audio(row["audio_filepath"], base_dir)
        if not audio.is_file():
            problems.append(f"audio file not found: {audio}")
        elif audio.stat().st_size == 0:
            problems.append(f"audio file is empty (0 bytes): {audio}")
    return problems


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def resolve_audio(audio_filepath: str, base_dir: Path) -> Path:
    """Absolute path of a row's audio; relative paths are relative to the manifest's folder."""
    path = Path(audio_filepath)
    return path if path.is_absolute() else (base_dir / path).resolve()


def check_rows(rows: Iterable[dict], base_dir: Path, check_audio: bool = True,
               deep: bool = False) -> ManifestCheck:
    """Validate rows in memory (row numbers count from 1); rows are returned as given."""
    rows = list(rows)
    return _check_numbered(list(enumerate(rows, start=1)), base_dir, check_audio, lines=len(rows),
                           deep=deep)


def _check_numbered(numbered: list[tuple[int, dict]], base_dir: Path, check_audio: bool,
                    lines: int, deep: bool = False) -> ManifestCheck:
    valid, problems, seen = [], [], {}
    for number, row in numbered:
        messages = check_row(row, base_dir, check_audio)
        row_id = row.get("id") if isinstance(row.get("id"), str) else None
        if row_id in seen:
            messages.append(f"duplicate id (first seen on line {seen[row_id]})")
        elif row_id:
            seen[row_id] = number
        problems += [Problem(number, row_id, m) for m in messages]
        if not messages:
            valid.append((number, row))
    if deep and valid:
        bad = deep_problems([(n, row, resolve_audio(row["audio_filepath"], base_dir)) for n, row in valid])
        problems += bad
        failed = {p.line for p in bad}
        valid = [(n, row) for n, row in valid if n not in failed]
    problems.sort(key=lambda p: p.line)
    return ManifestCheck(rows=[row for _, row in valid], problems=problems, lines=lines)


def deep_problems(rows: list[tuple[int, dict, Path]]) -> list[Problem]:
    """Problems of decoding each (line, row, audio path)'s file once (see the module docstring)."""
    paths = list(dict.fromkeys(path for _, _, path in rows))
    start = time.perf_counter()
    if len(paths) > 100:
        log.info("decoding %d audio files once to check them (data.audio_check=deep / --deep)", len(paths))
    with ThreadPoolExecutor(DEEP_CHECK_THREADS, thread_name_prefix="audio-check") as pool:
        scans = dict(zip(paths, pool.map(_scan, paths)))
    if len(paths) > 100:
        log.info("checked %d audio files in %.1f s", len(paths), time.perf_counter() - start)
    problems = []
    for number, row, path in rows:
        scan = scans[path]
        message = scan if isinstance(scan, str) else _duration_problem(row, scan.duration)
        if message:
            problems.append(Problem(number, row.get("id"), message))
    return problems


def _scan(path: Path):
    try:
        return scan_audio(path)
    except AudioError as err:
        return str(err)


def _duration_problem(row: dict, file_seconds: float) -> str | None:
    duration, offset = float(row["duration"]), float(row.get("offset") or 0.0)
    tolerance = max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * duration)
    if "offset" in row and row["offset"] is not None:
        if offset + duration > file_seconds + tolerance:
            return (f"offset {offset:g} s + duration {duration:g} s runs past the end of the audio "
                    f"({file_seconds:.2f} s)")
        return None
    if abs(file_seconds - duration) > tolerance:
        return (f"duration {duration:g} s, but the audio file holds {file_seconds:.2f} s (fix the "
                "manifest: batching and memory use follow its duration)")
    return None


def parse_lines(path: Path) -> tuple[list[tuple[int, dict]], list[Problem]]:
    """(line number, object) for every non-blank line, and problems for lines that aren't JSON
    objects or aren't UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ManifestError(f"{path}: cannot read manifest ({err.strerror})") from err
    parsed, problems = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as err:
            problems.append(Problem(number, None, f"bad UTF-8 at byte {err.start}"))
            continue
        except json.JSONDecodeError as err:
            problems.append(Problem(number, None, f"not valid JSON ({err.msg})"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(number, None, "not a JSON object"))
            continue
        parsed.append((number, obj))
    return parsed, problems


def check_manifest(path: str | Path, check_audio: bool = True, deep: bool = False) -> ManifestCheck:
    """Read and validate a manifest (deep: decode every audio file once, see the module
    docstring); returns valid rows (audio paths absolute) and all problems."""
    path = Path(path)
    parsed, unparsable = parse_lines(path)
    check = _check_numbered(parsed, path.parent, check_audio, lines=len(parsed) + len(unparsable),
                            deep=deep and check_audio)
    rows = [{**row, "audio_filepath": str(resolve_audio(row["audio_filepath"], path.parent))}
            for row in check.rows]
    problems = sorted(unparsable + check.problems, key=lambda p: p.line)
    return ManifestCheck(rows=rows, problems=problems, lines=check.lines)


def format_problems(path: Path | str, problems: list[Problem]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{path}: {len(problems)} problem(s):\n{shown}" + (f"\n  ... and {more} more" if more > 0 else "")


def read_manifest(path: str | Path, skip_invalid: bool = False, check_audio: bool = True,
                  deep: bool = False) -> list[dict]:
    """Rows of a valid manifest, audio paths absolute (deep: every audio file decoded once, see the
    module docstring). Any problem raises ManifestError listing them all, unless skip_invalid, in
    which case bad rows are skipped and reported as a warning."""
    check = check_manifest(path, check_audio, deep)
    if check.problems and not skip_invalid:
        raise ManifestError(format_problems(path, check.problems))
    if check.problems:
        skipped = len({p.line for p in check.problems})
        log.warning("skipped %d invalid row(s) of %s", skipped, format_problems(path, check.problems))
    return check.rows


def write_manifest(path: str | Path, rows: Iterable[dict], check_audio: bool = True) -> Path:
    """Validate and atomically write rows; audio under the manifest's folder is stored relative."""
    path = Path(path).absolute()
    rows = list(rows)
    check = check_rows(rows, path.parent, check_audio)
    if check.problems:
        raise ManifestError(format_problems(path, check.problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(_relativize(row, path.parent), ensure_ascii=False) for row in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path


def _relativize(row: dict, base_dir: Path) -> dict:
    audio = Path(row["audio_filepath"])
    if audio.is_absolute():
        try:
            audio = Path(os.path.relpath(audio, base_dir)) if audio.is_relative_to(base_dir) else audio
        except ValueError:  # different drive (Windows)
            pass
    return {**row, "audio_filepath": audio.as_posix()}


def filter_rows(rows: Iterable[dict], options: FilterOptions) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Split rows into (kept, dropped) by duration and characters per second; every drop has a
    reason so it can be reported."""
    kept, dropped = [], []
    for row in rows:
        reason = _filter_reason(row, options)
        if reason:
            dropped.append((row, reason))
        else:
            kept.append(row)
    return kept, dropped


def _filter_reason(row: dict, options: FilterOptions) -> str | None:
    duration = row["duration"]
    if duration < options.min_duration:
        return f"duration {duration:.2f}s < min {options.min_duration}s"
    if options.max_duration is not None and duration > options.max_duration:
        return f"duration {duration:.2f}s > max {options.max_duration}s"
    if options.max_chars_per_second is not None:
        rate = len(row["text"]) / duration
        if rate > options.max_chars_per_second:
            return f"{rate:.1f} chars/s > max {options.max_chars_per_second}"
    return None
