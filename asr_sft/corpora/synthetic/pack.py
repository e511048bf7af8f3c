"""A split of a LibriSpeech-layout corpus (e.g. one from asr_sft.synth) packed like an OpenSLR
archive: `<split>.tar.gz` with .md5 and .sha256 files beside it, the same bytes for the same files,
so it can be published and fetched and verified by asr_sft.download like LibriSpeech's own.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from asr_sft.atomic import atomic_path, write_text_atomic
from asr_sft.errors import SynthesisError

ARCHIVE_MTIME = 1_400_000_000  # seconds since 1970 (May 2014): fixed, so archives are reproducible


@dataclass(frozen=True)
class PackedArchive:
    path: Path
    md5: str
    sha256: str
    size: int  # bytes


def pack_split(corpus_dir: str | Path, split: str, out_dir: str | Path) -> PackedArchive:
    """`<out_dir>/<split>.tar.gz` holding LibriSpeech/<split>/... and LibriSpeech/SPEAKERS.TXT, like
    an OpenSLR archive, plus `<split>.tar.gz.sha256` and `.md5` beside it. The bytes depend only on
    the files' content (sorted members, fixed times and owners, gzip time 0); written atomically."""
    base = Path(corpus_dir) / "LibriSpeech"
    if not (base / split).is_dir():
        found = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        raise SynthesisError(f"{base / split}: no such split to pack (found: {', '.join(found) or 'none'})")
    if not (base / "SPEAKERS.TXT").is_file():
        raise SynthesisError(f"{base / 'SPEAKERS.TXT'}: missing; is the corpus complete?")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{split}.tar.gz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for member in _archive_members(base, split):
                        _add_member(tar, base.parent, member)
        md5, sha256 = _digests(tmp)
    write_text_atomic(out_dir / f"{path.name}.sha256", f"{sha256}  {path.name}\n")
    write_text_atomic(out_dir / f"{path.name}.md5", f"{md5}  {path.name}\n")
    return PackedArchive(path=path, md5=md5, sha256=sha256, size=path.stat().st_size)


def _archive_members(base: Path, split: str) -> list[Path]:
    """Folders and files to archive, relative to base's parent, sorted; hidden temp files skipped."""
    members = [Path("LibriSpeech"), Path("LibriSpeech/SPEAKERS.TXT"), Path("LibriSpeech") / split]
    for path in sorted((base / split).rglob("*")):
        if not any(part.startswith(".") for part in path.relative_to(base).parts):
            members.append(path.relative_to(base.parent))
    return members


def _add_member(tar: tarfile.TarFile, root: Path, member: Path) -> None:
    source = root / member
    info = tarfile.TarInfo(member.as_posix())
    info.mtime, info.uid, info.gid, info.uname, info.gname = ARCHIVE_MTIME, 0, 0, "", ""
    if source.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.mode, info.size = 0o644, source.stat().st_size
    with open(source, "rb") as f:
        tar.addfile(info, f)


def _digests(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    return md5.hexdigest(), sha256.hexdigest()
