import json

import pytest
from transformers import Wav2Vec2Config

from asr_sft.cli import main
from asr_sft.evaluation.decode import DecodeOptions, decode_batch, decode_manifest, decode_rows, load_model, make_batches
from asr_sft.errors import ModelError
from asr_sft.data.features import load_row
from asr_sft.data.manifest import read_manifest
from asr_sft.models import model_family

from _fixtures_models import (  # noqa: F401 (fixtures are used by name)
    WHISPER_TOKENIZER, clips_manifest, tiny_ctc_dir, tiny_whisper_dir,
)

CPU = dict(device="cpu", progress=False)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_hyps(hyps_path, manifest):
    """hyps.jsonl lists every manifest row in order, with its reference and metadata."""
    rows = read_manifest(manifest)
    hyps = read_jsonl(hyps_path)
    assert [h["id"] for h in hyps] == [r["id"] for r in rows]
    for h, r in zip(hyps, rows):
        assert list(h)[:3] == ["id", "ref", "hyp"] and isinstance(h["hyp"], str)
        assert (h["ref"], h["speaker"], h["accent"], h["corpus"], h["duration"]) == \
               (r["text"], r["speaker"], r["accent"], r["corpus"], r["duration"])
    return rows, hyps


@pytest.mark.parametrize("sizes, batch_size, max_seconds, expected", [
    ([1.0, 3.0, 2.0, 5.0], 2, None, [[3, 1], [2, 0]]),  # longest first
    ([1.0, 3.0, 2.0, 5.0], 16, 6.0, [[3], [1, 2], [0]]),  # 2 x 3 s fits 6 s, a third would not
    ([2.0, 2.0, 2.0], 16, 1.0, [[0], [1], [2]]),  # too long for the budget alone: never dropped
])
def test_make_batches(sizes, batch_size, max_seconds, expected):
    rows = [{"duration": d} for d in sizes]
    options = DecodeOptions(batch_size=batch_size, max_batch_seconds=max_seconds)
    assert make_batches(rows, options) == expected


def test_decode_manifest_ctc(tiny_ctc_dir, clips_manifest, tmp_path):
    options = DecodeOptions(batch_size=2, **CPU)
    hyps_path = decode_manifest(tiny_ctc_dir, clips_manifest, tmp_path / "dec", options)
    assert hyps_path == tmp_path / "dec" / "hyps.jsonl"
    rows, hyps = check_hyps(hyps_path, clips_manifest)
    assert any(h["hyp"] for h in hyps)  # a random model still emits characters
    summary = json.loads((tmp_path / "dec" / "decode.json").read_text())
    assert summary["family"] == "ctc" and summary["utterances"] == len(rows)
    assert summary["audio_seconds"] == pytest.approx(sum(r["duration"] for r in rows), abs=0.01)
    assert summary["decode_seconds"] > 0 and summary["load_seconds"] > 0
    assert summary["rtfx"] == pytest.approx(summary["audio_seconds"] / summary["decode_seconds"])
    assert not list((tmp_path / "dec").glob("*.part"))

    # The training loop's path (decode_batch on the model in memory) gives the same text, whatever
    # the batching: here every utterance alone, and all of them in one batch in manifest order.
    model, processor = load_model(tiny_ctc_dir, DecodeOptions(**CPU))
    waves = [load_row(r) for r in rows]
    assert [decode_batch(model, processor, [w])[0] for w in waves] == [h["hyp"] for h in hyps]
    assert decode_batch(model, processor, waves) == [h["hyp"] for h in hyps]
    assert decode_rows(model, processor, rows, DecodeOptions(batch_size=3, **CPU)) == [h["hyp"] for h in hyps]


def test_decode_manifest_whisper(tiny_whisper_dir, clips_manifest, tmp_path):
    options = DecodeOptions(batch_size=3, max_new_tokens=4, **CPU)
    hyps_path = decode_manifest(tiny_whisper_dir, clips_manifest, tmp_path / "dec", options)
    rows, hyps = check_hyps(hyps_path, clips_manifest)
    assert json.loads((tmp_path / "dec" / "decode.json").read_text())["family"] == "whisper"
    model, processor = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    waves = [load_row(r) for r in rows]
    assert decode_batch(model, processor, waves, options) == [h["hyp"] for h in hyps]


def test_decode_rows_restores_training_mode(tiny_ctc_dir, clips_manifest):
    model, processor = load_model(tiny_ctc_dir, DecodeOptions(**CPU))
    model.train()
    rows = read_manifest(clips_manifest)[:2]
    assert len(decode_rows(model, processor, rows, DecodeOptions(**CPU))) == 2
    assert model.training


def test_unknown_model_family(tmp_path):
    config = Wav2Vec2Config(num_hidden_layers=1)
    config.architectures = ["Wav2Vec2Model"]  # an encoder without a CTC head
    config.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="neither a CTC model"):
        model_family(str(tmp_path))
    with pytest.raises(ModelError, match="cannot read a model config"):
        model_family(str(tmp_path / "missing"))


def test_cli_init_model_and_decode(clips_manifest, tmp_path, capsys):
    w2v, wsp = tmp_path / "w2v", tmp_path / "whisper"
    assert main(["init-model", "--arch", "wav2vec2", "--size", "tiny", "--out", str(w2v),
                 "--vocab-from", str(clips_manifest), "--seed", "1"]) == 0
    assert main(["init-model", "--arch", "whisper", "--out", str(wsp), "--tokenizer", str(WHISPER_TOKENIZER)]) == 0
    assert (model_family(str(w2v)), model_family(str(wsp))) == ("ctc", "whisper")
    vocab = json.loads((w2v / "vocab.json").read_text())
    assert {"S", "h", "H", ","} <= set(vocab)  # characters of the manifest's transcripts

    assert main(["decode", "--model", str(w2v), "--manifest", str(clips_manifest), "--out",
                 str(tmp_path / "dec"), "--batch-size", "4", "--device", "cpu"]) == 0
    assert "RTFx" in capsys.readouterr().out
    check_hyps(tmp_path / "dec" / "hyps.jsonl", clips_manifest)


@pytest.mark.parametrize("args, message", [
    (["--arch", "wav2vec2"], "--vocab-from"),
    (["--arch", "whisper"], "--tokenizer"),
])
def test_cli_init_model_errors(tmp_path, capsys, args, message):
    assert main(["init-model", *args, "--out", str(tmp_path / "m")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_cli_init_model_refuses_existing_folder(tiny_ctc_dir, clips_manifest, capsys):
    assert main(["init-model", "--arch", "wav2vec2", "--out", str(tiny_ctc_dir),
                 "--vocab-from", str(clips_manifest)]) == 2
    assert "not empty" in capsys.readouterr().err
