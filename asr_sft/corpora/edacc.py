"""EdAcc, the Edinburgh International Accents of English Corpus (Sanabria et al., 2023): dyadic
video-call conversations, ~40 h, speakers with ~40 self-described accents. Dev and test sets only.

Layout of the extracted release (edacc_v1.0/):

    data/<recording>.wav            one conversation per file (32 kHz mono)
    dev/stm, test/stm               one segment per line (also segments, text, utt2spk, conv.list)
    linguistic_background.csv       one row per speaker: PARTICIPANT_ID (= the stm speaker) and the
                                    survey answers, e.g. "How would you describe your accent in
                                    English? (e.g. Italian, Glaswegian)", "What is your gender?"

An stm line:  <recording> <channel> <speaker> <start s> <end s> <label> <transcript...>
e.g.          EDACC-C06 1 EDACC-C06-A 0.00 5.27 <male,l1> C ELEVEN DASH P ONE
The label holds the speaker's gender and whether English is their first (l1) or second (l2)
language. Lines starting with ";;" are comments; segments whose transcript is
IGNORE_TIME_SEGMENT_IN_SCORING are not scored by EdAcc's own evaluation and are left out (reported).

Rows are slices of the conversation file (offset + duration, no audio copied): id =
<speaker>-<start cs>-<end cs>, accent = the speaker's self-described accent, custom["english"] =
l1/l2 from the label, custom["l1"] = the first language where the background file has a column
for it (a header starting "What is your first language", "first language", "native language",
"mother tongue" or "L1": that column's exact name is unverified).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from asr_sft.corpora.prepared import AudioProbe, PreparedCorpus, clean_text, collect_rows, usable, write_prepared
from asr_sft.data.manifest import make_row
from asr_sft.errors import ManifestError

CORPUS = "edacc"
SPLITS = ("dev", "test")
BACKGROUND_FILE = "linguistic_background.csv"
PARTICIPANT_COLUMN = "PARTICIPANT_ID"
ACCENT_COLUMN_PREFIX = "how would you describe your accent"
GENDER_COLUMN_PREFIX = "what is your gender"
# The L1 column's exact name is not in the sources we could check: these are header starts tried.
L1_COLUMN_STARTS = ("what is your first language", "what's your first language",
                    "what\u2019s your first language", "first language", "native language",
                    "mother tongue", "l1")
NOT_SCORED = "IGNORE_TIME_SEGMENT_IN_SCORING"
END_TOLERANCE = 0.05  # seconds a segment may run past its file's end (it is clipped to the end)
_LABEL = re.compile(r"^<(?P<gender>[^,<>]*),(?P<english>[^,<>]*)>$")


def prepare_edacc(root: str | Path, out_dir: str | Path, splits: tuple[str, ...] = SPLITS) -> PreparedCorpus:
    """Write <out_dir>/edacc_dev.jsonl and edacc_test.jsonl (or only `splits`) from `root`, the
    edacc_v1.0 folder (or a folder holding it)."""
    root = Path(root)
    if (root / "edacc_v1.0").is_dir():
        root = root / "edacc_v1.0"
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ManifestError(f"unknown EdAcc split(s) {unknown} (choose from {', '.join(SPLITS)})")
    for need in ["data", *(f"{s}/stm" for s in splits)]:
        if not (root / need).exists():
            raise ManifestError(f"{root}: no {need}; give the extracted edacc_v1.0 folder")
    background, notes = read_background(root / BACKGROUND_FILE)
    probe, skipped, rows_by_split = AudioProbe(), [], {}
    base_dir = Path(out_dir).absolute()
    for split in splits:
        rows_by_split[split] = collect_rows(
            read_stm(root / split / "stm"), lambda line: _build_row(line, root, split, background, probe, base_dir),
            str(root / split / "stm"), "segment", skipped)
    missing = sorted({r["speaker"] for rows in rows_by_split.values() for r in rows} - set(background))
    if background and missing:
        notes.append(f"{len(missing)} speaker(s) not in {BACKGROUND_FILE} (accent None): {', '.join(missing[:10])}")
    return write_prepared(CORPUS, rows_by_split, out_dir, skipped, notes)


def read_stm(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) for each non-blank, non-comment line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read stm ({err})") from err
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.startswith(";;")]


def read_background(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """{participant: {"accent", "gender", "l1"}} from the linguistic background CSV (only the
    answers present), and notes about what it lacks. A missing file gives ({}, [a note])."""
    if not path.is_file():
        return {}, [f"{path}: not found; rows have no accent"]
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            records = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ManifestError(f"{path}: cannot read ({err})") from err
    columns = list(records[0]) if records else []
    if PARTICIPANT_COLUMN not in columns:
        raise ManifestError(f"{path}:1: no {PARTICIPANT_COLUMN} column (has {columns[:5]}...)")
    wanted = {"accent": _column(columns, lambda c: c.startswith(ACCENT_COLUMN_PREFIX)),
              "gender": _column(columns, lambda c: c.startswith(GENDER_COLUMN_PREFIX)),
              "l1": _column(columns, lambda c: c.startswith(L1_COLUMN_STARTS))}
    notes = [f"{path}: no {key} column" for key, column in wanted.items() if column is None]
    background = {}
    for record in records:
        participant = (record.get(PARTICIPANT_COLUMN) or "").strip()
        if participant:
            background[participant] = {key: (record.get(column) or "").strip()
                                       for key, column in wanted.items()
                                       if column and (record.get(column) or "").strip()}
    return background, notes


def _column(columns: list[str], matches) -> str | None:
    return next((c for c in columns if c and matches(c.strip().lower())), None)


def _build_row(fields: list[str], root: Path, split: str, background: dict, probe: AudioProbe,
               base_dir: Path) -> tuple[dict | None, str | None]:
    if len(fields) < 6:
        return None, (f"expected '<recording> <channel> <speaker> <start> <end> <label> text', "
                      f"got {len(fields)} field(s)")
    recording, channel, speaker, start, end, label = fields[:6]
    text = clean_text(" ".join(fields[6:]))
    try:
        start, end = float(start), float(end)
    except ValueError:
        return None, f"start/end {fields[3]!r} {fields[4]!r} are not numbers"
    if not end > start >= 0:
        return None, f"segment {start}-{end}s is empty or negative"
    if text == NOT_SCORED:
        return None, f"{NOT_SCORED} segment (not scored by EdAcc)"
    if not text:
        return None, "empty transcript"
    audio = root / "data" / f"{recording}.wav"
    info = probe(audio)
    if isinstance(info, str):
        return None, info
    if end > info.duration + END_TOLERANCE:
        return None, f"segment {start:.2f}-{end:.2f}s runs past the end of {audio} ({info.duration:.2f}s)"
    end = min(end, info.duration)
    meta = background.get(speaker, {})
    match = _LABEL.match(label)
    custom = {"recording": recording, "channel": channel}
    if match and match["english"]:
        custom["english"] = match["english"]
    elif not match:
        custom["label"] = label
    if meta.get("l1"):
        custom["l1"] = meta["l1"]
    gender = (match["gender"] if match and match["gender"] else meta.get("gender", "").lower()) or None
    row = make_row(
        id=f"{speaker}-{round(start * 100):07d}-{round(end * 100):07d}", audio_filepath=str(audio.absolute()),
        offset=start, duration=round(end - start, 6), text=text, speaker=speaker,
        accent=meta.get("accent"), corpus=CORPUS, split=split, sampling_rate=info.sample_rate,
        language="en", gender=gender, custom=custom,
    )
    problem = usable(row, base_dir)
    return (row, None) if problem is None else (None, problem)
