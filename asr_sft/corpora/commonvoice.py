"""Mozilla Common Voice (a downloaded release; users fetch it themselves after accepting its terms).

Layout of one locale folder, e.g. cv-corpus-17.0-2024-03-15/en/:

    clips/common_voice_en_<n>.mp3        48 kHz (older releases) or 32 kHz mono MP3
    train.tsv dev.tsv test.tsv           speaker-disjoint official splits
    validated.tsv other.tsv invalidated.tsv ...

Every TSV has a header row: client_id, path, sentence, up_votes, down_votes, age, gender, accents
(releases before ~8.0: `accent`), locale, segment, and in newer releases sentence_id, variant,
sentence_domain. Fields are tab-separated with no quoting (sentences contain quote characters).

Rows: id = the clip's file stem, speaker = client_id, accent = the `accents` text as given (several
self-descriptions are joined with "|"), custom["dialect"] = `variant` where present, gender mapped
to male/female where the release uses male_masculine/female_feminine, language = locale. Decoding
MP3 needs libsndfile >= 1.1 (soundfile's bundled build has it).
"""

from __future__ import annotations

import csv
from pathlib import Path

from asr_sft.corpora.prepared import AudioProbe, PreparedCorpus, clean_text, collect_rows, usable, write_prepared
from asr_sft.data.manifest import make_row
from asr_sft.errors import ManifestError

CORPUS = "commonvoice"
DEFAULT_TSVS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
ACCENT_COLUMNS = ("accents", "accent")  # newer name first
_GENDERS = {"male_masculine": "male", "female_feminine": "female", "male": "male", "female": "female"}
_CUSTOM_COLUMNS = ("age", "up_votes", "down_votes", "segment", "sentence_id", "sentence_domain")


def prepare_commonvoice(root: str | Path, out_dir: str | Path, tsvs: tuple[str, ...] = DEFAULT_TSVS,
                        limit: int | None = None) -> PreparedCorpus:
    """Write <out_dir>/commonvoice_<tsv>.jsonl for each named TSV of the locale folder `root`.

    limit: only the first `limit` rows of each TSV (quick checks). Rows with a missing or unreadable
    clip or an empty sentence are skipped and reported."""
    root = Path(root)
    if not (root / "clips").is_dir():
        raise ManifestError(f"{root}: no clips/ folder; give the Common Voice locale folder (e.g. .../en)")
    missing = [name for name in tsvs if not (root / f"{name}.tsv").is_file()]
    if missing:
        found = sorted(p.stem for p in root.glob("*.tsv"))
        raise ManifestError(f"{root}: no {', '.join(f'{m}.tsv' for m in missing)} (found: {found})")
    probe, skipped, rows_by_split = AudioProbe(), [], {}
    for name in tsvs:
        table = root / f"{name}.tsv"
        rows_by_split[name] = collect_rows(read_tsv(table)[:limit],
                                           lambda record: _build_row(record, root, name, probe, out_dir),
                                           str(table), "clip", skipped)
    return write_prepared(CORPUS, rows_by_split, out_dir, skipped)


def read_tsv(table: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) per non-blank record; a record with the wrong field count
    maps to {"": reason}."""
    try:
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = [c.strip().lstrip("\ufeff") for c in next(reader, [])]
            lacking = [c for c in REQUIRED_COLUMNS if c not in header]
            if lacking:
                raise ManifestError(f"{table}:1: header lacks column(s) {lacking} (has {header})")
            records = []
            for number, fields in enumerate(reader, start=2):
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    records.append((number, {"": f"expected {len(header)} fields, got {len(fields)}"}))
                else:
                    records.append((number, dict(zip(header, fields))))
            return records
    except UnicodeDecodeError as err:
        raise ManifestError(f"{table}: not UTF-8 (byte {err.start})") from err
    except OSError as err:
        raise ManifestError(f"{table}: cannot read ({err.strerror})") from err


def _build_row(record: dict[str, str], root: Path, split: str, probe: AudioProbe,
               out_dir: str | Path) -> tuple[dict | None, str | None]:
    if "" in record:
        return None, record[""]
    clip, text = record["path"].strip(), clean_text(record["sentence"])
    if not clip:
        return None, "empty path"
    if not text:
        return None, f"{clip}: empty sentence"
    audio = root / "clips" / clip
    info = probe(audio)
    if isinstance(info, str):
        return None, info
    accent = next((record[c].strip() for c in ACCENT_COLUMNS if record.get(c, "").strip()), None)
    gender = record.get("gender", "").strip()
    custom = {c: record[c].strip() for c in _CUSTOM_COLUMNS if record.get(c, "").strip()}
    if record.get("variant", "").strip():
        custom["dialect"] = record["variant"].strip()
    row = make_row(
        id=Path(clip).stem, audio_filepath=str(audio.absolute()), duration=info.duration, text=text,
        speaker=record["client_id"].strip() or None, accent=accent, corpus=CORPUS, split=split,
        sampling_rate=info.sample_rate, language=record.get("locale", "").strip() or None,
        gender=_GENDERS.get(gender, gender or None), custom=custom or None,
    )
    problem = usable(row, Path(out_dir).absolute())
    return (row, None) if problem is None else (None, f"{clip}: {problem}")
