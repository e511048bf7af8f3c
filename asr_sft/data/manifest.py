"""JSONL manifests: the contract between pipeline stages.

One JSON object per line (NeMo/lhotse compatible where they agree):
  id, audio_filepath, duration (s), text, speaker, accent, corpus, split, sampling_rate (Hz)
plus optional offset (s), language, gender, custom (dict).

Audio paths are stored relative to the manifest's folder when the audio lives under it, absolute
otherwise; `read_manifest` hands them back absolute. A manifest is validated when written and when
read; every problem is reported with its line number, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from asr_sft.atomic import write_text_atomic
from asr_sft.errors import ManifestError

log = logging.getLogger(__name__)

FIELDS = ("id", "audio_filepath", "duration", "text", "speaker", "accent", "corpus", "split",
          "sampling_rate")
OPTIONAL_FIELDS = ("offset", "language", "gender", "custom")
KNOWN_SAMPLE_RATES = frozenset({8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000})  # Hz
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
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not duration > 0:
        problems.append(f"duration must be a positive number of seconds, got {duration!r}")
    if not isinstance(rate, int) or rate not in KNOWN_SAMPLE_RATES:
        problems.append(f"unknown sampling_rate {rate!r} (known: {sorted(KNOWN_SAMPLE_RATES)})")
    offset = row.get("offset", 0.0)
    if not isinstance(offset, (int, float)) or offset < 0:
        problems.append(f"offset must be a non-negative number of seconds, got {offset!r}")
    if "custom" in row and not isinstance(row["custom"], dict):
        problems.append("'custom' must be an object")
    if not isinstance(row["audio_filepath"], str) or not row["audio_filepath"]:
        problems.append(f"audio_filepath must be a non-empty string, got {row['audio_filepath']!r}")
    elif check_audio and not resolve_audio(row["audio_filepath"], base_dir).is_file():
        problems.append(f"audio file not found: {resolve_audio(row['audio_filepath'], base_dir)}")
    return problems


def resolve_audio(audio_filepath: str, base_dir: Path) -> Path:
    """Absolute path of a row's audio; relative paths are relative to the manifest's folder."""
    path = Path(audio_filepath)
    return path if path.is_absolute() else (base_dir / path).resolve()


def check_rows(rows: Iterable[dict], base_dir: Path, check_audio: bool = True) -> ManifestCheck:
    """Validate rows in memory (row numbers count from 1); rows are returned as given."""
    rows = list(rows)
    return _check_numbered(list(enumerate(rows, start=1)), base_dir, check_audio, lines=len(rows))


def _check_numbered(numbered: list[tuple[int, dict]], base_dir: Path, check_audio: bool,
                    lines: int) -> ManifestCheck:
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
            valid.append(row)
    return ManifestCheck(rows=valid, problems=problems, lines=lines)


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


def check_manifest(path: str | Path, check_audio: bool = True) -> ManifestCheck:
    """Read and validate a manifest; returns valid rows (audio paths absolute) and all problems."""
    path = Path(path)
    parsed, unparsable = parse_lines(path)
    check = _check_numbered(parsed, path.parent, check_audio, lines=len(parsed) + len(unparsable))
    rows = [{**row, "audio_filepath": str(resolve_audio(row["audio_filepath"], path.parent))}
            for row in check.rows]
    problems = sorted(unparsable + check.problems, key=lambda p: p.line)
    return ManifestCheck(rows=rows, problems=problems, lines=check.lines)


def format_problems(path: Path | str, problems: list[Problem]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{path}: {len(problems)} problem(s):\n{shown}" + (f"\n  ... and {more} more" if more > 0 else "")


def read_manifest(path: str | Path, skip_invalid: bool = False, check_audio: bool = True) -> list[dict]:
    """Rows of a valid manifest, audio paths absolute. Any problem raises ManifestError listing
    them all, unless skip_invalid, in which case bad rows are skipped and reported as a warning."""
    check = check_manifest(path, check_audio)
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
