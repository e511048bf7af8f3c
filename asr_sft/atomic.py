"""Atomic file writes: a crash or an error never leaves a partial file under the final name.

A write that fails because the disk (or a quota) is full raises StorageError, "no space left on
<folder>", instead of whatever the writing library says (torch's zip writer says "unexpected pos
617920 vs 617808"; safetensors "IoError(Os { code: 28, ... })").
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from asr_sft.errors import AsrSftError, ModelError

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How libraries that do not raise OSError word a full disk (Rust's io::Error, libsndfile, ...).
_FULL_TEXT = ("no space left on device", "os error 28", "storagefull", "disk quota exceeded",
              "os error 122")


class StorageError(AsrSftError):
    """The disk or quota holding a path is full; the message names the folder and what failed."""


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` (or an exception it was raised from) says the disk or a quota is full."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if any(text in str(err).lower() for text in _FULL_TEXT):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing ancestor), if known."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full_error(path: str | Path, what: str) -> StorageError:
    """A StorageError saying there is no space left on `path` while doing `what`."""
    free = free_bytes(path)
    left = "" if free is None else f"; {free / 2**20:.1f} MiB free now"
    return StorageError(f"no space left on {path} ({what}){left}: free some space and run again")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced, given the permissions a new
    file would get (mkstemp makes it private), and renamed over `path`. On error it is removed."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(path.parent, f"writing {path.name}") from err
        raise
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err) and not isinstance(err, StorageError):
            raise disk_full_error(path.parent, f"writing {path.name}") from err
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def staged_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside `out_dir` that replaces out_dir when the block succeeds and is
    removed when it fails, so a half-written model folder never sits under out_dir's name."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ModelError(f"{out_dir} already exists and is not empty (overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".part"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err) and not isinstance(err, StorageError):
            raise disk_full_error(out_dir.parent, f"writing {out_dir.name}") from err
        raise
    old = None
    if out_dir.exists():  # os.replace cannot replace a non-empty folder: move it aside first
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
