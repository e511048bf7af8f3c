"""What the accented-corpus importers (Common Voice, L2-ARCTIC, EdAcc, Speech Accent Archive) share:
their result, the probing of audio headers, and the writing of one manifest per split.

House rule: nothing is dropped silently. A row an importer cannot use (missing or unreadable audio,
empty text, a segment outside its file...) is left out and listed, with the file and line it came
from, in PreparedCorpus.skipped and in <out_dir>/<corpus>_skipped.txt beside the manifests.

Accent metadata: `accent` is the label a split or a score groups by (the corpus's own accent or L1
word); the speaker's first language and dialect, where the corpus has them, are in the row's
`custom` dict as "l1" and "dialect" (scoring and `asr-sft split --group-by` read custom keys too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr_sft.atomic import write_text_atomic
from asr_sft.data.audio import AudioInfo, audio_info
from asr_sft.data.manifest import MAX_PROBLEMS_SHOWN, check_row, write_manifest
from asr_sft.errors import AudioError, ManifestError

SKIPPED_SUFFIX = "_skipped.txt"


@dataclass(frozen=True)
class PreparedCorpus:
    corpus: str  # corpus name stored in every row
    manifests: dict[str, Path]  # split name ("all" when the corpus has none) -> manifest written
    utterances: dict[str, int]  # split -> rows written
    seconds: dict[str, float]  # split -> audio seconds written
    skipped: tuple[str, ...]  # "<file>:<line>: reason" for every row left out
    skipped_file: Path | None  # where `skipped` is written in full (None when nothing was skipped)
    notes: tuple[str, ...] = ()  # facts worth printing that are not rows (e.g. a folder ignored)

    def to_dict(self) -> dict:
        return {"corpus": self.corpus, "manifests": {k: str(v) for k, v in self.manifests.items()},
                "utterances": dict(self.utterances), "seconds": dict(self.seconds),
                "skipped": list(self.skipped),
                "skipped_file": None if self.skipped_file is None else str(self.skipped_file),
                "notes": list(self.notes)}


class AudioProbe:
    """audio_info with a cache (EdAcc segments share one recording) and a reason when it fails."""

    def __init__(self) -> None:
        self._seen: dict[Path, AudioInfo | str] = {}

    def __call__(self, path: Path) -> AudioInfo | str:
        if path not in self._seen:
            try:
                self._seen[path] = audio_info(path)
            except AudioError as err:
                self._seen[path] = str(err)
        return self._seen[path]


def usable(row: dict, base_dir: Path) -> str | None:
    """None when `row` passes manifest validation, else the problems (e.g. an unknown sample rate)."""
    problems = check_row(row, base_dir, check_audio=False)  # the importer has just probed the file
    return "; ".join(problems) or None


def collect_rows(records, build, where: str, what: str, skipped: list[str]) -> list[dict]:
    """The rows `build(record) -> (row or None, reason)` makes of (line number, record) pairs. A row
    it refuses, or whose id an earlier line already had, is left out and reported in `skipped` as
    "<where>:<line>: <reason>": nothing is dropped without a line saying so."""
    rows, seen = [], {}
    for number, record in records:
        row, reason = build(record)
        if row is not None and row["id"] in seen:
            row, reason = None, f"{what} {row['id']!r} repeated (first on line {seen[row['id']]})"
        if row is None:
            skipped.append(f"{where}:{number}: {reason}")
            continue
        seen[row["id"]] = number
        rows.append(row)
    return rows


def write_prepared(corpus: str, rows_by_split: dict[str | None, list[dict]], out_dir: str | Path,
                   skipped: list[str], notes: list[str] = ()) -> PreparedCorpus:
    """Write <out_dir>/<corpus>_<split>.jsonl per split (<corpus>.jsonl for rows without a split) and
    <corpus>_skipped.txt when rows were left out. Splits without rows are not written (a note says
    so); no rows at all raises ManifestError listing what was skipped."""
    out_dir = Path(out_dir)
    skipped_path = out_dir / f"{corpus}{SKIPPED_SUFFIX}"
    if not any(rows_by_split.values()):
        raise ManifestError(f"{corpus}: no usable rows" + (f"\n{format_skipped(skipped)}" if skipped else ""))
    notes = list(notes)
    manifests, counts, seconds = {}, {}, {}
    for split, rows in rows_by_split.items():
        name = split or "all"
        if not rows:
            notes.append(f"split {name!r}: no usable rows, no manifest written")
            continue
        stem = f"{corpus}_{split}" if split else corpus
        manifests[name] = write_manifest(out_dir / f"{stem}.jsonl", rows)
        counts[name], seconds[name] = len(rows), sum(r["duration"] for r in rows)
    if skipped:
        write_text_atomic(skipped_path, "".join(f"{line}\n" for line in skipped))
    else:
        skipped_path.unlink(missing_ok=True)  # a rerun that skips nothing leaves no stale list
    return PreparedCorpus(corpus, manifests, counts, seconds, tuple(skipped),
                          skipped_path if skipped else None, tuple(notes))


def format_skipped(skipped: list[str] | tuple[str, ...]) -> str:
    shown = "\n".join(f"  {s}" for s in skipped[:MAX_PROBLEMS_SHOWN])
    more = len(skipped) - MAX_PROBLEMS_SHOWN
    return f"{len(skipped)} row(s) skipped:\n{shown}" + (f"\n  ... and {more} more" if more > 0 else "")


def clean_text(text: str) -> str:
    """Whitespace collapsed; nothing else changes (normalisation happens at scoring time)."""
    return " ".join(text.split())
