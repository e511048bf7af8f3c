"""The built-in base model ships inside the package, loads offline and really recognises the speech
it was trained for (espeak-ng en-us, unseen voices and sentences)."""

from pathlib import Path

import pytest
import torch

from asr_sft.evaluation.decode import DecodeOptions, decode_rows
from asr_sft.errors import ModelError
from asr_sft.data.manifest import read_manifest
from asr_sft.models.resolve import resolve_model
from asr_sft.models.ctc import load_ctc_model
from asr_sft.evaluation.scoring import score_texts
from asr_sft.corpora.synthetic.synth import SynthOptions, synthesize_corpus

BUILTIN = "builtin:wav2vec2-small-en-us"


def test_builtin_model_is_package_data():
    folder = Path(resolve_model(BUILTIN))
    assert folder.parts[-3:] == ("asr_sft", "assets", "base_model")
    assert (folder / "model.safetensors").stat().st_size < 16_000_000  # fp16, a few MB
    assert "trained **from\nscratch**" in (folder / "README.md").read_text()
    with pytest.raises(ModelError, match="unknown built-in model"):
        resolve_model("builtin:nope")


def test_builtin_model_recognises_unseen_en_us_speech(tmp_path):
    model, processor = load_ctc_model(BUILTIN)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # Voices from another seed; sentences after the 6,000 the model was trained on.
    options = SynthOptions(accents=("en-us",), speakers_per_accent=2, utterances_per_speaker=6,
                           splits=(("test", 2),), seed=21, sentence_seed=1, sentence_offset=9000)
    corpus = synthesize_corpus(tmp_path / "c", options)
    rows = read_manifest(corpus.manifests["test"])
    hyps = decode_rows(model, processor, rows, DecodeOptions(progress=False))
    summary = score_texts([r["text"] for r in rows], hyps, normalizer="librispeech").summary()
    # Its card reports ~9% CER on held-out speakers; a broken export or loader gives ~100%.
    assert summary.cer < 0.25, (summary.cer, hyps[:2])
