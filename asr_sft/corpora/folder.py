"""Bring your own data: an audio folder plus a TSV/CSV table (with a header row) -> one manifest.

    path<TAB>text<TAB>speaker            (.tsv: tab-separated, no quoting: quotes are text)
    clips/a.wav<TAB>hello world<TAB>s1   (.csv: comma-separated, "quoted" fields allowed)

Required columns: path (relative to the audio folder, or absolute) and text. Optional: id, speaker,
accent, gender, language, split. Any other column is kept, as text, in the row's `custom`. Every bad
row is reported with the table's file name and line number; with skip_invalid=True bad rows are
skipped and listed in the returned ImportResult instead.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from asr_sft.corpora.prepared import collect_rows
from asr_sft.data.audio import audio_info
from asr_sft.errors import AudioError, ManifestError
from asr_sft.data.manifest import MAX_PROBLEMS_SHOWN, check_row, make_row, write_manifest

REQUIRED_COLUMNS = ("path", "text")
OPTIONAL_COLUMNS = ("id", "speaker", "accent", "gender", "language", "split")
# .tsv files are read without quote handling: transcripts often start with a quote character.
_DIALECTS = {".tsv": dict(delimiter="\t", quoting=csv.QUOTE_NONE), ".csv": dict(delimiter=",")}


@dataclass(frozen=True)
class ImportResult:
    manifest: Path  # the manifest written
    rows: int  # utterances written
    seconds: float  # total audio duration written
    skipped: tuple[str, ...]  # "<table>:<line>: <reason>" for every row left out (skip_invalid)


def import_table(
    table: str | Path,
    audio_root: str | Path,
    out_manifest: str | Path,
    corpus: str = "custom",
    skip_invalid: bool = False,
) -> ImportResult:
    """Write a manifest for the rows of `table`, audio paths relative to `audio_root`.

    Raises ManifestError naming the table and line of every bad row (missing or unreadable audio,
    empty text, wrong field count, duplicate id), unless skip_invalid, which skips and reports them.
    """
    table, audio_root, out_manifest = Path(table), Path(audio_root), Path(out_manifest)
    if not audio_root.is_dir():
        raise ManifestError(f"{audio_root}: audio folder not found")
    problems: list[str] = []
    rows = collect_rows(read_table(table),
                        lambda record: _build_row(record, audio_root, corpus, out_manifest.absolute().parent),
                        str(table), "id", problems)
    if problems and not skip_invalid:
        raise ManifestError(_format(table, problems))
    if not rows:
        raise ManifestError(f"{table}: no usable rows" + (f"\n{_format(table, problems)}" if problems else ""))
    path = write_manifest(out_manifest, rows)
    return ImportResult(manifest=path, rows=len(rows), seconds=sum(r["duration"] for r in rows),
                        skipped=tuple(problems))


def read_table(table: str | Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) for every non-blank record; columns named by the header
    (lower-cased, stripped). A record with the wrong number of fields maps to {"": error}."""
    table = Path(table)
    dialect = _DIALECTS.get(table.suffix.lower())
    if dialect is None:
        raise ManifestError(f"{table}: unknown table type {table.suffix!r} (use .tsv or .csv)")
    try:
        with open(table, newline="", encoding="utf-8") as f:
            return _parse_records(table, csv.reader(f, **dialect))
    except UnicodeDecodeError as err:
        raise ManifestError(f"{table}: not UTF-8 (byte {err.start})") from err
    except csv.Error as err:
        raise ManifestError(f"{table}: malformed table ({err})") from err
    except OSError as err:
        raise ManifestError(f"{table}: cannot read table ({err.strerror})") from err


def _parse_records(table: Path, reader) -> list[tuple[int, dict[str, str]]]:
    header = next(reader, None)
    columns = [name.strip().lstrip("\ufeff").lower() for name in header or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ManifestError(f"{table}:1: header {columns} lacks required column(s) {missing}")
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated or "" in columns:
        raise ManifestError(f"{table}:1: header has empty or repeated column names {duplicated}")
    records, start = [], reader.line_num + 1
    for fields in reader:
        if any(field.strip() for field in fields):
            if len(fields) != len(columns):
                records.append((start, {"": f"expected {len(columns)} fields, got {len(fields)}"}))
            else:
                records.append((start, dict(zip(columns, fields))))
        start = reader.line_num + 1  # a quoted CSV field may span lines: report where a row starts
    return records


def _build_row(record: dict[str, str], audio_root: Path, corpus: str,
               base_dir: Path) -> tuple[dict | None, str | None]:
    """(manifest row, None) or (None, the reason this record is unusable)."""
    if "" in record:
        return None, record[""]
    text, rel = record["text"].strip(), record["path"].strip()
    if not rel:
        return None, "empty path"
    if not text:
        return None, f"empty text for {rel}"
    audio = audio_root / rel
    try:
        info = audio_info(audio)
    except AudioError as err:
        return None, str(err)
    extra = {k: v for k, v in record.items() if k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
    optional = {k: (record.get(k) or "").strip() or None for k in OPTIONAL_COLUMNS}
    row = make_row(
        id=optional.pop("id") or Path(rel).with_suffix("").as_posix(),
        audio_filepath=str(audio.absolute()),
        duration=info.duration,
        text=text,
        corpus=corpus,
        sampling_rate=info.sample_rate,
        custom=extra or None,
        **optional,
    )
    problems = check_row(row, base_dir)  # e.g. a sample rate the pipeline does not know
    return (row, None) if not problems else (None, f"{rel}: " + "; ".join(problems))


def _format(table: Path, problems: list[str]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{table}: {len(problems)} bad row(s):\n{shown}" + (f"\n  ... and {more} more" if more > 0 else "")
