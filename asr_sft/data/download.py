"""Fetching corpora: resumable, verified, size-capped, atomic HTTP downloads and safe extraction.

A download streams into `<name>.part` beside its final name, resumes that file with a Range request
after a cut connection, stops with an error once it holds more bytes than expected (the exact size
when known, else a cap), is checked against its md5 and/or sha256, and only then is renamed to its
final name.

Markers live in a state folder, `.asr_sft/`, beside the files they describe, which extraction
refuses to write into (an archive can never plant a marker):
  .asr_sft/<name>.verified   JSON: the digests checked, and the file's size, inode, mtime and ctime
                             at that moment; any rewrite of the file (even to the same size) changes
                             its ctime and makes the next run hash it again
  .asr_sft/<archive>.extracted   JSON: the archive's digests and the top-level paths it created; it
                             counts only for the same digests and while those paths all exist

Extraction is done member by member, never by tarfile.extractall, so it is safe on every Python
(CVE-2025-4517 and its relatives defeat tarfile's "data" filter on 3.11.7): a first pass checks
every member's name and type before anything is written; the second writes each member through
folder descriptors opened with O_NOFOLLOW, so no write ever follows a symlink (even one the
archive placed a moment before), and every file is created afresh (O_EXCL), so no write ever lands
in an existing inode (a hard link). Allowed: folders, regular files, hard links to a regular file
extracted earlier from the same archive, and symlinks (created last) whose target already exists
inside the destination. Refused: absolute paths, '..', the state folder, names past NAME_MAX or
paths past PATH_MAX, devices, FIFOs, and anything that would replace a link or a folder.

The base URL comes from the `mirror` argument, else the ASR_SFT_MIRROR environment variable, else
the corpus's own default (e.g. `asr_sft.corpora.librispeech.BASE_URL`). This module knows no corpus.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import json
import logging
import os
import re
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from asr_sft.atomic import StorageError, disk_full_error, free_bytes, is_disk_full, write_text_atomic
from asr_sft.errors import ArchiveError, DownloadError

log = logging.getLogger(__name__)

MIRROR_ENV = "ASR_SFT_MIRROR"  # environment variable holding a base URL that replaces BASE_URL
CHUNK_BYTES = 1 << 20  # bytes read from the socket (and from disk when hashing) at a time
HASH_ALGORITHMS = ("md5", "sha256")  # every digest we record; a spec may give either or both
RETRY_HTTP_CODES = frozenset({408, 429})  # client-side codes that are transient (plus every 5xx)
USER_AGENT = "asr-sft (python urllib)"  # some hosts refuse urllib's default agent string
STATE_DIR = ".asr_sft"  # markers beside the downloads; extraction never writes a path through it
MAX_DOWNLOAD_BYTES = 64 << 30  # cap on a download whose exact size is unknown (64 GiB)
NAME_MAX_BYTES = 255  # longest file name component (Linux, macOS)
PATH_MAX_BYTES = 4096  # longest path (Linux); longer ones are refused, never half-resolved
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


@dataclass(frozen=True)
class _Limit:
    """How many bytes a download may hold: exactly `size` when known, else at most `cap`."""

    size: int | None
    cap: int


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


def state_dir(folder: str | Path) -> Path:
    """The folder holding the markers of the files in `folder` (see the module docstring)."""
    return Path(folder) / STATE_DIR


def _marker_path(path: Path) -> Path:
    return state_dir(path.parent) / (path.name + ".verified")


def _file_identity(path: Path) -> dict[str, int]:
    """What changes when a file is rewritten, even to the same size: ctime cannot be set back."""
    st = path.stat()
    return {"size": st.st_size, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _write_verified_marker(path: Path, digests: dict[str, str]) -> None:
    marker = _marker_path(path)
    marker.parent.mkdir(exist_ok=True)
    record = {"file": path.name, **_file_identity(path), "digests": digests}
    write_text_atomic(marker, json.dumps(record, indent=1) + "\n")


def _read_marker(marker: Path) -> dict | None:
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("digests"), dict) else None


def _marker_matches(path: Path, expected: dict[str, str]) -> bool:
    record = _read_marker(_marker_path(path))
    if record is None or any(record.get(k) != v for k, v in _file_identity(path).items()):
        return False
    return all(record["digests"].get(a) == d for a, d in expected.items())


def is_verified(path: str | Path, md5: str | None = None, sha256: str | None = None) -> bool:
    """True when `path` exists with these digests: by its marker (same digests, same file), or else
    by hashing it (which then writes the marker). A file that does not match is left alone; a
    download will replace it."""
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
    size: int | None = None,
    max_bytes: int | None = None,
) -> Path:
    """Download `url` to `dest` through `dest.part` (resumed if present), verify, rename into place.

    At least one of md5/sha256 is required; both are checked when both are given. `size` is the
    file's exact length in bytes when known: a server announcing another length is refused before
    the body is read, and a body running past it is cut off. Without it, the download may hold at
    most `max_bytes` (default MAX_DOWNLOAD_BYTES). Returns `dest`. Raises DownloadError when the
    server refuses (4xx), when the attempts run out (the part file is kept so the next run
    resumes), on a length or checksum mismatch (the download is deleted and nothing is left under
    `dest`); StorageError when the disk fills up (the part file is kept).
    """
    dest, expected = Path(dest), _expected_digests(md5, sha256)
    limit = _Limit(size, size if size is not None else (max_bytes or MAX_DOWNLOAD_BYTES))
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _fetch_with_retries(url, part, options, limit)
    got = part.stat().st_size
    actual = file_digests(part)
    wrong = [a for a, d in expected.items() if actual[a] != d]
    if wrong or (size is not None and got != size):
        part.unlink()
        details = "; ".join(f"{a} expected {expected[a]}, got {actual[a]}" for a in wrong)
        if size is not None and got != size:
            details += f"{'; ' if details else ''}{got} bytes, expected exactly {size}"
        raise DownloadError(f"{dest}: checksum mismatch from {url} ({details}); download deleted")
    os.replace(part, dest)
    _write_verified_marker(dest, actual)
    return dest


def _fetch_with_retries(url: str, part: Path, options: DownloadOptions, limit: _Limit) -> None:
    for attempt in range(1, options.attempts + 1):
        try:
            return _fetch(url, part, options, limit)
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


def _fetch(url: str, part: Path, options: DownloadOptions, limit: _Limit) -> None:
    """One request: append to `part` from where it ends (or rewrite it if the server sends all)."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > limit.cap:  # longer than the file can be: whatever it holds is wrong
        part.unlink()
        offset = 0
    headers = {"User-Agent": USER_AGENT} | ({"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=options.timeout_s) as response:
            start, total = _response_span(response, offset, part)
            _check_announced(url, part, start, total, limit)
            _stream(url, response, part, start, total, options, limit)
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


def _check_announced(url: str, part: Path, start: int, total: int | None, limit: _Limit) -> None:
    """Refuse a file announced longer than it can be (its exact size, or the cap), and one the disk
    cannot hold, before reading its body. A shorter one is fetched: its checksum will say."""
    if total is not None and limit.size is not None and total > limit.size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the server announces {total} bytes, expected exactly "
                            f"{limit.size}; not downloading it")
    if total is not None and total > limit.cap:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the server announces {total} bytes, more than the "
                            f"{limit.cap}-byte cap for this download; not downloading it")
    need = (total if total is not None else limit.size or 0) - start
    free = free_bytes(part.parent)
    if free is not None and need > free:
        raise StorageError(f"no space left on {part.parent}: {url} needs {need} more bytes, "
                           f"{free} are free")


def _stream(url: str, response, part: Path, start: int, total: int | None,
            options: DownloadOptions, limit: _Limit) -> None:
    size = start
    try:
        with open(part, "ab" if start else "wb") as f, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not options.progress,
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                if size + len(chunk) > limit.cap:
                    break
                f.write(chunk)
                size += len(chunk)
                bar.update(len(chunk))
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(part.parent, f"downloading {url}; {size} bytes kept in {part} "
                                               "for the next run") from err
        raise
    if chunk:  # stopped at the cap with more body to come
        part.unlink(missing_ok=True)
        expected = f"exactly {limit.size}" if limit.size is not None else f"at most {limit.cap}"
        raise DownloadError(f"{url}: the body is longer than expected ({expected} bytes); "
                            "download deleted")
    # http.client returns a short body without complaint when the peer closes early.
    if total is not None and size < total:
        raise _Retryable(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the body is longer than the {total} bytes it announced; "
                            "download deleted")


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
MAX_MARKER_PATHS = 1000  # top-level paths an extraction marker lists (and checks) at most


def extraction_marker(archive: str | Path, dest: str | Path) -> Path:
    """The marker that says `archive` was fully extracted into `dest` (see the module docstring)."""
    return state_dir(dest) / (Path(archive).name + ".extracted")


def is_extracted(archive: str | Path, dest: str | Path, digests: dict[str, str]) -> bool:
    """Whether `archive` with these digests was fully extracted into `dest` and what it created
    is still there (a stale marker whose folders are gone does not count)."""
    record = _read_marker(extraction_marker(archive, dest))
    if record is None or not digests or not isinstance(record.get("paths"), list):
        return False
    if any(record["digests"].get(a) != d.lower() for a, d in digests.items()):
        return False
    missing = [p for p in record["paths"] if not isinstance(p, str) or not os.path.lexists(Path(dest) / p)]
    if missing:
        log.warning("%s: was extracted into %s, but %s is gone; extracting it again", archive, dest,
                    missing[0])
        return False
    return True


def extract_archive(archive: str | Path, dest: str | Path, digests: dict[str, str] | None = None) -> bool:
    """Extract a .tar/.tar.gz into `dest`, safely (see the module docstring), once.

    digests: the archive's verified digests, recorded in (and required by) the extraction marker;
    None hashes the archive. Returns False (and does nothing) when the marker says this archive was
    extracted before and its paths are still there. Raises ArchiveError naming the archive and
    member for an unsafe member (members refused by name or type before anything is written), or
    naming the archive when it is corrupt; StorageError when the disk fills up.
    """
    archive, dest = Path(archive), Path(dest)
    digests = {a: d.lower() for a, d in digests.items() if d} if digests else file_digests(archive)
    if is_extracted(archive, dest, digests):
        return False
    _check_platform()
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(dest))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            check_members(members, root, archive)
            _Extractor(tar, root, archive).run(members)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(f"{archive}: cannot extract ({type(err).__name__}: {err})") from err
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(dest, f"extracting {archive.name}") from err
        raise ArchiveError(f"{archive}: cannot extract into {dest} ({err})") from err
    named = [PurePosixPath(m.name).parts for m in members if not _is_root(m)]
    paths = sorted({"/".join(parts[:2]) for parts in named})
    if len(paths) > MAX_MARKER_PATHS:
        paths = sorted({parts[0] for parts in named})[:MAX_MARKER_PATHS]
    marker = extraction_marker(archive, dest)
    marker.parent.mkdir(exist_ok=True)
    record = {"archive": archive.name, "digests": digests, "members": len(members), "paths": paths}
    write_text_atomic(marker, json.dumps(record, indent=1) + "\n")
    return True


def check_members(members: list[tarfile.TarInfo], root: Path, archive: str | Path) -> None:
    """Check every member by name and type (check_member) before anything is written."""
    earlier_files: set[str] = set()
    for member in members:
        if _is_root(member):
            continue
        name = check_member(member, root, archive, earlier_files)
        if member.isreg() or member.islnk():
            earlier_files.add(name)


def check_member(member: tarfile.TarInfo, root: Path, archive: str | Path,
                 earlier_files: set[str] | None = None) -> str:
    """The member's normalised name, or ArchiveError unless it is a folder, a regular file, a hard
    link to a regular file earlier in the archive (`earlier_files`: their normalised names) or a
    symlink, with a name (and link target) that stays inside `root` (the resolved destination)
    by its words alone. What is on disk is checked while extracting."""
    name = member.name

    def refuse(why: str) -> None:
        raise ArchiveError(f"{archive}: refusing member {name!r}: {why}")

    path = _clean_name(name, refuse)
    if len(os.fsencode(str(root / path))) >= PATH_MAX_BYTES:
        refuse(f"its path is longer than PATH_MAX ({PATH_MAX_BYTES} bytes)")
    if member.issym():
        link = member.linkname
        if not link or "\0" in link or os.path.isabs(link):
            refuse(f"symlink to the absolute or empty path {link!r}")
        target = PurePosixPath(os.path.normpath(os.path.join(str(path.parent), link)))
        if target.parts[:1] == ("..",) or any(p.lower() == STATE_DIR for p in target.parts):
            refuse(f"symlink to {link!r}, outside the destination")
        if len(os.fsencode(str(root / target))) >= PATH_MAX_BYTES:
            refuse(f"symlink to {link!r}: target path longer than PATH_MAX")
    elif member.islnk():
        target = _clean_name(member.linkname, lambda why: refuse(f"hard link to {member.linkname!r}: {why}"))
        if earlier_files is not None and str(target) not in earlier_files:
            refuse(f"hard link to {member.linkname!r}, which is not a regular file earlier in the "
                   "archive (links may never reach outside the destination)")
    elif not (member.isreg() or member.isdir()):
        refuse("device file, FIFO or other special member")
    return str(path)


def _is_root(member: tarfile.TarInfo) -> bool:
    """The archive's "." folder (`tar -C dir -c .`): the destination itself, nothing to write."""
    return member.isdir() and not PurePosixPath(member.name).parts and not member.name.startswith("/")


def _clean_name(name: str, refuse) -> PurePosixPath:
    if not name or "\0" in name:
        refuse("empty name or NUL in its name")
    path = PurePosixPath(name)
    if path.is_absolute():
        refuse("absolute path")
    if ".." in path.parts:
        refuse("'..' in its path")
    if not path.parts:
        refuse("empty name")
    if any(p.lower() == STATE_DIR for p in path.parts):
        refuse(f"it would write into {STATE_DIR}/, where the download markers live")
    if any(len(os.fsencode(p)) > NAME_MAX_BYTES for p in path.parts):
        refuse(f"a name in its path is longer than NAME_MAX ({NAME_MAX_BYTES} bytes)")
    return path


def _check_platform() -> None:
    needed = (os.open, os.mkdir, os.stat, os.unlink, os.link, os.symlink, os.readlink)
    if (not all(f in os.supports_dir_fd for f in needed) or not hasattr(os, "O_NOFOLLOW")
            or not hasattr(os, "O_DIRECTORY")):
        raise ArchiveError("safe extraction needs dir_fd file calls and O_NOFOLLOW, which this "
                           "platform lacks; extract the archive by hand")


def _file_mode(mode: int | None) -> int:
    """tarfile's "data" filter rule: no set-id or sticky bits, no group/other write, owner
    read/write; executable for others only when executable for the owner."""
    mode = ((0o644 if mode is None else mode) & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o011


def _lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Extractor:
    """Writes checked members below `root` through folder descriptors (see the module docstring)."""

    _OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    _CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC

    def __init__(self, tar: tarfile.TarFile, root: Path, archive: Path):
        self.tar, self.root, self.archive = tar, root, archive
        self.files: set[str] = set()  # regular files (and hard links) written by this extraction

    def run(self, members: list[tarfile.TarInfo]) -> None:
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # Symlinks last: their targets exist by then, and no member is written through them.
            members = [m for m in members if not _is_root(m)]
            for member in [m for m in members if not m.issym()] + [m for m in members if m.issym()]:
                self._extract(root_fd, member)
        finally:
            os.close(root_fd)

    def _refuser(self, name: str):
        def refuse(why: str) -> None:
            raise ArchiveError(f"{self.archive}: refusing member {name!r}: {why}")
        return refuse

    def _extract(self, root_fd: int, member: tarfile.TarInfo) -> None:
        path, refuse = PurePosixPath(member.name), self._refuser(member.name)
        parent_fd = self._open_folder(root_fd, path.parts[:-1], refuse, create=True)
        try:
            leaf = path.parts[-1]
            existing = _lstat_at(leaf, parent_fd)
            if member.isdir():
                if existing is None:
                    os.mkdir(leaf, 0o777, dir_fd=parent_fd)
                elif not stat.S_ISDIR(existing.st_mode):
                    refuse("a file or link of that name is already there")
            elif member.issym():
                self._symlink(parent_fd, leaf, existing, member, path.parts[:-1], refuse)
            elif member.islnk():
                self._hard_link(root_fd, parent_fd, leaf, existing, member, refuse)
                self.files.add(str(path))
            else:
                self._write_file(parent_fd, leaf, existing, member, refuse)
                self.files.add(str(path))
        finally:
            os.close(parent_fd)

    def _open_folder(self, root_fd: int, parts: tuple[str, ...], refuse, create: bool) -> int:
        """A descriptor of root/parts, each part a real folder (made when `create`), never a link."""
        fd = os.dup(root_fd)
        for i, part in enumerate(parts):
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                inner = os.open(part, self._OPEN_DIR, dir_fd=fd)
            except OSError as err:
                os.close(fd)
                where = "/".join(parts[: i + 1])
                if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    refuse(f"{where!r} is a symlink, a file or missing, not a folder (links placed "
                           "by an archive are never followed)")
                raise
            os.close(fd)
            fd = inner
        return fd

    def _replace_file(self, parent_fd: int, leaf: str, existing, refuse) -> None:
        if existing is None:
            return
        if not stat.S_ISREG(existing.st_mode):
            refuse("it would replace a folder or a link")
        os.unlink(leaf, dir_fd=parent_fd)  # a new inode: never write into one a hard link shares

    def _write_file(self, parent_fd: int, leaf: str, existing, member: tarfile.TarInfo, refuse) -> None:
        self._replace_file(parent_fd, leaf, existing, refuse)
        source = self.tar.extractfile(member)
        opener = lambda name, flags: os.open(name, self._CREATE, 0o600, dir_fd=parent_fd)  # noqa: E731
        with open(leaf, "wb", opener=opener) as out:
            while chunk := source.read(CHUNK_BYTES):
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), _file_mode(member.mode))
            os.utime(out.fileno(), (member.mtime, member.mtime))

    def _hard_link(self, root_fd: int, parent_fd: int, leaf: str, existing, member: tarfile.TarInfo,
                   refuse) -> None:
        target = PurePosixPath(member.linkname)
        if str(target) not in self.files:
            refuse(f"hard link to {member.linkname!r}, which this extraction did not write")
        source_fd = self._open_folder(root_fd, target.parts[:-1], refuse, create=False)
        try:
            found = _lstat_at(target.parts[-1], source_fd)
            if found is None or not stat.S_ISREG(found.st_mode):
                refuse(f"hard link to {member.linkname!r}, which is not a regular file here")
            self._replace_file(parent_fd, leaf, existing, refuse)
            os.link(target.parts[-1], leaf, src_dir_fd=source_fd, dst_dir_fd=parent_fd,
                    follow_symlinks=False)
        finally:
            os.close(source_fd)

    def _symlink(self, parent_fd: int, leaf: str, existing, member: tarfile.TarInfo,
                 parent_parts: tuple[str, ...], refuse) -> None:
        link = member.linkname
        if existing is not None:
            if stat.S_ISLNK(existing.st_mode) and os.readlink(leaf, dir_fd=parent_fd) == link:
                return  # the same link, from an earlier (interrupted) extraction
            refuse("something of that name is already there (a link never replaces anything)")
        try:  # strict: every component must exist now, so what it resolves to cannot change later
            real = Path(os.path.realpath(os.path.join(self.root, *parent_parts, link), strict=True))
        except OSError as err:
            refuse(f"symlink to {link!r}, which does not resolve to anything in the destination "
                   f"({err.strerror})")
        if not real.is_relative_to(self.root) or STATE_DIR in real.relative_to(self.root).parts:
            refuse(f"symlink to {link!r}, which resolves to {real}, outside the destination")
        os.symlink(link, leaf, dir_fd=parent_fd)
