"""Fixtures for model and decoding tests: tiny random checkpoints (built once per session) and a
manifest of a few real clips at mixed sample rates, listed in an order that is not sorted by length."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr_sft.data.audio import audio_info
from asr_sft.data.manifest import make_row, write_manifest
from asr_sft.models.ctc import init_ctc_model
from asr_sft.models.whisper import init_whisper_model
from conftest import SHARED_DATA

WHISPER_TOKENIZER = SHARED_DATA / "whisper-assets" / "hf-tokenizer"
# (path under real-clips/, transcript): 16, 22.05 and 44.1 kHz, one stereo; 1.8-11 s
CLIPS = [
    ("mozilla_deepspeech/data/smoke_test/LDC93S1.wav", "She had your dark suit in greasy wash water all year."),
    ("openai_whisper/tests/jfk.flac", "And so, my fellow Americans, ask not what your country can do for you, "
                                      "ask what you can do for your country."),
    ("coqui_tts_ljspeech/tests/data/ljspeech/wavs/LJ001-0008.wav", "has never been surpassed."),
    ("kennethwang_librispeech/LibriSpeech/test-clean/1089/134691/1089-134691-0000.flac", "HE COULD WAIT NO LONGER"),
    ("coqui_tts_ljspeech/tests/data/ljspeech/wavs/LJ001-0002.wav", "in being comparatively modern."),
]
_cache: dict[str, Path] = {}


def clip_rows() -> list[dict]:
    rows = []
    for i, (rel, text) in enumerate(CLIPS):
        path = SHARED_DATA / "real-clips" / rel
        info = audio_info(path)
        rows.append(make_row(id=f"clip{i}-{path.stem}", audio_filepath=str(path), duration=info.duration,
                             text=text, speaker=f"spk{i % 2}", accent="us" if i % 2 else "gb",
                             corpus="real-clips", split="test", sampling_rate=info.sample_rate))
    return rows


@pytest.fixture(scope="session")
def clips_manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("manifest") / "clips.jsonl", clip_rows())


def _once(name: str, tmp_path_factory, build) -> Path:
    if name not in _cache:  # test modules import these fixtures separately: build each model once
        _cache[name] = build(tmp_path_factory.mktemp(name) / "model")
    return _cache[name]


@pytest.fixture(scope="session")
def tiny_ctc_dir(tmp_path_factory) -> Path:
    texts = [text for _, text in CLIPS]
    return _once("ctc", tmp_path_factory, lambda out: init_ctc_model(out, "tiny", texts=texts, seed=0))


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    return _once("whisper", tmp_path_factory,
                 lambda out: init_whisper_model(out, "tiny", tokenizer_dir=WHISPER_TOKENIZER, seed=0))
