"""Issue 11: what survives a crash, what is refused before it costs a run, and what is never run.

Training runs here are a tiny random wav2vec2 on 30 spoken digits (about a second each); the
crash tests kill a subprocess with SIGKILL through tests/_fault_injection.py and resume in-process.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asr_sft.atomic import StorageError, write_text_atomic
from asr_sft.cli import main
from asr_sft.corpora.fsdd import collect_fsdd
from asr_sft.data.audio import write_audio
from asr_sft.data.manifest import make_row, read_manifest, write_manifest
from asr_sft.errors import ManifestError
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest
from asr_sft.models import ctc, whisper
from asr_sft.models.ctc import build_vocab, init_ctc_model, make_processor
from asr_sft.training import checkpoint as ckpt
from asr_sft.training import guard, loop
from asr_sft.training.checkpoint import CheckpointError, read_pointer
from asr_sft.training.config import load_config
from asr_sft.training.guard import RunError
from asr_sft.training.loop import train

from _fault_injection import assert_killed, run_training, start_training, wait_for_step
from _fixtures_models import clips_manifest, tiny_ctc_dir  # noqa: F401 (fixtures are used by name)
from conftest import tone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory, shared_data):
    """30 train and 12 dev spoken digits and a tiny random CTC model with their vocabulary."""
    root = tmp_path_factory.mktemp("digits")
    rows = collect_fsdd(shared_data / "fsdd")
    train_rows = [r for r in rows if r["split"] == "train"][::90]
    write_manifest(root / "train.jsonl", train_rows)
    write_manifest(root / "dev.jsonl", [r for r in rows if r["split"] == "test"][::25])
    init_ctc_model(root / "model", "tiny", vocab=build_vocab(r["text"] for r in train_rows), seed=0)
    return root


def overrides(digits: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.train_manifest={digits / 'train.jsonl'}", f"data.dev_manifest={digits / 'dev.jsonl'}",
            f"model.name_or_path={digits / 'model'}", f"train.output_dir={out}", "data.min_duration=0.1",
            "data.max_batch_seconds=4.0", "train.max_steps=6", "train.eval_every=2", "train.save_every=2",
            "train.log_every=1", "optim.warmup_steps=2", "optim.lr=1e-3", "train.tensorboard=false",
            "train.num_threads=1", "data.loader_threads=0", "train.device=cpu", "model.mask_time_length=2",
            *extra]


def config(digits: Path, out: Path, *extra: str):
    return load_config(None, overrides(digits, out, *extra))


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def whole_run(digits, tmp_path_factory) -> Path:
    """An uninterrupted 6-step run: what every interrupted-and-resumed run must equal, bit for bit."""
    out = tmp_path_factory.mktemp("whole") / "run"
    train(config(digits, out))
    return out


def fake_evaluation(monkeypatch, wers: list[float]) -> None:
    def evaluate(model, processor, rows, config):
        wer = wers.pop(0)
        return {"dev_wer": wer, "dev_cer": wer, "dev_utterances": len(rows), "normalizer": "fake"}
    monkeypatch.setattr(loop, "evaluate", evaluate)


# --- 2: resume never runs pickled code ------------------------------------------------------------
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_is_refused_and_never_executed(digits, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(digits, out, "train.max_steps=2"))
    latest = read_pointer(out, "latest")
    marker = tmp_path / "pwned"
    for name in (ckpt.STATE_FILE, ckpt.TENSORS_FILE):
        (latest / name).unlink()
    (latest / ckpt.LEGACY_STATE_FILE).write_bytes(pickle.dumps({"state": _Payload(marker)}))
    argv = ["train", *overrides(digits, out, "train.max_steps=2")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pickled trainer_state.pt" in err and "never loaded" in err and "Traceback" not in err
    assert not marker.exists()  # the payload never ran
    assert (latest / ckpt.LEGACY_STATE_FILE).exists()  # and nothing was overwritten


def test_no_torch_load_without_weights_only():
    calls = []
    for path in (REPO / "asr_sft").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start(): text.find(")", match.end()) + 1]
            calls.append((path, call))
            assert "weights_only=True" in call, f"{path}: {call}"
    assert all("weights_only=True" in c for _, c in calls)


def test_trainer_state_round_trips_exactly(tmp_path):
    import numpy as np

    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 2)}},
                           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "params": [0]}]},
             "best": float("inf"), "rng": {"python": (3, tuple(range(5)), None),
                                           "numpy": ("MT19937", np.arange(4, dtype=np.uint32), 2, 0, 0.0)}}
    ckpt.write_trainer_state(tmp_path, state)
    back = ckpt.load_trainer_state(tmp_path)
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert back["best"] == float("inf") and back["rng"]["python"] == state["rng"]["python"]
    assert back["rng"]["numpy"][1].dtype == np.uint32 and list(back["rng"]["numpy"][1]) == [0, 1, 2, 3]


# --- 4 + fault injection: a kill between the pointer writes never costs the best checkpoint -------
def test_kill_between_pointer_writes_keeps_the_best(digits, tmp_path, monkeypatch, whole_run):
    out = tmp_path / "run"
    args = overrides(digits, out, "train.keep_last=1")
    # Step 4 becomes the best (0.3 < 0.5); the kill lands after `latest` names it, before `best` does.
    assert_killed(run_training(args, fault="between-pointers@4", fake_wer=[0.5, 0.3]))
    assert read_pointer(out, "latest").name == "step-000004" and read_pointer(out, "best").name == "step-000002"
    fake_evaluation(monkeypatch, [0.4])  # step 6 is worse than step 4
    result = train(load_config(None, args))
    assert result.steps == 6 and result.best_checkpoint.name == "step-000004"
    kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert kept == ["step-000004", "step-000006"]  # pruning took step 2, never the best
    assert ckpt.read_metrics(out / "checkpoints" / "step-000004")["dev_wer"] == 0.3
    assert_same_weights(out / "checkpoints" / "step-000006", whole_run / "checkpoints" / "step-000006")


def test_kill_mid_save_resumes_exactly(digits, tmp_path, whole_run, caplog):
    out = tmp_path / "run"
    assert_killed(run_training(overrides(digits, out), fault="mid-save@4"))
    assert (out / "checkpoints" / ".step-000004.tmp").is_dir()  # the half-written checkpoint
    assert read_pointer(out, "latest").name == "step-000002"
    with caplog.at_level(logging.WARNING):
        result = train(config(digits, out))
    assert result.steps == 6 and not list((out / "checkpoints").glob(".*"))
    assert "leftover" in caplog.text
    assert_same_weights(read_pointer(out, "latest"), whole_run / "checkpoints" / "step-000006")


def test_best_survives_pruning_without_the_pointer(digits, tmp_path, monkeypatch):
    out = tmp_path / "run"
    fake_evaluation(monkeypatch, [0.5, 0.2, 0.6])
    train(config(digits, out, "train.keep_last=0"))
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-000004", "step-000006"]
    (out / "checkpoints" / "best").write_text("step-000006\n")  # a stale pointer ...
    assert ckpt.prune_checkpoints(out, keep_last=0) == []  # ... protects nothing that matters less
    assert ckpt.best_checkpoint(out).name == "step-000004"


# --- 5: SIGINT / SIGTERM save and stop ------------------------------------------------------------
def test_sigterm_saves_a_checkpoint_and_stops_cleanly(digits, tmp_path, whole_run):
    out = tmp_path / "run"
    args = overrides(digits, out, "train.max_steps=6", "train.save_every=100", "train.eval_every=100")
    proc = start_training(args)
    wait_for_step(out, 1, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and "SIGTERM received" in stderr
    stopped = json.loads(stdout.strip().splitlines()[-1])["steps"]
    assert 1 <= stopped < 6 and read_pointer(out, "latest").name == ckpt.step_name(stopped)
    result = train(load_config(None, args))  # resumes from the signal's checkpoint
    assert result.steps == 6 and result.stopped_by is None
    # eval/save cadence differs from whole_run, but evaluation does not touch the weights
    assert_same_weights(read_pointer(out, "latest"), whole_run / "checkpoints" / "step-000006")


def test_a_second_signal_aborts():
    run = guard.Run(Path("."), main=False)
    run.armed = True  # as the loop sets it once it trains
    run._install_handlers()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert run.stop_signal == signal.SIGINT  # the first one only asks
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        run._restore_handlers()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    early = guard.Run(Path("."), main=False)  # not armed yet: start-up checks, model loading
    early._install_handlers()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        early._restore_handlers()


# --- 6: one run per folder ------------------------------------------------------------------------
def test_a_folder_holding_another_run_is_refused(digits, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(digits, out, "train.max_steps=2"))
    before = (out / "train_config.json").read_text()
    with pytest.raises(RunError, match=r"holds checkpoints of another run \(optim.lr: 0.001 -> 0.0003\)"):
        train(config(digits, out, "train.max_steps=2", "optim.lr=3e-4"))
    other = tmp_path / "other.jsonl"
    shutil.copy(digits / "dev.jsonl", other)
    args = ["train", *overrides(digits, out, "train.max_steps=2"), f"data.train_manifest={other}"]
    assert main(args) == 2
    assert "data.train_manifest: content changed" in capsys.readouterr().err
    assert (out / "train_config.json").read_text() == before  # untouched
    # What may change on resume does not make it another run.
    assert train(config(digits, out, "train.max_steps=2", "train.log_every=5", "train.keep_last=4")).steps == 2
    # --resume-changed continues it with the new settings.
    assert main(["train", "--resume-changed", *overrides(digits, out, "train.max_steps=3", "optim.lr=3e-4")]) == 0
    assert read_pointer(out, "latest").name == "step-000003"


def test_two_runs_into_one_folder_at_once_are_impossible(digits, tmp_path):
    out = tmp_path / "run"
    cfg = config(digits, out, "train.max_steps=2")
    with guard.open_run(cfg):
        with pytest.raises(RunError, match=f"in use by another training run \\(pid {os.getpid()}\\)"):
            train(cfg)
    assert train(cfg).steps == 2  # released when the first run ends


# --- 7: a broken pointer or checkpoint falls back, or refuses -------------------------------------
def test_broken_latest_and_truncated_checkpoint_fall_back(digits, tmp_path, whole_run, caplog):
    out = tmp_path / "run"
    train(config(digits, out), stop_at=4)
    (out / "checkpoints" / "latest").write_text("garbage\n")
    weights_file = out / "checkpoints" / "step-000004" / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING):
        result = train(config(digits, out))
    assert "cannot resume from step-000004" in caplog.text
    assert "resuming from" in caplog.text and "step-000002" in caplog.text
    assert result.steps == 6
    assert_same_weights(read_pointer(out, "latest"), whole_run / "checkpoints" / "step-000006")


def test_no_loadable_checkpoint_refuses_instead_of_starting_over(digits, tmp_path):
    out = tmp_path / "run"
    train(config(digits, out, "train.max_steps=2"))
    state = out / "checkpoints" / "step-000002" / ckpt.TENSORS_FILE
    state.write_bytes(state.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="none of which loads; refusing to start over"):
        train(config(digits, out, "train.max_steps=2"))
    assert state.stat().st_size == 50  # left as it was, for a person to look at


# --- 8 + 10: bad input and impossible requests are refused at start -------------------------------
def test_train_checks_every_audio_file_at_start(digits, tmp_path, caplog):
    rows = read_manifest(digits / "train.jsonl")
    long = tmp_path / "long.flac"
    write_audio(long, tone(6.0), 16000)
    liar = {**rows[0], "id": "liar", "audio_filepath": str(long), "duration": 0.6}  # a "0.6 s" 6 s file
    bad = write_manifest(tmp_path / "train.jsonl", rows + [liar])
    out = tmp_path / "run"
    with pytest.raises(ManifestError, match=r"\(id liar\): duration 0.6 s, but the audio file holds 6.00 s"):
        train(config(digits, out, f"data.train_manifest={bad}", "train.max_steps=2"))
    assert not (out / "checkpoints").exists()
    with caplog.at_level(logging.WARNING):
        result = train(config(digits, out, f"data.train_manifest={bad}", "train.max_steps=2",
                              "data.skip_invalid=true"))
    assert result.steps == 2 and "skipped 1 invalid row" in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["train.eval_normalizer=shouting"], "train.eval_normalizer: unknown text normaliser 'shouting'"),
    (["train.device=cuda"], "train.device=cuda, but no CUDA GPU is available here"),
    (["train.precision=bf16"], "train.precision=bf16 (mixed precision) needs a CUDA GPU"),
    (["train.precision=fp16"], "train.precision=fp16 (mixed precision) needs a CUDA GPU"),
])
def test_impossible_requests_are_one_line_before_training(digits, tmp_path, capsys, extra, message):
    if extra == ["train.device=cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"  # overrides() ask for train.device=cpu
    assert main(["train", *overrides(digits, out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "checkpoints").exists()


# --- 9: text outside the vocabulary ---------------------------------------------------------------
def test_oov_rate_of_the_ctc_and_whisper_families():
    processor = make_processor(build_vocab(["HELLO WORLD"]))
    assert ctc.oov_rate(processor, ["HELLO WORLD"]) == 0.0
    assert ctc.oov_rate(processor, ["hello world"]) == 1.0
    assert ctc.oov_rate(processor, ["HELLO 世界"]) == pytest.approx(2 / 7)
    assert ctc.oov_rate(processor, ["HELLO 🙂"]) == pytest.approx(1 / 6)
    assert ctc.oov_characters(processor, ["hello"]) == ["l", "h", "e", "o"]
    assert whisper.oov_rate(None, ["anything 世界 🙂"]) == 0.0


def test_training_on_text_the_vocabulary_lacks_is_refused(digits, tmp_path, capsys):
    rows = read_manifest(digits / "train.jsonl")
    upper = write_manifest(tmp_path / "upper.jsonl", [{**r, "text": r["text"].upper()} for r in rows])
    out = tmp_path / "run"
    assert main(["train", *overrides(digits, out), f"data.train_manifest={upper}"]) == 2
    err = capsys.readouterr().err
    assert "100.0% of the training transcripts' characters are outside the model's vocabulary" in err
    assert "data.max_oov_rate=0.01" in err and not (out / "checkpoints").exists()
    result = train(config(digits, out, f"data.train_manifest={upper}", "data.max_oov_rate=1", "train.max_steps=1"))
    assert result.steps == 1  # told otherwise


# --- 11: decoding survives short clips and bad utterances -----------------------------------------
@pytest.fixture
def awkward_manifest(tmp_path, clips_manifest):  # noqa: F811
    """The real clips, plus a 0.01 s clip and a truncated FLAC."""
    rows = read_manifest(clips_manifest)
    write_audio(tmp_path / "blip.flac", tone(0.01), 16000)
    write_audio(tmp_path / "whole.flac", tone(2.0), 16000)
    data = (tmp_path / "whole.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 3])
    extra = [make_row(id="blip", audio_filepath=str(tmp_path / "blip.flac"), duration=0.01, text="A",
                      speaker="s", corpus="t", split="test", sampling_rate=16000),
             make_row(id="cut", audio_filepath=str(tmp_path / "cut.flac"), duration=2.0, text="B",
                      speaker="s", corpus="t", split="test", sampling_rate=16000)]
    return write_manifest(tmp_path / "m.jsonl", rows[:2] + extra + rows[2:])


def test_decode_pads_short_clips_and_reports_bad_utterances(tiny_ctc_dir, awkward_manifest, tmp_path, capsys):  # noqa: F811
    hyps = {}
    for batch_size in (1, 16):
        out = tmp_path / f"dec{batch_size}"
        assert main(["decode", "--model", str(tiny_ctc_dir), "--manifest", str(awkward_manifest), "--out",
                     str(out), "--batch-size", str(batch_size), "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        assert "1 utterance(s) could not be decoded" in err and "cut" in err
        rows = [json.loads(line) for line in (out / "hyps.jsonl").read_text().splitlines()]
        hyps[batch_size] = {r["id"]: r["hyp"] for r in rows}
        summary = json.loads((out / "decode.json").read_text())
        assert [e["id"] for e in summary["errors"]] == ["cut"] and "cannot decode" in summary["errors"][0]["error"]
        assert hyps[batch_size]["cut"] == "" and len(rows) == 7
    assert hyps[1] == hyps[16]  # the 0.01 s clip decodes the same alone and in a batch


def test_a_failing_batch_is_retried_one_by_one(tiny_ctc_dir, clips_manifest, tmp_path, monkeypatch):  # noqa: F811
    from asr_sft.evaluation import decode

    real = decode.transcribe_batch

    def flaky(model, processor, waves, options):
        if len(waves) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(model, processor, waves, options)

    options = DecodeOptions(batch_size=4, device="cpu", progress=False)
    expected = [json.loads(line)["hyp"] for line in
                decode_manifest(tiny_ctc_dir, clips_manifest, tmp_path / "a", options).read_text().splitlines()]
    monkeypatch.setattr(decode, "transcribe_batch", flaky)
    got = [json.loads(line)["hyp"] for line in
           decode_manifest(tiny_ctc_dir, clips_manifest, tmp_path / "b", options).read_text().splitlines()]
    assert got == expected and json.loads((tmp_path / "b" / "decode.json").read_text())["errors"] == []


# --- 12: a full disk says so, and leftovers are cleaned -------------------------------------------
def test_atomic_write_on_a_full_disk_says_so(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match=f"no space left on {tmp_path} \\(writing x.txt\\)"):
        write_text_atomic(tmp_path / "x.txt", "data")
    assert list(tmp_path.iterdir()) == []


_FULL_DISK_SAVE = """
import sys
from asr_sft.atomic import StorageError
from asr_sft.models.ctc import load_ctc_model
from asr_sft.training import checkpoint as ckpt
model, processor = load_ctc_model(sys.argv[1])
try:
    ckpt.save_checkpoint(sys.argv[2], 7, model, processor, {"state": {"step": 7}}, {}, {})
except StorageError as err:
    print(err)
    sys.exit(3)
"""


def test_checkpoint_save_on_a_really_full_disk(tiny_ctc_dir, tmp_path):  # noqa: F811
    """A 64 KiB tmpfs (mounted in a private mount namespace) fills up during the save."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace here (unshare -rm)")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} && "
              f"{sys.executable} -c '{_FULL_DISK_SAVE}' {tiny_ctc_dir} {disk / 'run'}")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"no space left on {disk / 'run' / 'checkpoints'} (saving checkpoint step-000007)")


def test_leftovers_of_a_killed_save_are_cleaned_at_start(digits, tmp_path):
    out = tmp_path / "run"
    train(config(digits, out, "train.max_steps=2"))
    root = out / "checkpoints"
    (root / ".step-000004.tmp").mkdir()
    (root / ".step-000004.tmp" / "model.safetensors").write_bytes(b"half")
    (root / ".latest.abc123.part").write_text("step")
    os.replace(root / "step-000002", root / ".step-000002.old")  # killed while re-saving step 2
    assert ckpt.clean_leftovers(out) == [root / ".latest.abc123.part", root / ".step-000004.tmp"]
    assert sorted(p.name for p in root.iterdir()) == ["best", "latest", "step-000002"]
