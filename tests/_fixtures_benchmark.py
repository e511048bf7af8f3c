"""Fixtures for benchmark tests: two test sets of real clips (speaker and accent fields) and
hypothesis files for them in our JSONL, Kaldi text and sclite trn formats."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from asr_sft.data.audio import audio_info
from asr_sft.data.manifest import make_row, write_manifest
from asr_sft.evaluation.hypotheses import trn_id
from conftest import SHARED_DATA

CLIPS_DIR = SHARED_DATA / "real-clips"
# test set -> [(path under real-clips/, speaker, accent, gender)]
TESTSETS = {
    "clean": [
        ("kennethwang_librispeech/LibriSpeech/test-clean/1089/134686/1089-134686-0001.flac", "1089", "us", "m"),
        ("kennethwang_librispeech/LibriSpeech/test-clean/1089/134691/1089-134691-0000.flac", "1089", "us", "m"),
        ("kennethwang_librispeech/LibriSpeech/test-clean/1089/134691/1089-134691-0001.flac", "1089", "us", "m"),
        ("cmusphinx_pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav", "austen", "gb", "f"),
        ("cmusphinx_pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav", "austen", "gb", "f"),
        ("cmusphinx_pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav", "austen", "gb", "f"),
    ],
    "accented": [
        ("coqui_tts_ljspeech/tests/data/ljspeech/wavs/LJ001-0002.wav", "lj", "us", "f"),
        ("coqui_tts_ljspeech/tests/data/ljspeech/wavs/LJ001-0004.wav", "lj", "us", "f"),
        ("coqui_tts_ljspeech/tests/data/ljspeech/wavs/LJ001-0008.wav", "lj", "us", "f"),
        ("mozilla_deepspeech/data/smoke_test/LDC93S1.wav", "timit", "us", "f"),
        ("mozilla_deepspeech/native_client/dotnet/DeepSpeechConsole/arctic_a0024.wav", "arctic", "scottish", "m"),
        ("openai_whisper/tests/jfk.flac", "jfk", "us", "m"),
    ],
}


def transcripts() -> dict[str, str]:
    lines = (CLIPS_DIR / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[4] for line in lines}


def testset_rows(name: str) -> list[dict]:
    text = transcripts()
    rows = []
    for rel, speaker, accent, gender in TESTSETS[name]:
        path = CLIPS_DIR / rel
        info = audio_info(path)
        rows.append(make_row(id=f"{name}-{Path(rel).stem}", audio_filepath=str(path), duration=info.duration,
                             text=text[rel], speaker=speaker, accent=accent, gender=gender,
                             corpus="real-clips", split="test", sampling_rate=info.sample_rate))
    return rows


def corrupt(text: str, rng: random.Random, rate: float) -> str:
    """Drop, double or replace about `rate` of the words (the edits vary by seed)."""
    out = []
    for word in text.split():
        roll = rng.random()
        if roll < rate / 3:
            continue
        out += [word, "uh"] if roll < 2 * rate / 3 else ["wug"] if roll < rate else [word]
    return " ".join(out)


@pytest.fixture(scope="session")
def bench_inputs(tmp_path_factory) -> dict:
    """{"manifests": {test set: path}, "rows": {test set: rows}, and the hypothesis files:
    "kaldi" (one file, both test sets), "trn" ({test set: file}, speaker-utterance ids) and
    "jsonl" ({test set: file})}."""
    root = tmp_path_factory.mktemp("bench_inputs")
    rows = {name: testset_rows(name) for name in TESTSETS}
    manifests = {name: write_manifest(root / f"{name}.jsonl", r) for name, r in rows.items()}
    rng = random.Random(0)
    kaldi = root / "kaldi_text"
    kaldi.write_text("".join(f"{r['id']} {corrupt(r['text'], rng, 0.3).lower()}\n"
                             for name in TESTSETS for r in rows[name]), encoding="utf-8")
    trn, jsonl = {}, {}
    for name, r in rows.items():
        trn[name] = root / f"sys_{name}.trn"
        trn[name].write_text("".join(f"{corrupt(row['text'], rng, 0.15)} ({trn_id(row['id'], row['speaker'])})\n"
                                     for row in reversed(r)), encoding="utf-8")
        jsonl[name] = root / f"sys_{name}.jsonl"
        jsonl[name].write_text("".join(json.dumps({"id": row["id"], "ref": row["text"], "hyp": row["text"]}) + "\n"
                                       for row in r), encoding="utf-8")
    return {"manifests": manifests, "rows": rows, "kaldi": kaldi, "trn": trn, "jsonl": jsonl}
