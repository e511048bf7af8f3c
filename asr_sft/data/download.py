"""Fetching corpora: resumable, verified, atomic HTTP downloads and safe archive extraction.

A download streams into `<name>.part` beside its final name, resumes that file with a Range request
after a cut connection, is checked against its md5 and/or sha256, and only then is renamed to its
final name; a `<name>.verified` marker records size and digests so a re-run need not hash gigabytes
again. An archive is extracted only after every member has been checked to stay inside the
destination; a `<archive name>.extracted` marker in the destination, written last, makes a re-run
skip it (an extraction cut short has no marker and is redone).

The base URL comes from the `mirror` argument, else the ASR_SFT_MIRROR environment variable, else
the corpus's own default (e.g. `asr_sft.corpora.librispeech.BASE_URL`). This module knows no corpus.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import re
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from asr_sft.atomic import write_text_atomic
from asr_sft.errors import ArchiveError, DownloadError

log = logging.getLogger(__name__)

MIRROR_ENV = "ASR_SFT_MIRROR"  # environment variable holding a base URL that replaces BASE_URL
CHUNK_BYTES = 1 << 20  # bytes read from the socket (and from disk when hashing) at a time
HASH_ALGORITHMS = ("md5", "sha256")  # every digest we record; a spec may give either or both
RETRY_HTTP_CODES = frozenset({408, 429})  # client-side codes that are transient (plus every 5xx)
USER_AGENT = "asr-sft (python urllib)"  # some hosts refuse urllib's default agent string
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")


@dataclass(frozen=True)
class DownloadOptions:
    attempts: int = 5  # tries per file; each one resumes what the previous one kept
    backoff_s: float = 2.0  # wait before the 2nd try, doubled before each later one
    max_backoff_s: float = 60.0  # cap on a single wait
    timeout_s: float = 60.0  # socket timeout for the connection and for each read
    progress: bool = True  # draw a tqdm bar on stderr


@dataclass(frozen=True)
class SplitResult:
    split: str
    archive: Path  # the verified archive (it may since have been deleted by the user)
    root: Path | None  # <dest>/LibriSpeech/<split> when extracted; None with extract=False
    downloaded: bool  # bytes were fetched by this call
    extracted: bool  # the archive was unpacked by this call

    def describe(self) -> str:
        """One line for people: what this call did for the split, and where the result is."""
        where = self.root if self.root is not None else self.archive
        if self.downloaded:
            done = "downloaded, verified" + (", extracted" if self.extracted else "")
        elif self.extracted:
            done = "archive already verified; extracted"
        elif self.root is not None:
            done = "skipped (already extracted)"
        else:
            done = "skipped (already downloaded and verified)"
        return f"{self.split}: {done} -> {where}"


class _Retryable(Exception):
    """A transient failure (connection, timeout, 5xx, short body): wait, then resume."""


# --- URLs ------------------------------------------------------------------------------
def resolve_base_url(default: str, mirror: str | None = None) -> str:
    """The base URL to fetch from: `mirror`, else $ASR_SFT_MIRROR, else the corpus's `default`."""
    base = mirror or os.environ.get(MIRROR_ENV) or default
    return base.rstrip("/")


# --- digests and markers --------------------------------------------------------------------------
def file_digests(path: str | Path, algorithms: Iterable[str] = HASH_ALGORITHMS) -> dict[str, str]:
    """Hex digests of a file's bytes, e.g. {"md5": ..., "sha256": ...}, in one read."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _expected_digests(md5: str | None, sha256: str | None) -> dict[str, str]:
    expected = {a: d.lower() for a, d in (("md5", md5), ("sha256", sha256)) if d}
    if not expected:
        raise ValueError("a download needs an md5 or a sha256 to verify against")
    return expected


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _write_verified_marker(path: Path, digests: dict[str, str]) -> None:
    lines = [f"size {path.stat().st_size}"] + [f"{a} {d}" for a, d in sorted(digests.items())]
    write_text_atomic(_marker_path(path), "\n".join(lines) + "\n")


def _marker_matches(path: Path, expected: dict[str, str]) -> bool:
    marker = _marker_path(path)
    if not marker.is_file():
        return False
    recorded = dict(line.split(" ", 1) for line in marker.read_text(encoding="utf-8").splitlines()
                    if " " in line)
    if recorded.get("size") != str(path.stat().st_size):
        return False
    return all(recorded.get(a) == d for a, d in expected.items())


def is_verified(path: str | Path, md5: str | None = None, sha256: str | None = None) -> bool:
    """True when `path` exists with these digests: by its marker, or else by hashing it (which then
    writes the marker). A file that does not match is left alone; a download will replace it."""
    path, expected = Path(path), _expected_digests(md5, sha256)
    if not path.is_file():
        return False
    if _marker_matches(path, expected):
        return True
    actual = file_digests(path)
    if any(actual[a] != d for a, d in expected.items()):
        log.warning("%s: exists but does not match its checksum; downloading it again", path)
        return False
    _write_verified_marker(path, actual)
    return True


# --- HTTP -----------------------------------------------------------------------------------------
def download_file(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    sha256: str | None = None,
    options: DownloadOptions = DownloadOptions(),
) -> Path:
    """Download `url` to `dest` through `dest.part` (resumed if present), verify, rename into place.

    At least one of md5/sha256 is required; both are checked when both are given. Returns `dest`.
    Raises DownloadError when the server refuses (4xx), when the attempts run out (the part file is
    kept so the next run resumes), or on a checksum mismatch (the download is deleted and nothing is
    left under `dest`).
    """
    dest, expected = Path(dest), _expected_digests(md5, sha256)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _fetch_with_retries(url, part, options)
    actual = file_digests(part)
    wrong = [a for a, d in expected.items() if actual[a] != d]
    if wrong:
        part.unlink()
        details = "; ".join(f"{a} expected {expected[a]}, got {actual[a]}" for a in wrong)
        raise DownloadError(f"{dest}: checksum mismatch from {url} ({details}); download deleted")
    os.replace(part, dest)
    _write_verified_marker(dest, actual)
    return dest


def _fetch_with_retries(url: str, part: Path, options: DownloadOptions) -> None:
    for attempt in range(1, options.attempts + 1):
        try:
            return _fetch(url, part, options)
        except _Retryable as err:
            last = err
            if attempt < options.attempts:
                wait_s = min(options.backoff_s * 2 ** (attempt - 1), options.max_backoff_s)
                log.warning("%s: %s; try %d of %d in %.1f s", url, err, attempt + 1,
                            options.attempts, wait_s)
                time.sleep(wait_s)
    kept = part.stat().st_size if part.exists() else 0
    raise DownloadError(f"{url}: gave up after {options.attempts} attempts ({last}); "
                        f"{kept} bytes kept in {part} for the next run")


def _fetch(url: str, part: Path, options: DownloadOptions) -> None:
    """One request: append to `part` from where it ends (or rewrite it if the server sends all)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT} | ({"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=options.timeout_s) as response:
            start, total = _response_span(response, offset, part)
            _stream(response, part, start, total, options)
    except urllib.error.HTTPError as err:
        _handle_http_error(url, err, part, offset)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        raise _Retryable(f"{type(err).__name__}: {err}") from err


def _response_span(response, offset: int, part: Path) -> tuple[int, int | None]:
    """(first byte the body holds, total file size or None) from the status and headers."""
    if response.status != 206:  # a 200 is the whole file: the server ignored (or got no) Range
        length = response.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match or int(match[1]) != offset:
        part.unlink(missing_ok=True)  # a range we did not ask for: start over cleanly
        raise _Retryable(f"server answered range {response.headers.get('Content-Range')!r} "
                         f"to a request from byte {offset}")
    return offset, None if match[3] == "*" else int(match[3])


def _stream(response, part: Path, start: int, total: int | None, options: DownloadOptions) -> None:
    with open(part, "ab" if start else "wb") as f, tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name.removesuffix(".part"), disable=not options.progress,
    ) as bar:
        while chunk := response.read(CHUNK_BYTES):
            f.write(chunk)
            bar.update(len(chunk))
        size = f.tell()
    # http.client returns a short body without complaint when the peer closes early.
    if total is not None and size != total:
        raise _Retryable(f"connection closed after {size} of {total} bytes")


def _handle_http_error(url: str, err: urllib.error.HTTPError, part: Path, offset: int) -> None:
    if err.code == 416 and offset:  # our part file already reaches (or passes) the end
        match = _UNSATISFIED_RANGE.fullmatch(err.headers.get("Content-Range", "").strip())
        if match and int(match[1]) == offset:
            return  # complete; the checksum decides whether it is right
        part.unlink(missing_ok=True)
        raise _Retryable(f"{part} is longer than the file on the server; starting over") from err
    if err.code >= 500 or err.code in RETRY_HTTP_CODES:
        raise _Retryable(f"HTTP {err.code} {err.reason}") from err
    raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err


# --- archives -------------------------------------------------------------------------------------
def extraction_marker(archive: str | Path, dest: str | Path) -> Path:
    """The file whose presence says `archive` was fully extracted into `dest`."""
    return Path(dest) / (Path(archive).name + ".extracted")


def extract_archive(archive: str | Path, dest: str | Path) -> bool:
    """Extract a .tar/.tar.gz into `dest` once every member has passed `check_member`.

    Returns False (and does nothing) when the done marker says it was extracted before. Raises
    ArchiveError naming the archive and member for an unsafe member (before anything is written),
    or naming the archive when it is corrupt.
    """
    archive, dest = Path(archive), Path(dest)
    marker = extraction_marker(archive, dest)
    if marker.exists():
        return False
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(dest))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, root, archive)
            # The data filter re-checks against the real file system while writing.
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(f"{archive}: cannot extract ({type(err).__name__}: {err})") from err
    write_text_atomic(marker, f"{archive.name}: {len(members)} members extracted\n")
    return True


def check_member(member: tarfile.TarInfo, root: Path, archive: str | Path) -> None:
    """Raise ArchiveError unless `member` is a plain file, folder, or link staying inside `root`
    (an already resolved destination folder)."""
    name = member.name
    path = PurePosixPath(name)

    def refuse(why: str) -> None:
        raise ArchiveError(f"{archive}: refusing member {name!r}: {why}")

    if path.is_absolute():
        refuse("absolute path")
    if ".." in path.parts:
        refuse("'..' in its path")
    if not _inside(root / name, root):
        refuse("it would land outside the destination")
    if member.issym():
        if os.path.isabs(member.linkname):
            refuse(f"symlink to the absolute path {member.linkname!r}")
        if not _inside(root / path.parent / member.linkname, root):
            refuse(f"symlink to {member.linkname!r}, outside the destination")
    elif member.islnk():
        if os.path.isabs(member.linkname) or not _inside(root / member.linkname, root):
            refuse(f"hard link to {member.linkname!r}, outside the destination")
    elif not (member.isfile() or member.isdir()):
        refuse("device file, FIFO or other special member")


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(root)


