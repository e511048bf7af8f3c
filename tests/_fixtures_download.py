"""Fixtures for download tests: a local HTTP file server with failure knobs, and tiny archives.

The server listens on 127.0.0.1 on an ephemeral port and serves in-memory files by URL path. It
honours `Range: bytes=N-` (206 + Content-Range, 416 past the end) and can, once each: cut the
connection after N body bytes, answer 500, or stall longer than a client's timeout. It records every
request's path and Range header.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from asr_sft.data.audio import write_audio
from asr_sft.corpora.librispeech import ArchiveSpec

SAMPLE_RATE = 16000  # Hz


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path ("/x.tar.gz") -> body
    requests: list[dict] = field(default_factory=list)  # {"path", "range"} per request, in order
    cut_after: int | None = None  # once: send this many body bytes, then close the connection
    fail_500: int = 0  # answer this many requests with HTTP 500 before serving normally
    stall_s: float = 0.0  # once: after the headers, wait this long before sending the body
    ignore_range: bool = False  # always answer 200 with the whole file
    url: str = ""  # http://127.0.0.1:<port>


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        state: ServerState = self.server.state
        rng = self.headers.get("Range")
        state.requests.append({"path": self.path, "range": rng})
        if state.fail_500 > 0:
            state.fail_500 -= 1
            return self.send_error(500, "injected failure")
        body = state.files.get(self.path)
        if body is None:
            return self.send_error(404)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and not state.ignore_range:
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.stall_s:
            stall, state.stall_s = state.stall_s, 0.0
            time.sleep(stall)
        if state.cut_after is not None:
            payload, state.cut_after = payload[: state.cut_after], None
        self.wfile.write(payload)  # HTTP/1.0: the connection closes after this

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left makes the stalled handler's write fail: expected


@pytest.fixture
def file_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ServerState(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield server.state
    server.shutdown()
    server.server_close()


# --- archives -------------------------------------------------------------------------------------
SPEAKERS_TXT = (";ID  |SEX| SUBSET           |MINUTES| NAME\n"
                "19   | F | {split:<16} | 0.01 | Tester\n")
TRANSCRIPTS = {"19-198-0000": "HELLO WORLD", "19-198-0001": "A SECOND TINY UTTERANCE"}


def build_librispeech_tree(root: Path, split: str) -> Path:
    """Write root/LibriSpeech/{SPEAKERS.TXT, <split>/19/198/...} with two short FLAC files."""
    chapter = root / "LibriSpeech" / split / "19" / "198"
    chapter.mkdir(parents=True)
    for i, utt in enumerate(TRANSCRIPTS):
        t = torch.arange(int(0.3 * SAMPLE_RATE)) / SAMPLE_RATE
        write_audio(chapter / f"{utt}.flac", 0.3 * torch.sin(2 * torch.pi * (300 + 100 * i) * t),
                    SAMPLE_RATE)
    (chapter / "19-198.trans.txt").write_text("".join(f"{u} {t}\n" for u, t in TRANSCRIPTS.items()))
    (root / "LibriSpeech" / "SPEAKERS.TXT").write_text(SPEAKERS_TXT.format(split=split))
    return root / "LibriSpeech"


def tar_gz_bytes(folder: Path) -> bytes:
    """A .tar.gz of `folder`, with `folder.name` as its top-level member."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def spec_for(split: str, data: bytes) -> ArchiveSpec:
    """An ArchiveSpec for `data` served as <split>.tar.gz, with its true digests."""
    return ArchiveSpec(split, f"{split}.tar.gz", "1K", 0.0, len(TRANSCRIPTS),
                       hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def librispeech_archive(tmp_path_factory) -> tuple[bytes, ArchiveSpec]:
    """(bytes of a LibriSpeech-layout dev-clean.tar.gz, its spec with true digests)."""
    data = tar_gz_bytes(build_librispeech_tree(tmp_path_factory.mktemp("src"), "dev-clean"))
    return data, spec_for("dev-clean", data)


def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """An uncompressed tar of hand-made members (for members `tar.add` would never produce)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()
