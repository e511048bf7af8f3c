"""LibriSpeech (OpenSLR resource 12): the archive table, its download, and the parser of its layout
into manifests.

A private mirror whose archives differ from OpenSLR's (or a test serving synthetic ones) names a JSON
file of their digests in ASR_SFT_LIBRISPEECH_CHECKSUMS, `{"dev-clean": {"md5": "...", "sha256":
"..."}, ...}`: a split listed there is verified against those digests instead of the table's (give
one or both; the other is then not checked).

Layout inside every archive: LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac,
one <speaker>-<chapter>.trans.txt per chapter ("<utt-id> TRANSCRIPT" lines, upper case, no
punctuation), and LibriSpeech/SPEAKERS.TXT ("ID | SEX | SUBSET | MINUTES | NAME").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import json
import os
from collections.abc import Iterable
from dataclasses import replace

from asr_sft.data.audio import audio_info
from asr_sft.data.download import (HASH_ALGORITHMS, DownloadOptions, SplitResult, download_file,
                                   extract_archive, is_extracted, is_verified, resolve_base_url)
from asr_sft.errors import ArchiveError, AudioError, DownloadError, ManifestError
from asr_sft.data.manifest import MAX_PROBLEMS_SHOWN, make_row, write_manifest

log = logging.getLogger(__name__)

# Overridable with --mirror or the ASR_SFT_MIRROR environment variable (see asr_sft.data.download).
BASE_URL = "https://www.openslr.org/resources/12"
CHECKSUMS_ENV = "ASR_SFT_LIBRISPEECH_CHECKSUMS"  # JSON file of digests that replace the table's, per split


@dataclass(frozen=True)
class ArchiveSpec:
    name: str  # split name, e.g. "dev-clean"
    filename: str  # file name under the base URL
    approx_size: str  # as listed by OpenSLR; informational only, never used for verification
    hours: float  # of speech
    utterances: int
    md5: str
    sha256: str
    size: int | None = None  # exact bytes of the archive; None for a mirror's own archive
    max_bytes: int | None = None  # cap on the download when `size` is unknown


# md5: PaddleSpeech dataset/librispeech/librispeech.py; sha256: torchaudio datasets/librispeech.py;
# sizes (bytes): Kaldi egs/librispeech/s5/local/download_and_untar.sh ("sizes_new").
SPLITS: dict[str, ArchiveSpec] = {
    s.name: s
    for s in [
        ArchiveSpec("dev-clean", "dev-clean.tar.gz", "337M", 5.4, 2703,
                    "42e2234ba48799c1f50f24a7926300a1",
                    "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3", 337926286),
        ArchiveSpec("dev-other", "dev-other.tar.gz", "314M", 5.3, 2864,
                    "c8d0bcc9cca99d4f8b62fcc847357931",
                    "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365", 314305928),
        ArchiveSpec("test-clean", "test-clean.tar.gz", "346M", 5.4, 2620,
                    "32fa31d27d2e1cad72775fee3f4849a9",
                    "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23", 346663984),
        ArchiveSpec("test-other", "test-other.tar.gz", "328M", 5.1, 2939,
                    "fb5a50374b501bb3bac4815ee91d3135",
                    "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29", 328757843),
        ArchiveSpec("train-clean-100", "train-clean-100.tar.gz", "6.3G", 100.6, 28539,
                    "2a93770f6d5c6c964bc36631d331a522",
                    "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2", 6387309499),
        ArchiveSpec("train-clean-360", "train-clean-360.tar.gz", "23G", 363.6, 104014,
                    "c0e676e450a7ff2f54aeade5171606fa",
                    "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf", 23049477885),
        ArchiveSpec("train-other-500", "train-other-500.tar.gz", "30G", 496.7, 148688,
                    "d1a0fd59409feb2c614ce4d30c387708",
                    "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2", 30593501606),
    ]
}


# --- download -----------------------------------------------------------------------------------
def download_librispeech(
    splits: str | Iterable[str],
    dest: str | Path,
    mirror: str | None = None,
    extract: bool = True,
    options: DownloadOptions = DownloadOptions(),
) -> list[SplitResult]:
    """Fetch LibriSpeech splits into `dest` (archives there, corpus under `dest/LibriSpeech/`).

    Per split: skip it when its extraction marker is there (or, with extract=False, when the
    archive is verified); otherwise download and verify the archive unless it already verifies,
    then extract it. Unknown split names raise DownloadError listing the valid ones, before any
    download starts.
    """
    specs, base, dest = select_splits(splits), resolve_base_url(BASE_URL, mirror), Path(dest)
    return [_fetch_split(spec, base, dest, extract, options) for spec in specs]


def _fetch_split(spec: ArchiveSpec, base: str, dest: Path, extract: bool,
                 options: DownloadOptions) -> SplitResult:
    archive = dest / spec.filename
    root = dest / "LibriSpeech" / spec.name if extract else None
    digests = {a: d for a, d in (("md5", spec.md5), ("sha256", spec.sha256)) if d}
    if extract and is_extracted(archive, dest, digests) and root.is_dir():
        return SplitResult(spec.name, archive, root, downloaded=False, extracted=False)
    downloaded = not is_verified(archive, md5=spec.md5, sha256=spec.sha256)
    if downloaded:
        download_file(f"{base}/{spec.filename}", archive, md5=spec.md5, sha256=spec.sha256,
                      options=options, size=spec.size, max_bytes=spec.max_bytes)
    extracted = extract and extract_archive(archive, dest, digests)
    if extract and not root.is_dir():
        raise ArchiveError(f"{archive}: has no LibriSpeech/{spec.name}/ folder; not a "
                           f"{spec.name} archive")
    return SplitResult(spec.name, archive, root, downloaded=downloaded, extracted=extracted)


def select_splits(names: str | Iterable[str]) -> list[ArchiveSpec]:
    """Specs for split names (a list, or one comma-separated string), in order, without repeats."""
    if isinstance(names, str):
        names = names.split(",")
    names = [n.strip() for n in names if n.strip()]
    valid = ", ".join(SPLITS)
    unknown = [n for n in names if n not in SPLITS]
    if unknown:
        raise DownloadError(f"unknown LibriSpeech split(s): {', '.join(unknown)}; valid: {valid}")
    if not names:
        raise DownloadError(f"no LibriSpeech split given; valid: {valid}")
    overrides = read_checksum_overrides(os.environ.get(CHECKSUMS_ENV))
    return [overrides.get(n, SPLITS[n]) for n in dict.fromkeys(names)]


def read_checksum_overrides(path: str | Path | None) -> dict[str, ArchiveSpec]:
    """Specs whose digests come from a JSON file `{split: {"md5": ..., "sha256": ...}}` (see the
    module docstring); {} when `path` is None or empty. Raises DownloadError naming the file for
    anything it cannot use, so a typo never silently falls back to the table's digests."""
    if not path:
        return {}
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DownloadError(f"{path} (${CHECKSUMS_ENV}): cannot read a JSON checksum table ({err})") from err
    if not isinstance(table, dict):
        raise DownloadError(f"{path} (${CHECKSUMS_ENV}): expected a JSON object {{split: digests}}")
    specs = {}
    for split, digests in table.items():
        if split not in SPLITS:
            raise DownloadError(f"{path} (${CHECKSUMS_ENV}): unknown split {split!r}; valid: "
                                f"{', '.join(SPLITS)}")
        usable = (isinstance(digests, dict) and digests and set(digests) <= set(HASH_ALGORITHMS)
                  and all(isinstance(d, str) and d for d in digests.values()))
        if not usable:
            raise DownloadError(f"{path} (${CHECKSUMS_ENV}): {split}: expected "
                                f"{{\"md5\": ..., \"sha256\": ...}} (one or both), got {digests!r}")
        # A mirror's archive may be packed differently: no exact size, at most twice OpenSLR's.
        original = SPLITS[split].size
        specs[split] = replace(SPLITS[split], md5=digests.get("md5"), sha256=digests.get("sha256"),
                               size=None, max_bytes=2 * original if original else None)
    return specs


# --- parser: LibriSpeech layout -> one manifest per split -----------------------------------------
CORPUS = "librispeech"
AUDIO_SUFFIXES = (".flac", ".wav")  # LibriSpeech ships FLAC; our synthetic corpora may write WAV
TRANSCRIPT_SUFFIX = ".trans.txt"
SPEAKERS_FILE = "SPEAKERS.TXT"
# SPEAKERS.TXT columns when its header comment is absent; our synthetic corpora add ACCENT.
STANDARD_COLUMNS = ("ID", "SEX", "SUBSET", "MINUTES", "NAME")
_GENDERS = {"M": "male", "F": "female"}  # same words as FSDD's metadata, so groups line up


@dataclass(frozen=True)
class Speaker:
    id: str
    gender: str | None  # "male" / "female" (SEX column M / F), else the column's text lowercased
    accent: str | None  # only corpora with an ACCENT column have one
    subset: str | None
    name: str | None


def read_speakers(path: str | Path) -> dict[str, Speaker]:
    """Parse SPEAKERS.TXT ("ID | SEX | SUBSET | MINUTES | NAME", ';' comments).

    Columns come from the header comment (";ID |SEX| ...") when there is one, so extra columns such
    as ACCENT are found by name. The last column takes the rest of the line: real names contain '|'
    (speaker 60 is "|CBW|Simon").
    """
    path = Path(path)
    lines = _read_lines(path)
    columns = _header_columns(lines) or STANDARD_COLUMNS
    speakers: dict[str, Speaker] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", len(columns) - 1)]
        if len(fields) != len(columns) or not fields[0]:
            raise ManifestError(f"{path}:{number}: expected {len(columns)} '|'-separated fields "
                                f"({' | '.join(columns)}), got {line!r}")
        values = dict(zip(columns, fields))
        if values["ID"] in speakers:
            raise ManifestError(f"{path}:{number}: speaker {values['ID']} listed twice")
        sex = values.get("SEX") or None
        speakers[values["ID"]] = Speaker(
            id=values["ID"],
            gender=_GENDERS.get(sex.upper(), sex.lower()) if sex else None,
            accent=values.get("ACCENT") or None,
            subset=values.get("SUBSET") or None,
            name=values.get("NAME") or None,
        )
    return speakers


def _header_columns(lines: list[str]) -> tuple[str, ...] | None:
    """Column names from the ';ID |SEX| ...' comment, or None when the file has no such header."""
    for line in lines:
        if not line.lstrip().startswith(";"):
            continue
        names = tuple(f.strip().upper() for f in line.lstrip()[1:].split("|"))
        if len(names) > 1 and names[0] == "ID" and all(names):
            return names
    return None


def find_splits(root: str | Path) -> list[str]:
    """Names of the split folders under <root>/LibriSpeech, sorted."""
    base = corpus_dir(root)
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def corpus_dir(root: str | Path) -> Path:
    """<root>/LibriSpeech (root may also be the LibriSpeech folder itself)."""
    root = Path(root)
    for candidate in (root / "LibriSpeech", root):
        if candidate.is_dir() and candidate.name == "LibriSpeech":
            return candidate
    raise ManifestError(f"{root}: no LibriSpeech/ folder here (expected {root / 'LibriSpeech'})")


def read_transcripts(path: str | Path, speaker: str, chapter: str) -> dict[str, tuple[str, int]]:
    """{utterance id: (text, line number)} from one <speaker>-<chapter>.trans.txt."""
    path = Path(path)
    prefix = f"{speaker}-{chapter}-"
    found: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ManifestError(f"{path}:{number}: malformed transcript line (expected "
                                f"'<utterance-id> TEXT'): {line!r}")
        utt_id, text = parts
        if not utt_id.startswith(prefix) or not utt_id[len(prefix):].isdigit():
            raise ManifestError(f"{path}:{number}: utterance id {utt_id!r} does not match its "
                                f"folder (expected '{prefix}<number>')")
        if utt_id in found:
            raise ManifestError(f"{path}:{number}: utterance {utt_id} repeated "
                                f"(first on line {found[utt_id][1]})")
        found[utt_id] = (text, number)
    return found


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 (byte {err.start})") from err
    except OSError as err:
        raise ManifestError(f"{path}: cannot read ({err.strerror})") from err


def collect_split(split_dir: str | Path, speakers: dict[str, Speaker] | None = None) -> list[dict]:
    """Manifest rows of one split folder (<split>/<speaker>/<chapter>/...), sorted by id.

    Every transcript line must have its audio file and every audio file its transcript line; all
    such problems in the split are reported together in one ManifestError.
    """
    split_dir = Path(split_dir)
    speakers = speakers or {}
    rows, problems = [], []
    chapter_dirs, misplaced = _walk_split(split_dir)
    problems += [f"{p}: misplaced (expected <split>/<speaker>/<chapter>/<file>)" for p in misplaced]
    for chapter_dir in chapter_dirs:
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        chapter_rows, chapter_problems = _collect_chapter(chapter_dir, speaker, chapter)
        problems += chapter_problems
        info = speakers.get(speaker)
        for row in chapter_rows:
            row.update(speaker=speaker, accent=info.accent if info else None,
                       gender=info.gender if info else None, split=split_dir.name)
            rows.append(make_row(**row))
    if problems:
        raise ManifestError(f"{split_dir}: {len(problems)} problem(s):\n"
                            + "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
                            + (f"\n  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more"
                               if len(problems) > MAX_PROBLEMS_SHOWN else ""))
    if not rows:
        raise ManifestError(f"{split_dir}: no utterances found (expected <speaker>/<chapter>/ "
                            f"folders with {TRANSCRIPT_SUFFIX} files)")
    return sorted(rows, key=lambda r: r["id"])


def _walk_split(split_dir: Path) -> tuple[list[Path], list[Path]]:
    """(chapter folders, audio/transcript files found at the wrong depth), both sorted."""
    if not split_dir.is_dir():
        raise ManifestError(f"{split_dir}: split folder not found")
    chapters, misplaced = [], []
    for level in _sorted_entries(split_dir):
        for entry in _sorted_entries(level) if level.is_dir() else [level]:
            (chapters if entry.is_dir() else misplaced).append(entry)
    misplaced = [p for p in misplaced if p.name.endswith(TRANSCRIPT_SUFFIX)
                 or p.suffix.lower() in AUDIO_SUFFIXES]
    return chapters, misplaced


def _sorted_entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _collect_chapter(chapter_dir: Path, speaker: str, chapter: str) -> tuple[list[dict], list[str]]:
    """(partial rows, problems) of one chapter folder; problems name the file and line."""
    audio = {p.name[: -len(p.suffix)]: p for p in chapter_dir.iterdir()
             if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}
    transcripts = sorted(chapter_dir.glob(f"*{TRANSCRIPT_SUFFIX}"))
    if not transcripts and audio:
        return [], [f"{chapter_dir}: {len(audio)} audio file(s) but no {TRANSCRIPT_SUFFIX}"]
    rows, problems, seen = [], [], set()
    for trans in transcripts:
        for utt_id, (text, number) in read_transcripts(trans, speaker, chapter).items():
            seen.add(utt_id)
            if utt_id not in audio:
                problems.append(f"{trans}:{number}: audio for {utt_id} not found "
                                f"({chapter_dir / (utt_id + AUDIO_SUFFIXES[0])})")
                continue
            try:
                info = audio_info(audio[utt_id])
            except AudioError as err:
                problems.append(f"{trans}:{number}: {err}")
                continue
            rows.append(dict(id=utt_id, audio_filepath=str(audio[utt_id].absolute()),
                             duration=info.duration, text=text, corpus=CORPUS,
                             sampling_rate=info.sample_rate, custom={"chapter": chapter}))
    problems += [f"{audio[name]}: no transcript line for this audio file"
                 for name in sorted(set(audio) - seen)]
    return rows, problems


def prepare_librispeech(root: str | Path, out_dir: str | Path,
                        splits: list[str] | None = None) -> dict[str, Path]:
    """Write <out_dir>/<split>.jsonl for every split folder under <root>/LibriSpeech (or only
    `splits`). Gender (and accent, when there is an ACCENT column) come from SPEAKERS.TXT."""
    base = corpus_dir(root)
    found = find_splits(root)
    wanted = list(splits) if splits else found
    missing = [s for s in wanted if s not in found]
    if missing:
        raise ManifestError(f"{base}: split(s) {missing} not found (found: {found or 'none'})")
    if not wanted:
        raise ManifestError(f"{base}: no split folders found")
    speakers_file = base / SPEAKERS_FILE
    speakers = read_speakers(speakers_file) if speakers_file.is_file() else {}
    out_dir = Path(out_dir)
    manifests = {}
    for split in wanted:
        rows = collect_split(base / split, speakers)
        unknown = sorted({r["speaker"] for r in rows} - set(speakers)) if speakers else []
        if unknown:  # not an error: the rows are usable, only gender/accent are unknown
            log.warning("%s: %d speaker(s) of %s not listed (gender/accent unknown): %s",
                        speakers_file, len(unknown), split, ", ".join(unknown[:10]))
        manifests[split] = write_manifest(out_dir / f"{split}.jsonl", rows)
    return manifests
