"""Downloads and extraction, offline, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import http.server
import io
import os
import shutil
import tarfile
import threading
from pathlib import Path

import pytest

from asr_sft import cli

from asr_sft.data import download
from asr_sft.data.audio import audio_info
from asr_sft.corpora import librispeech
from asr_sft.data.download import (
    MIRROR_ENV,
    DownloadOptions,
    download_file,
    extract_archive,
    extraction_marker,
    is_verified,
    resolve_base_url,
)
from asr_sft.atomic import StorageError
from asr_sft.corpora.librispeech import download_librispeech
from asr_sft.errors import ArchiveError, DownloadError

from _fixtures_download import (  # noqa: F401 (fixtures are used by name)
    TRANSCRIPTS,
    file_server,
    librispeech_archive,
    spec_for,
    tar_gz_bytes,
    tar_with,
)

FAST = DownloadOptions(attempts=3, backoff_s=0.01, timeout_s=5.0, progress=False)
UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens, so a request here fails


@pytest.fixture
def served(file_server, librispeech_archive, monkeypatch):
    """The test archive served as /dev-clean.tar.gz, and SPLITS holding only its true digests."""
    data, spec = librispeech_archive
    file_server.files["/dev-clean.tar.gz"] = data
    monkeypatch.setattr(librispeech, "SPLITS", {"dev-clean": spec})
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return file_server, data, spec


def fetch(server, data, tmp_path, **kwargs):
    """download_file of the served archive into tmp_path/out/, with its true digests."""
    dest = tmp_path / "out" / "dev-clean.tar.gz"
    digests = dict(md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest())
    digests.update(kwargs)
    return download_file(f"{server.url}/dev-clean.tar.gz", dest, options=FAST, **digests)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- download_file --------------------------------------------------------------------------------
def test_download_verify_extract_librispeech_layout(served, tmp_path):
    server, data, _ = served
    [result] = download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    assert (result.downloaded, result.extracted) == (True, True)
    assert (tmp_path / "dev-clean.tar.gz").read_bytes() == data
    marker = (tmp_path / ".asr_sft" / "dev-clean.tar.gz.verified").read_text()
    assert hashlib.sha256(data).hexdigest() in marker and hashlib.md5(data).hexdigest() in marker
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "19" / "198"
    assert result.root == tmp_path / "LibriSpeech" / "dev-clean"
    for utt in TRANSCRIPTS:
        info = audio_info(chapter / f"{utt}.flac")
        assert (info.sample_rate, info.frames) == (16000, 4800)
    assert (chapter / "19-198.trans.txt").read_text().splitlines()[0] == "19-198-0000 HELLO WORLD"
    assert "dev-clean" in (tmp_path / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    assert not list(tmp_path.glob("*.part"))
    assert [r["path"] for r in server.requests] == ["/dev-clean.tar.gz"]


def test_resume_after_cut_connection(served, tmp_path):
    server, data, _ = served
    server.cut_after = len(data) // 3
    path = fetch(server, data, tmp_path)
    assert path.read_bytes() == data
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(data) // 3}-"]


def test_resume_part_file_left_by_an_earlier_run(served, tmp_path):
    server, data, _ = served
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dev-clean.tar.gz.part").write_bytes(data[:1000])
    assert fetch(server, data, tmp_path).read_bytes() == data
    assert [r["range"] for r in server.requests] == ["bytes=1000-"]


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    server, data, _ = served
    server.ignore_range, server.cut_after = True, len(data) // 2
    path = fetch(server, data, tmp_path)
    assert path.read_bytes() == data  # appending the 200 body to the kept half would not verify
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(data) // 2}-"]


def test_part_already_complete_is_verified_without_a_body(served, tmp_path):
    server, data, _ = served
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dev-clean.tar.gz.part").write_bytes(data)
    assert fetch(server, data, tmp_path).read_bytes() == data
    assert [r["range"] for r in server.requests] == [f"bytes={len(data)}-"]  # answered 416


@pytest.mark.parametrize("wrong", [{"md5": "0" * 32}, {"sha256": "f" * 64},
                                   {"md5": "0" * 32, "sha256": "f" * 64}])
def test_checksum_mismatch_refused_and_nothing_left(served, tmp_path, wrong):
    server, data, _ = served
    with pytest.raises(DownloadError) as err:
        fetch(server, data, tmp_path, **wrong)
    message = str(err.value)
    assert "dev-clean.tar.gz" in message and "checksum mismatch" in message
    for algorithm, expected in wrong.items():
        actual = hashlib.new(algorithm, data).hexdigest()
        assert f"{algorithm} expected {expected}, got {actual}" in message
    assert leftovers(tmp_path / "out") == []  # no final file, no part, no marker


def test_only_one_digest_needed_and_at_least_one_required(served, tmp_path):
    server, data, _ = served
    path = tmp_path / "x.tar.gz"
    download_file(f"{server.url}/dev-clean.tar.gz", path, md5=hashlib.md5(data).hexdigest(),
                  options=FAST)
    assert path.read_bytes() == data
    with pytest.raises(ValueError):
        download_file(f"{server.url}/dev-clean.tar.gz", tmp_path / "y", options=FAST)


def test_retry_after_500(served, tmp_path):
    server, data, _ = served
    server.fail_500 = 1
    assert fetch(server, data, tmp_path).read_bytes() == data
    assert len(server.requests) == 2


def test_retry_after_timeout_resumes(served, tmp_path):
    server, data, _ = served
    server.stall_s = 2.0
    options = DownloadOptions(attempts=3, backoff_s=0.01, timeout_s=0.5, progress=False)
    dest = tmp_path / "t.tar.gz"
    download_file(f"{server.url}/dev-clean.tar.gz", dest, sha256=hashlib.sha256(data).hexdigest(),
                  options=options)
    assert dest.read_bytes() == data and len(server.requests) == 2


def test_attempts_are_bounded_and_part_is_kept(served, tmp_path, monkeypatch):
    server, data, _ = served
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dev-clean.tar.gz.part").write_bytes(data[:500])
    server.fail_500 = 100
    waits = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    with pytest.raises(DownloadError, match="gave up after 3 attempts.*HTTP 500.*500 bytes kept"):
        fetch(server, data, tmp_path)
    assert len(server.requests) == 3 and waits == [0.01, 0.02]  # exponential backoff
    assert leftovers(tmp_path / "out") == ["dev-clean.tar.gz.part"]
    assert (tmp_path / "out" / "dev-clean.tar.gz.part").read_bytes() == data[:500]


def test_client_error_is_not_retried(served, tmp_path):
    server, _, _ = served
    with pytest.raises(DownloadError, match=r"/missing.tar.gz: HTTP 404"):
        download_file(f"{server.url}/missing.tar.gz", tmp_path / "m", md5="0" * 32, options=FAST)
    assert len(server.requests) == 1


def test_connection_refused_is_retried_then_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with pytest.raises(DownloadError, match="gave up after 3 attempts"):
        download_file(f"{UNREACHABLE}/a.tar.gz", tmp_path / "a", md5="0" * 32, options=FAST)
    assert leftovers(tmp_path) == []


# --- extraction -----------------------------------------------------------------------------------
def _file(name, content=b"x"):
    return tarfile.TarInfo(name), content


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


MALICIOUS = {
    "absolute path": lambda out: [_file(str(out / "evil.txt"))],
    "dotdot escape": lambda out: [_file("LibriSpeech/../../outside/evil.txt")],
    "symlink outside": lambda out: [_link("LibriSpeech/link", "../../outside", tarfile.SYMTYPE),
                                    _file("LibriSpeech/link/evil.txt")],
    "absolute symlink": lambda out: [_link("LibriSpeech/link", str(out), tarfile.SYMTYPE)],
    "hardlink outside": lambda out: [_link("LibriSpeech/hard", "../outside/victim.txt",
                                           tarfile.LNKTYPE)],
    "character device": lambda out: [_special("LibriSpeech/null", tarfile.CHRTYPE)],
    "block device": lambda out: [_special("LibriSpeech/disk", tarfile.BLKTYPE)],
    "fifo": lambda out: [_special("LibriSpeech/pipe", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", MALICIOUS)
def test_malicious_members_refused_before_anything_is_written(tmp_path, case):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    bad = MALICIOUS[case](outside)
    archive = tmp_path / "bad.tar"
    archive.write_bytes(tar_with([_file("LibriSpeech/ok.txt", b"fine")] + bad))
    with pytest.raises(ArchiveError) as err:
        extract_archive(archive, dest)
    assert str(archive) in str(err.value) and repr(bad[0][0].name) in str(err.value)
    assert list(dest.rglob("*")) == []  # not even the good member: all are checked first
    assert leftovers(outside) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "keep me"
    assert not extraction_marker(archive, dest).exists()


def test_links_inside_the_destination_are_allowed(tmp_path):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(tar_with([_file("LibriSpeech/a/x.txt", b"data"),
                                  _link("LibriSpeech/b", "a/x.txt", tarfile.SYMTYPE),
                                  _link("LibriSpeech/c", "LibriSpeech/a/x.txt", tarfile.LNKTYPE)]))
    assert extract_archive(archive, tmp_path / "dest")
    root = tmp_path / "dest" / "LibriSpeech"
    assert (root / "b").is_symlink() and (root / "b").read_text() == "data"
    assert (root / "c").read_text() == "data"


def test_extraction_marker_skips_and_partial_extraction_is_redone(tmp_path):
    src = tmp_path / "src" / "LibriSpeech"
    (src / "dev-clean").mkdir(parents=True)
    (src / "dev-clean" / "a.txt").write_text("A")
    (src / "dev-clean" / "b.txt").write_text("B")
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(tar_gz_bytes(src))
    dest = tmp_path / "dest"
    b = dest / "LibriSpeech" / "dev-clean" / "b.txt"
    assert extract_archive(archive, dest) is True and b.read_text() == "B"
    b.unlink()
    assert extract_archive(archive, dest) is False and not b.exists()  # marker: skipped
    extraction_marker(archive, dest).unlink()  # as if the first extraction had been cut short
    assert extract_archive(archive, dest) is True and b.read_text() == "B"


def test_corrupt_archive_is_an_archive_error(tmp_path, librispeech_archive):
    data, _ = librispeech_archive
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="dev-clean.tar.gz: cannot extract"):
        extract_archive(archive, tmp_path / "dest")
    assert not extraction_marker(archive, tmp_path / "dest").exists()


# --- download_librispeech: skipping, splits, mirrors ----------------------------------------------
def test_rerun_skips_without_a_request(served, tmp_path):
    server, _, _ = served
    download_librispeech(["dev-clean"], tmp_path, mirror=server.url, options=FAST)
    [again] = download_librispeech(["dev-clean"], tmp_path, mirror=server.url, options=FAST)
    assert (again.downloaded, again.extracted) == (False, False)
    assert "skipped (already extracted)" in again.describe()
    assert len(server.requests) == 1


def test_verified_marker_spares_rehashing_until_the_file_changes(served, tmp_path, monkeypatch):
    server, data, spec = served
    download_librispeech("dev-clean", tmp_path, mirror=server.url, extract=False, options=FAST)
    hashed = []
    real_digests = download.file_digests
    monkeypatch.setattr(download, "file_digests",
                        lambda p, *a: hashed.append(p) or real_digests(p, *a))
    archive = tmp_path / "dev-clean.tar.gz"
    assert is_verified(archive, md5=spec.md5, sha256=spec.sha256) and hashed == []
    archive.write_bytes(data + b"extra")  # the size no longer matches the marker: hash again
    assert not is_verified(archive, md5=spec.md5, sha256=spec.sha256) and hashed == [archive]


def test_verified_archive_is_not_fetched_again_only_extracted(served, tmp_path):
    server, data, _ = served
    (tmp_path / "dev-clean.tar.gz").write_bytes(data)  # placed by hand: no marker yet
    [result] = download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    assert (result.downloaded, result.extracted) == (False, True)
    assert server.requests == [] and (tmp_path / ".asr_sft" / "dev-clean.tar.gz.verified").exists()
    [again] = download_librispeech("dev-clean", tmp_path, mirror=server.url, extract=False,
                                   options=FAST)
    assert (again.downloaded, again.root) == (False, None) and server.requests == []


def test_bad_archive_under_final_name_is_replaced(served, tmp_path):
    server, data, spec = served
    (tmp_path / "dev-clean.tar.gz").write_bytes(b"truncated junk")
    assert not is_verified(tmp_path / "dev-clean.tar.gz", md5=spec.md5, sha256=spec.sha256)
    [result] = download_librispeech("dev-clean", tmp_path, mirror=server.url, extract=False,
                                    options=FAST)
    assert result.downloaded and (tmp_path / "dev-clean.tar.gz").read_bytes() == data


def test_unknown_split_lists_the_valid_ones(served, tmp_path):
    with pytest.raises(DownloadError, match="unknown LibriSpeech split.*dev-dirty.*valid: dev-cl"):
        download_librispeech("dev-clean,dev-dirty", tmp_path, mirror=served[0].url)
    assert served[0].requests == []  # refused before any download, even of the valid split


def test_mirror_from_environment(served, tmp_path, monkeypatch):
    server, data, _ = served
    server.files = {"/mirror/dev-clean.tar.gz": data}
    monkeypatch.setenv(MIRROR_ENV, f"{server.url}/mirror/")
    [result] = download_librispeech("dev-clean", tmp_path, options=FAST)
    assert result.downloaded
    assert [r["path"] for r in server.requests] == ["/mirror/dev-clean.tar.gz"]


def test_mirror_argument_beats_environment(served, tmp_path, monkeypatch):
    server, _, _ = served
    monkeypatch.setenv(MIRROR_ENV, UNREACHABLE)
    [result] = download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    assert result.downloaded and len(server.requests) == 1


@pytest.mark.parametrize("mirror, env, expected", [
    (None, None, librispeech.BASE_URL),
    (None, "", librispeech.BASE_URL),
    (None, "http://env.example/x/", "http://env.example/x"),
    ("http://arg.example", "http://env.example", "http://arg.example"),
])
def test_base_url_precedence(monkeypatch, mirror, env, expected):
    if env is None:
        monkeypatch.delenv(MIRROR_ENV, raising=False)
    else:
        monkeypatch.setenv(MIRROR_ENV, env)
    assert resolve_base_url(librispeech.BASE_URL, mirror) == expected


# --- CLI ------------------------------------------------------------------------------------------
def test_cli_downloads_then_skips(served, tmp_path, capsys, monkeypatch):
    server, data, _ = served
    monkeypatch.setenv(MIRROR_ENV, UNREACHABLE)  # --mirror must win over the environment
    argv = ["download", "librispeech", "--splits", "dev-clean", "--dest", str(tmp_path),
            "--mirror", server.url]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("dev-clean: downloaded, verified, extracted -> ")
    assert out.strip().endswith(str(tmp_path / "LibriSpeech" / "dev-clean"))
    assert (tmp_path / "dev-clean.tar.gz").read_bytes() == data
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("dev-clean: skipped (already extracted)")
    assert len(server.requests) == 1


def test_cli_mirror_from_environment_and_no_extract(served, tmp_path, capsys, monkeypatch):
    server, _, _ = served
    monkeypatch.setenv(MIRROR_ENV, server.url)
    argv = ["download", "librispeech", "--splits", "dev-clean", "--dest", str(tmp_path),
            "--no-extract"]
    assert cli.main(argv) == 0
    archive = tmp_path / "dev-clean.tar.gz"
    assert capsys.readouterr().out.strip() == f"dev-clean: downloaded, verified -> {archive}"
    assert not (tmp_path / "LibriSpeech").exists() and len(server.requests) == 1


def test_cli_reports_errors_with_status_2(served, tmp_path, capsys):
    server, _, _ = served
    argv = ["download", "librispeech", "--splits", "nope", "--dest", str(tmp_path), "--mirror",
            server.url]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "asr-sft download: error: unknown LibriSpeech split(s): nope; valid: dev-clean" in err


# --- integration with the synthetic corpus --------------------------------------------------------
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthetic_split_archive_downloads_and_extracts(file_server, tmp_path, monkeypatch):
    from asr_sft.corpora.synthetic.pack import pack_split
    from asr_sft.corpora.synthetic.synth import SynthOptions, synthesize_corpus

    options = SynthOptions(speakers_per_accent=1, utterances_per_speaker=2,
                           splits=(("dev-clean", 1),))
    synthesize_corpus(tmp_path / "corpus", options)
    packed = pack_split(tmp_path / "corpus", "dev-clean", tmp_path / "packed")
    file_server.files["/synth/dev-clean.tar.gz"] = packed.path.read_bytes()
    spec = librispeech.ArchiveSpec("dev-clean", "dev-clean.tar.gz", "100K", 0.0, 2, packed.md5,
                                   packed.sha256)
    monkeypatch.setattr(librispeech, "SPLITS", {"dev-clean": spec})
    [result] = download_librispeech("dev-clean", tmp_path / "data",
                                    mirror=f"{file_server.url}/synth", options=FAST)
    assert (result.downloaded, result.extracted) == (True, True)
    source = tmp_path / "corpus" / "LibriSpeech"
    wanted = sorted(p.relative_to(source) for p in (source / "dev-clean").rglob("*") if p.is_file())
    got = sorted(p.relative_to(result.root.parent) for p in result.root.rglob("*") if p.is_file())
    assert got == wanted and len([p for p in got if p.suffix == ".flac"]) == 2
    for rel in got:
        assert (result.root.parent / rel).read_bytes() == (source / rel).read_bytes()
    speakers = (result.root.parent / "SPEAKERS.TXT").read_bytes()
    assert speakers == (source / "SPEAKERS.TXT").read_bytes()


# --- issue 11: extraction can never write outside the destination ---------------------------------
def cve_2025_4517_archive(victim_name: str) -> bytes:
    """The CVE-2025-4517 proof of concept (deep folders past PATH_MAX, a symlink chain whose '..'
    resolves outside, a hard link through it, then a file written into that link, and a new file
    through the escaping link); tarfile's own "data" filter lets it through on Python 3.11.7."""
    comp, steps, path, members = "d" * 247, "abcdefghijklmnop", "", []
    for step in steps:
        members.append((_dir(f"{path}{comp}"), None))
        members.append(_link(f"{path}{step}", comp, tarfile.SYMTYPE))
        path += comp + "/"
    deep_link = "/".join(steps) + "/" + "l" * 254
    members.append(_link(deep_link, "/".join([".."] * len(steps)), tarfile.SYMTYPE))
    members.append(_link("escape", deep_link + "/..", tarfile.SYMTYPE))
    members.append(_link("flaglink", f"escape/{victim_name}", tarfile.LNKTYPE))
    members.append(_file("flaglink", b"overwritten\n"))
    members.append(_file("escape/created.txt", b"new\n"))
    return tar_with(members)


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def test_cve_2025_4517_archive_is_refused_by_the_cli(file_server, tmp_path, monkeypatch, capsys):
    data = cve_2025_4517_archive("victim.txt")
    (tmp_path / "victim.txt").write_text("keep me\n")
    file_server.files["/dev-clean.tar.gz"] = data
    monkeypatch.setattr(librispeech, "SPLITS", {"dev-clean": spec_for("dev-clean", data)})
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    before = leftovers(tmp_path)
    argv = ["download", "librispeech", "--splits", "dev-clean", "--dest", str(tmp_path / "dest"),
            "--mirror", file_server.url]
    assert cli.main(argv) == 2
    assert "refusing member" in capsys.readouterr().err
    assert (tmp_path / "victim.txt").read_text() == "keep me\n"  # not overwritten
    assert leftovers(tmp_path) == sorted(set(before) | {"dest"})  # nothing new beside dest
    assert not extraction_marker(tmp_path / "dest" / "dev-clean.tar.gz", tmp_path / "dest").exists()


def test_an_archive_of_dot_extracts(tmp_path):
    archive = tmp_path / "dot.tar"
    archive.write_bytes(tar_with([(_dir("."), None), (_dir("./LibriSpeech"), None),
                                  _file("./LibriSpeech/a.txt", b"A")]))
    assert extract_archive(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "LibriSpeech" / "a.txt").read_bytes() == b"A"
    assert extract_archive(archive, tmp_path / "dest") is False  # its marker lists LibriSpeech/a.txt


def test_a_file_is_never_written_through_a_hard_link(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_with([_file("LibriSpeech/a.txt", b"A"),
                                  _link("LibriSpeech/h", "LibriSpeech/a.txt", tarfile.LNKTYPE),
                                  _file("LibriSpeech/h", b"EVIL")]))
    assert extract_archive(archive, tmp_path / "dest")
    root = tmp_path / "dest" / "LibriSpeech"
    assert (root / "a.txt").read_bytes() == b"A" and (root / "h").read_bytes() == b"EVIL"


ON_DISK = {
    # Lexically inside (LibriSpeech/outside), really tmp/outside once p and e (both '.') resolve.
    "symlink chain out through '..'": [_link("LibriSpeech/p", ".", tarfile.SYMTYPE),
                                       _link("LibriSpeech/e", ".", tarfile.SYMTYPE),
                                       _link("LibriSpeech/s", "p/e/../../outside", tarfile.SYMTYPE)],
    "dangling symlink": [_link("LibriSpeech/d", "later/x.txt", tarfile.SYMTYPE)],
    "a link replacing a link": [_dir("LibriSpeech/real"), _link("LibriSpeech/real/up", "..", tarfile.SYMTYPE),
                                _link("LibriSpeech/real/up", "../..", tarfile.SYMTYPE)],
    "a file written through a symlink": [_dir("LibriSpeech/real"), _link("LibriSpeech/ln", "real", tarfile.SYMTYPE),
                                         _file("LibriSpeech/ln/x.txt", b"x")],
    "hard link to a file not in the archive": [_link("LibriSpeech/h", "LibriSpeech/elsewhere.txt",
                                                     tarfile.LNKTYPE)],
}


@pytest.mark.parametrize("case", ON_DISK)
def test_links_are_checked_against_what_is_on_disk(tmp_path, case):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    archive = tmp_path / "bad.tar"
    archive.write_bytes(tar_with([_file("LibriSpeech/ok.txt", b"fine")]
                                 + [(m, None) if isinstance(m, tarfile.TarInfo) else m for m in ON_DISK[case]]))
    with pytest.raises(ArchiveError, match="refusing member"):
        extract_archive(archive, dest)
    for path in dest.rglob("*"):  # nothing left on disk resolves outside the destination
        assert Path(os.path.realpath(path)).is_relative_to(os.path.realpath(dest)), path
    assert leftovers(outside) == [] and not extraction_marker(archive, dest).exists()


@pytest.mark.parametrize("name, why", [
    ("LibriSpeech/" + "n" * 300 + ".txt", "NAME_MAX"),
    ("/".join(["p" * 250] * 17) + "/x.txt", "PATH_MAX"),
])
def test_overlong_paths_are_refused(tmp_path, name, why):
    archive = tmp_path / "long.tar"
    archive.write_bytes(tar_with([_file(name, b"x")]))
    with pytest.raises(ArchiveError, match=why):
        extract_archive(archive, tmp_path / "dest")
    assert list((tmp_path / "dest").rglob("*")) == []


# --- issue 11: markers are out of an archive's reach and bind what was checked ---------------------
@pytest.fixture
def two_splits(file_server, librispeech_archive, tmp_path_factory, monkeypatch):
    """dev-clean served with planted extras (see the test), test-clean served genuine."""
    from _fixtures_download import build_librispeech_tree

    test_data = tar_gz_bytes(build_librispeech_tree(tmp_path_factory.mktemp("tc"), "test-clean"))
    file_server.files["/test-clean.tar.gz"] = test_data
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return file_server, test_data


def _serve_dev_clean(server, monkeypatch, members, test_data):
    data = tar_with(members)
    server.files["/dev-clean.tar.gz"] = data
    monkeypatch.setattr(librispeech, "SPLITS", {"dev-clean": spec_for("dev-clean", data),
                                                "test-clean": spec_for("test-clean", test_data)})


def test_an_archive_cannot_mark_another_split_done(two_splits, tmp_path, monkeypatch):
    server, test_data = two_splits
    planted = [_file("LibriSpeech/dev-clean/x.txt", b"x"), _file("LibriSpeech/test-clean/fake.txt", b"fake"),
               _file("test-clean.tar.gz.extracted", b"done"), _file("test-clean.tar.gz.verified", b"size 1")]
    _serve_dev_clean(server, monkeypatch, planted, test_data)
    download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    [result] = download_librispeech("test-clean", tmp_path, mirror=server.url, options=FAST)
    assert (result.downloaded, result.extracted) == (True, True)
    assert [r["path"] for r in server.requests] == ["/dev-clean.tar.gz", "/test-clean.tar.gz"]
    assert (tmp_path / "LibriSpeech" / "test-clean" / "19" / "198" / "19-198.trans.txt").is_file()


def test_an_archive_cannot_write_into_the_state_folder(two_splits, tmp_path, monkeypatch):
    server, test_data = two_splits
    planted = [_file("LibriSpeech/dev-clean/x.txt", b"x"), _file(".asr_sft/test-clean.tar.gz.extracted", b"{}")]
    _serve_dev_clean(server, monkeypatch, planted, test_data)
    with pytest.raises(ArchiveError, match="refusing member '.asr_sft/test-clean.tar.gz.extracted'"):
        download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    assert not (tmp_path / ".asr_sft" / "test-clean.tar.gz.extracted").exists()


def test_a_stale_extraction_marker_extracts_again(served, tmp_path):
    server, _, _ = served
    download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    shutil.rmtree(tmp_path / "LibriSpeech")
    [again] = download_librispeech("dev-clean", tmp_path, mirror=server.url, options=FAST)
    assert (again.downloaded, again.extracted) == (False, True) and len(server.requests) == 1
    assert (again.root / "19" / "198" / "19-198.trans.txt").is_file()


def test_the_extraction_marker_binds_the_archive_digest(tmp_path, librispeech_archive):
    data, spec = librispeech_archive
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(data)
    assert extract_archive(archive, tmp_path, {"sha256": spec.sha256}) is True
    assert extract_archive(archive, tmp_path, {"sha256": spec.sha256}) is False
    assert extract_archive(archive, tmp_path, {"sha256": "0" * 64}) is True  # another archive


def test_a_same_size_rewrite_is_hashed_again(served, tmp_path):
    server, data, spec = served
    download_librispeech("dev-clean", tmp_path, mirror=server.url, extract=False, options=FAST)
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(bytes(len(data)))  # same size, other bytes (as an extraction could write)
    assert not is_verified(archive, md5=spec.md5, sha256=spec.sha256)


# --- issue 11: downloads are size-capped ------------------------------------------------------------
class _RawHandler(http.server.BaseHTTPRequestHandler):
    """Answers 200 without Content-Length: `body` bytes, or an endless body when body is None."""

    body: bytes | None = None

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.end_headers()
        try:
            if self.body is not None:
                self.wfile.write(self.body)
            else:
                while True:
                    self.wfile.write(b"\0" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def raw_server():
    servers = []

    def start(body):
        handler = type("Handler", (_RawHandler,), {"body": body})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/x.tar.gz"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_an_endless_body_is_cut_off_at_the_cap(raw_server, tmp_path):
    url = raw_server(None)
    with pytest.raises(DownloadError, match=r"longer than expected \(at most 1048576 bytes\)"):
        download_file(url, tmp_path / "x.tar.gz", md5="0" * 32, options=FAST, max_bytes=1 << 20)
    assert leftovers(tmp_path) == []


def test_a_body_longer_than_the_exact_size_is_an_error(raw_server, tmp_path):
    data = b"y" * 5000
    url = raw_server(data + b"trailing")
    with pytest.raises(DownloadError, match=r"longer than expected \(exactly 5000 bytes\)"):
        download_file(url, tmp_path / "x.tar.gz", md5=hashlib.md5(data).hexdigest(), size=len(data),
                      options=FAST)
    assert leftovers(tmp_path) == []


def test_an_announced_length_past_the_size_is_refused(served, tmp_path):
    server, data, _ = served
    with pytest.raises(DownloadError, match=f"announces {len(data)} bytes, expected exactly {len(data) - 1}"):
        fetch(server, data, tmp_path, size=len(data) - 1)
    assert leftovers(tmp_path / "out") == [] and len(server.requests) == 1
    with pytest.raises(DownloadError, match=f"checksum mismatch.*{len(data)} bytes, expected exactly {len(data) + 1}"):
        fetch(server, data, tmp_path, size=len(data) + 1)  # shorter than it should be: fetched, refused
    assert leftovers(tmp_path / "out") == []


def test_librispeech_specs_carry_exact_sizes():
    for spec in librispeech.SPLITS.values():
        assert isinstance(spec.size, int) and spec.size > 300_000_000, spec.name


# --- issue 11: a full disk says so -------------------------------------------------------------------
class _FullDisk(io.RawIOBase):
    def __init__(self, *args, **kwargs):
        pass

    def writable(self):
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_downloading_says_so(served, tmp_path, monkeypatch, capsys):
    server, data, _ = served
    monkeypatch.setattr(download, "open", lambda *a, **k: _FullDisk(), raising=False)
    monkeypatch.setenv(MIRROR_ENV, server.url)
    argv = ["download", "librispeech", "--splits", "dev-clean", "--dest", str(tmp_path), "--no-extract"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"no space left on {tmp_path}" in err and "Traceback" not in err


def test_a_download_the_disk_cannot_hold_is_refused_up_front(served, tmp_path, monkeypatch):
    server, data, _ = served
    monkeypatch.setattr(download, "free_bytes", lambda path: 100)
    with pytest.raises(StorageError, match=f"no space left on .*needs {len(data)} more bytes, 100 are free"):
        fetch(server, data, tmp_path)
