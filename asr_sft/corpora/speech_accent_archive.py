"""The Speech Accent Archive (George Mason University, accent.gmu.edu): native and non-native speakers
of English, each reading the same elicitation paragraph ("Please call Stella...") once.

Layout (the Kaggle packaging, rtatman/speech-accent-archive):

    speakers_all.csv      age, age_onset, birthplace, filename, native_language, sex, speakerid,
                          country, file_missing? (plus empty trailing columns)
    recordings/<filename>.mp3   (also accepted: recordings/recordings/, and .wav/.flac files)
    reading-passage.txt   the paragraph (the built-in PARAGRAPH is used when the file is absent)

Rows: id = filename (e.g. "afrikaans1"), speaker = speakerid, accent = native_language (also
custom["l1"]), gender = sex (the archive's "famale" typo is read as female), custom: country,
birthplace, age, age_onset. Rows flagged file_missing? = TRUE, or whose file is absent, are skipped
and reported. One utterance per speaker and one text for all: `asr-sft split` needs
text_overlap="allow" here (there is no other text to test on).
"""

from __future__ import annotations

import csv
from pathlib import Path

from asr_sft.corpora.prepared import AudioProbe, PreparedCorpus, clean_text, collect_rows, usable, write_prepared
from asr_sft.data.manifest import make_row
from asr_sft.errors import ManifestError

CORPUS = "saa"
METADATA_FILE = "speakers_all.csv"
PASSAGE_FILE = "reading-passage.txt"
AUDIO_FOLDERS = ("recordings", "recordings/recordings")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac")
REQUIRED_COLUMNS = ("filename", "native_language")
PARAGRAPH = ("Please call Stella. Ask her to bring these things with her from the store: Six spoons of "
             "fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob. "
             "We also need a small plastic snake and a big toy frog for the kids. She can scoop these "
             "things into three red bags, and we will go meet her Wednesday at the train station.")
_SEXES = {"male": "male", "female": "female", "famale": "female"}
_TRUE = {"true", "1", "yes"}


def prepare_speech_accent_archive(root: str | Path, out_dir: str | Path) -> PreparedCorpus:
    """Write <out_dir>/saa.jsonl from `root` (speakers_all.csv + recordings/)."""
    root = Path(root)
    metadata = root / METADATA_FILE
    if not metadata.is_file():
        raise ManifestError(f"{root}: no {METADATA_FILE}; give the Speech Accent Archive folder")
    text, notes = _passage(root)
    probe, skipped = AudioProbe(), []
    base_dir = Path(out_dir).absolute()
    rows = collect_rows(_read_metadata(metadata), lambda record: _build_row(record, root, text, probe, base_dir),
                        str(metadata), "filename", skipped)
    return write_prepared(CORPUS, {None: rows}, out_dir, skipped, notes)


def _passage(root: Path) -> tuple[str, list[str]]:
    path = root / PASSAGE_FILE
    if not path.is_file():
        return PARAGRAPH, [f"{path}: not found; using the built-in elicitation paragraph"]
    text = clean_text(path.read_text(encoding="utf-8-sig"))
    if not text:
        raise ManifestError(f"{path}: empty reading passage")
    return text, []


def _read_metadata(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [c.strip() for c in next(reader, [])]
            lacking = [c for c in REQUIRED_COLUMNS if c not in header]
            if lacking:
                raise ManifestError(f"{path}:1: header lacks column(s) {lacking} (has {header})")
            records, start = [], reader.line_num + 1
            for fields in reader:
                if any(f.strip() for f in fields):
                    # trailing empty columns (the Kaggle file has three) are ignored
                    records.append((start, {k: v.strip() for k, v in zip(header, fields) if k}))
                start = reader.line_num + 1
            return records
    except (UnicodeDecodeError, csv.Error) as err:
        raise ManifestError(f"{path}: cannot read ({err})") from err


def _find_audio(root: Path, filename: str) -> Path | None:
    for folder in AUDIO_FOLDERS:
        for suffix in AUDIO_SUFFIXES:
            if (root / folder / f"{filename}{suffix}").is_file():
                return root / folder / f"{filename}{suffix}"
    return None


def _build_row(record: dict[str, str], root: Path, text: str, probe: AudioProbe,
               base_dir: Path) -> tuple[dict | None, str | None]:
    filename, l1 = record.get("filename", ""), record.get("native_language", "")
    if not filename:
        return None, "empty filename"
    if record.get("file_missing?", "").lower() in _TRUE:
        return None, f"{filename}: marked file_missing? in {METADATA_FILE}"
    audio = _find_audio(root, filename)
    if audio is None:
        return None, f"{filename}: no {'/'.join(AUDIO_SUFFIXES)} file under {root}/{' or '.join(AUDIO_FOLDERS)}"
    info = probe(audio)
    if isinstance(info, str):
        return None, info
    custom = {k: record[k] for k in ("country", "birthplace", "age", "age_onset") if record.get(k)}
    if l1:
        custom["l1"] = l1
    sex = record.get("sex", "").lower()
    row = make_row(
        id=filename, audio_filepath=str(audio.absolute()), duration=info.duration, text=text,
        speaker=record.get("speakerid") or filename, accent=l1 or None, corpus=CORPUS, split=None,
        sampling_rate=info.sample_rate, language="en", gender=_SEXES.get(sex, sex or None),
        custom=custom or None,
    )
    problem = usable(row, base_dir)
    return (row, None) if problem is None else (None, f"{filename}: {problem}")
