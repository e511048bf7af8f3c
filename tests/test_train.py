"""The training loop: exact resume, DDP agreement, train/decode WER parity, config handling."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asr_sft.training.checkpoint import read_metrics, read_pointer
from asr_sft.training.config import ConfigError, load_config
from asr_sft.corpora.fsdd import collect_fsdd
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest
from asr_sft.data.manifest import write_manifest
from asr_sft.models.ctc import build_vocab, init_ctc_model
from asr_sft.evaluation.scoring import score_texts
from asr_sft.models.ctc import count_infeasible, output_frames
from asr_sft.training.loop import lr_factor, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits(tmp_path_factory, shared_data):
    """A small real-speech corpus (spoken digits, several speakers) and a tiny random CTC model."""
    root = tmp_path_factory.mktemp("digits")
    rows = collect_fsdd(shared_data / "fsdd")
    train_rows = [r for r in rows if r["split"] == "train"][::90]  # 30 utterances
    dev_rows = [r for r in rows if r["split"] == "test"][::25]  # 12 utterances
    write_manifest(root / "train.jsonl", train_rows)
    write_manifest(root / "dev.jsonl", dev_rows)
    init_ctc_model(root / "model", "tiny", vocab=build_vocab(r["text"] for r in train_rows), seed=0)
    return root


def _config(digits: Path, out: Path, *extra: str):
    return load_config(None, [
        f"data.train_manifest={digits / 'train.jsonl'}", f"data.dev_manifest={digits / 'dev.jsonl'}",
        f"model.name_or_path={digits / 'model'}", f"train.output_dir={out}", "data.min_duration=0.1",
        "data.max_batch_seconds=4.0", "train.max_steps=6", "train.eval_every=3", "train.log_every=1",
        "optim.warmup_steps=2", "optim.lr=1e-3", "optim.grad_accum=2", "train.tensorboard=false",
        "model.mask_time_prob=0.2", "model.mask_time_length=2", "model.dropout=0.1", *extra])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(read_pointer(run, "latest") / "model.safetensors")


def test_resume_is_exact(digits, tmp_path):
    whole = train(_config(digits, tmp_path / "whole"))
    assert whole.steps == 6
    # The resumed run also loads its batches inline instead of in background threads: same batches.
    first = train(_config(digits, tmp_path / "resumed", "data.loader_threads=0"), stop_at=4)
    assert first.steps == 4 and read_pointer(tmp_path / "resumed", "latest").name == "step-000004"
    second = train(_config(digits, tmp_path / "resumed", "data.loader_threads=0"))
    assert second.steps == 6
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # The run really trained: weights moved away from the initial model.
    init = load_file(digits / "model" / "model.safetensors")
    assert any(not torch.equal(init[n], a[n]) for n in a if n in init)
    log = [json.loads(line) for line in (tmp_path / "whole" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all(0.0 <= r["padding_fraction"] < 1.0 for r in log if "loss" in r)


def test_train_wer_equals_decode_and_score(digits, tmp_path):
    result = train(_config(digits, tmp_path / "run", "train.max_steps=3"))
    best = result.best_checkpoint
    metrics = read_metrics(best)
    hyps = decode_manifest(best, digits / "dev.jsonl", tmp_path / "decode", DecodeOptions(progress=False))
    rows = [json.loads(line) for line in hyps.read_text().splitlines()]
    summary = score_texts([r["ref"] for r in rows], [r["hyp"] for r in rows],
                          normalizer="librispeech").summary()
    assert summary.wer == metrics["dev_wer"] and summary.cer == metrics["dev_cer"]
    saved = json.loads((best / "train_config.json").read_text())
    assert saved["train"]["max_steps"] == 3  # the resolved config travels with the checkpoint


def test_keep_last_and_best_survive_pruning(digits, tmp_path):
    out = tmp_path / "run"
    train(_config(digits, out, "train.eval_every=2", "train.keep_last=1"))
    kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    best = read_pointer(out, "best").name
    assert "step-000006" in kept and best in kept and len(kept) <= 2
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_two_process_ddp_replicas_agree(digits, tmp_path):
    out = tmp_path / "ddp"
    overrides = [f"data.train_manifest={digits / 'train.jsonl'}", f"data.dev_manifest={digits / 'dev.jsonl'}",
                 f"model.name_or_path={digits / 'model'}", f"train.output_dir={out}",
                 "data.min_duration=0.1", "data.max_batch_seconds=4.0", "train.max_steps=2",
                 "train.eval_every=2", "optim.warmup_steps=1", "train.device=cpu",
                 "train.tensorboard=false", "model.layerdrop=0.1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "asr_sft.cli", "train", *overrides],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("all 2 DDP replicas hold identical weights") == 2
    assert "model.layerdrop=0.1 ignored under DDP" in proc.stderr
    assert read_pointer(out, "latest").name == "step-000002"


def test_infeasible_utterances_are_counted(digits):
    from asr_sft.models.ctc import load_ctc_model

    model, processor = load_ctc_model(str(digits / "model"))
    mask = torch.ones(2, 1600, dtype=torch.long)  # 0.1 s -> 5 frames at 50 frames/s
    labels = torch.tensor([[5, 6, -100, -100, -100, -100, -100], [5, 5, 5, 6, 7, 8, 9]])
    assert count_infeasible(model.config, mask.sum(-1), labels) == 1
    # our output-length rule is the model's own
    lengths = torch.tensor([400, 1600, 16000, 16001, 33333])
    assert torch.equal(output_frames(model.config, lengths), model._get_feat_extract_output_lengths(lengths))


def test_lr_schedule_shapes():
    cfg = load_config(None, ["optim.warmup_steps=10", "train.max_steps=110"])
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.5)
    assert lr_factor(110, cfg) == pytest.approx(0.0)
    cos = load_config(None, ["optim.warmup_steps=10", "train.max_steps=110", "optim.schedule=cosine"])
    assert lr_factor(60, cos) == pytest.approx(0.5)
    assert lr_factor(35, cos) == pytest.approx(0.5 * (1 + 0.7071067811865476), rel=1e-6)


def test_config_rejects_unknown_and_mistyped(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lrr'\]"):
        load_config(None, ["optim.lrr=1e-3"])
    with pytest.raises(ConfigError, match="expected float"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(None, ["optimiser.lr=1"])
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        load_config(None, ["train.precision=fp8"])
    toml = tmp_path / "c.toml"
    toml.write_text('[optim]\nlr = 3e-4\nbetas = [0.9, 0.99]\n[train]\nmax_steps = 7\n')
    cfg = load_config(toml, ["train.max_steps=9"])
    assert (cfg.optim.lr, cfg.optim.betas, cfg.train.max_steps) == (3e-4, (0.9, 0.99), 9)
    toml.write_text('[optim]\nwarmup = 3\n')
    with pytest.raises(ConfigError, match="c.toml: \\[optim\\]: unknown key"):
        load_config(toml)


def test_best_pointer_works_as_a_model_argument(digits, tmp_path):
    """`checkpoints/best` is a pointer file; every model argument accepts it as the checkpoint."""
    from asr_sft.models.resolve import resolve_model
    from asr_sft.models.ctc import load_ctc_model

    out = tmp_path / "run"
    train(_config(digits, out, "train.max_steps=2", "train.eval_every=2"))
    pointer = out / "checkpoints" / "best"
    assert resolve_model(pointer) == str(read_pointer(out, "best"))
    model, _ = load_ctc_model(pointer)
    assert model.lm_head.out_features > 0


def test_augmented_training_resumes_exactly_and_changes_what_the_model_sees(digits, tmp_path):
    noisy = ('augment.noise=["white"]', "augment.noise_prob=1.0", "augment.snr_db=[0.0, 5.0]",
             "augment.speeds=[0.9, 1.1]", "train.max_steps=4", "train.eval_every=4")
    whole = train(_config(digits, tmp_path / "whole", *noisy))
    assert whole.steps == 4
    train(_config(digits, tmp_path / "resumed", *noisy, "data.loader_threads=0"), stop_at=2)
    train(_config(digits, tmp_path / "resumed", *noisy, "data.loader_threads=0"))
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[n], b[n]) for n in a)  # draws keyed by (seed, id, epoch): resume is exact
    train(_config(digits, tmp_path / "clean", "train.max_steps=4", "train.eval_every=4"))
    clean = _weights(tmp_path / "clean")
    assert any(not torch.equal(a[n], clean[n]) for n in a)
    saved = json.loads((tmp_path / "whole" / "train_config.json").read_text())["augment"]
    assert saved["noise"] == ["white"] and saved["speeds"] == [0.9, 1.1]


def test_augment_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="augment.snr_db"):
        load_config(None, ["augment.snr_db=[10.0, 5.0]"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["augment.snr=5"])
    assert load_config(None, ['augment.noise=["pink", "white"]']).augment.noise == ("pink", "white")


def test_ctc_text_case_and_punctuation_map_transcripts_to_the_vocabulary(digits, tmp_path):
    from asr_sft.data.manifest import read_manifest
    from asr_sft.errors import ManifestError
    from asr_sft.models.ctc import map_text

    assert map_text("Don't stop, Mr. Smith!", "upper", True) == "DON'T STOP MR SMITH"
    assert map_text("Zero.", "keep", False) == "Zero."
    rows = read_manifest(digits / "train.jsonl")
    cased = [{**r, "text": r["text"].capitalize() + "!"} for r in rows]  # "Zero!" under a lower-case vocabulary
    write_manifest(tmp_path / "cased.jsonl", cased)
    args = (f"data.train_manifest={tmp_path / 'cased.jsonl'}", "train.max_steps=1", "train.eval_every=1")
    with pytest.raises(ManifestError, match="outside the model's vocabulary"):
        train(_config(digits, tmp_path / "as-written", *args))
    result = train(_config(digits, tmp_path / "mapped", *args, "model.text_case=lower", "model.drop_punctuation=true"))
    assert result.steps == 1
    with pytest.raises(ConfigError, match="model.text_case"):
        _config(digits, tmp_path / "bad", "model.text_case=title")
