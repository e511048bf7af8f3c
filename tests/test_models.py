import json
import math

import pytest
import torch

from asr_sft.models.options import DecodeOptions
from transformers import (
    AutoModelForCTC,
    Wav2Vec2Config,
    Wav2Vec2ForCTC,
    Wav2Vec2Processor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from asr_sft.errors import ManifestError, ModelError
from asr_sft.models import CTC, WHISPER, model_family
from asr_sft.models import ctc
from asr_sft.models import whisper as wh

from _fixtures_models import tiny_ctc_dir, tiny_whisper_dir  # noqa: F401 (fixtures are used by name)


# --- vocabulary -----------------------------------------------------------------------------------
@pytest.mark.parametrize("texts, chars", [
    (["ba ab"], ["a", "b"]),
    (["HELLO WORLD", "hello"], ["D", "E", "H", "L", "O", "R", "W", "e", "h", "l", "o"]),  # case kept
    (["it's  a\ttest\n"], ["'", "a", "e", "i", "s", "t"]),  # any whitespace is a word boundary
    (["über straße"], ["b", "e", "r", "s", "t", "a", "ß", "ü"]),
])
def test_build_vocab(texts, chars):
    vocab = ctc.build_vocab(texts)
    assert list(vocab.items())[:3] == [("<pad>", 0), ("<unk>", 1), ("|", 2)]
    assert list(vocab)[3:] == sorted(chars)
    assert list(vocab.values()) == list(range(len(vocab)))
    assert ctc.build_vocab(reversed(texts)) == vocab  # independent of transcript order


@pytest.mark.parametrize("texts", [["a|b"], ["", "  "]])
def test_build_vocab_rejects(texts):
    with pytest.raises(ManifestError):
        ctc.build_vocab(texts)


def test_make_processor_saves_and_encodes(tmp_path):
    vocab = ctc.build_vocab(["ab ca"])
    ctc.make_processor(vocab, tmp_path)
    processor = Wav2Vec2Processor.from_pretrained(tmp_path)
    assert processor.tokenizer.get_vocab() == vocab and len(processor.tokenizer) == len(vocab)
    assert processor.tokenizer("ab ca").input_ids == [3, 4, 2, 5, 3]
    assert processor.tokenizer("abz").input_ids == [3, 4, 1]  # unknown character -> <unk>
    fe = processor.feature_extractor
    assert (fe.sampling_rate, fe.do_normalize, fe.return_attention_mask) == (16000, True, True)


def test_ctc_make_labels_pads_with_minus_100():
    processor = ctc.make_processor(ctc.build_vocab(["ab c"]))
    labels = ctc.make_labels(processor, ["ab c", " c "])
    assert labels.tolist() == [[3, 4, 2, 5], [5, -100, -100, -100]]


# --- CTC models -----------------------------------------------------------------------------------
def test_init_ctc_model_loads_with_from_pretrained(tiny_ctc_dir):
    assert (tiny_ctc_dir / "model.safetensors").is_file()
    assert not list(tiny_ctc_dir.parent.glob(".*.part"))  # no staging folder left behind
    model = AutoModelForCTC.from_pretrained(tiny_ctc_dir)
    processor = Wav2Vec2Processor.from_pretrained(tiny_ctc_dir)
    assert isinstance(model, Wav2Vec2ForCTC)
    assert model.config.vocab_size == len(processor.tokenizer) == model.lm_head.out_features
    assert model.config.pad_token_id == processor.tokenizer.pad_token_id == 0
    assert 5e4 < sum(p.numel() for p in model.parameters()) < 1e6
    assert model_family(str(tiny_ctc_dir)) == CTC


def test_init_ctc_model_refuses_to_overwrite(tiny_ctc_dir):
    with pytest.raises(ModelError, match="not empty"):
        ctc.init_ctc_model(tiny_ctc_dir, "tiny", texts=["a b"])
    with pytest.raises(ModelError, match="size"):
        ctc.init_ctc_model(tiny_ctc_dir.parent / "x", "huge", texts=["a b"])


@pytest.mark.parametrize("size, low, high", [("tiny", 5e4, 1e6), ("small", 4e6, 7e6)])
def test_ctc_sizes(size, low, high):
    config = Wav2Vec2Config(vocab_size=30, **ctc.SIZES[size])
    assert math.prod(config.conv_stride) == 320  # 16 kHz -> 50 frames/s, like wav2vec2
    assert low < sum(p.numel() for p in Wav2Vec2ForCTC(config).parameters()) < high
    assert math.prod(ctc.SIZES["base"]["conv_stride"]) == 320


def test_load_ctc_model_reinitialises_head_for_new_vocab(tiny_ctc_dir, caplog):
    original = AutoModelForCTC.from_pretrained(tiny_ctc_dir).state_dict()
    vocab = ctc.build_vocab(["xyz"])
    with caplog.at_level("INFO", logger="asr_sft.models.ctc"):
        model, processor = ctc.load_ctc_model(tiny_ctc_dir, vocab=vocab)
    assert "re-initialised" in caplog.text
    assert model.lm_head.out_features == model.config.vocab_size == len(vocab) == 6
    assert processor.tokenizer.get_vocab() == vocab and model.config.pad_token_id == 0
    for name, tensor in model.state_dict().items():
        if not name.startswith("lm_head."):
            assert torch.equal(tensor, original[name]), name
    labels = ctc.make_labels(processor, ["xy z"])
    loss = model(torch.randn(1, 16000), labels=labels).loss
    assert torch.isfinite(loss)


def test_load_ctc_model_keeps_head_for_same_vocab(tiny_ctc_dir):
    original = AutoModelForCTC.from_pretrained(tiny_ctc_dir)
    vocab = json.loads((tiny_ctc_dir / "vocab.json").read_text())
    model, _ = ctc.load_ctc_model(tiny_ctc_dir, vocab=vocab)
    assert torch.equal(model.lm_head.weight, original.lm_head.weight)


def test_load_ctc_model_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="no model there"):
        ctc.load_ctc_model(tmp_path, vocab=ctc.build_vocab(["ab"]))


def test_load_ctc_model_without_tokenizer(tiny_ctc_dir, tmp_path):
    AutoModelForCTC.from_pretrained(tiny_ctc_dir).save_pretrained(tmp_path)  # weights only
    with pytest.raises(ModelError, match="no tokenizer"):
        ctc.load_ctc_model(tmp_path)
    model, processor = ctc.load_ctc_model(tmp_path, vocab=ctc.build_vocab(["ab"]))
    assert model.lm_head.out_features == len(processor.tokenizer) == 5


def test_feature_encoder_frozen_by_default(tiny_ctc_dir):
    model, _ = ctc.load_ctc_model(tiny_ctc_dir)
    encoder = list(model.wav2vec2.feature_extractor.parameters())
    assert encoder and not any(p.requires_grad for p in encoder)
    assert all(p.requires_grad for n, p in model.named_parameters() if "feature_extractor" not in n)
    model, _ = ctc.load_ctc_model(tiny_ctc_dir, options=ctc.CTCModelOptions(freeze_feature_encoder=False))
    assert all(p.requires_grad for p in model.parameters())


def test_model_options_reach_the_config(tiny_ctc_dir):
    options = ctc.CTCModelOptions(mask_time_prob=0.3, mask_time_length=5, mask_feature_prob=0.2,
                                  mask_feature_length=7, layerdrop=0.15, dropout=0.05,
                                  ctc_loss_reduction="sum", ctc_zero_infinity=False,
                                  gradient_checkpointing=True)
    model, _ = ctc.load_ctc_model(tiny_ctc_dir, options=options)
    c = model.config
    assert (c.mask_time_prob, c.mask_time_length, c.mask_feature_prob, c.mask_feature_length) == (0.3, 5, 0.2, 7)
    assert (c.layerdrop, c.hidden_dropout, c.attention_dropout, c.activation_dropout) == (0.15, 0.05, 0.05, 0.05)
    assert (c.ctc_loss_reduction, c.ctc_zero_infinity) == ("sum", False)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    defaults, _ = ctc.load_ctc_model(tiny_ctc_dir)
    assert (defaults.config.ctc_loss_reduction, defaults.config.ctc_zero_infinity) == ("mean", True)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in defaults.modules())


@pytest.mark.parametrize("bad", [dict(mask_time_prob=1.5), dict(layerdrop=-0.1), dict(ctc_loss_reduction="max")])
def test_model_options_rejects(bad):
    with pytest.raises(ValueError):
        ctc.CTCModelOptions(**bad)


# --- greedy CTC decoding --------------------------------------------------------------------------
ID_TO_TOKEN = {0: "<pad>", 1: "<unk>", 2: "|", 3: "a", 4: "b"}
TOKEN_ID = {t: i for i, t in ID_TO_TOKEN.items()} | {"_": 0}


@pytest.mark.parametrize("frames, expected", [
    ("a a _ a b | b", "aab b"),  # repeats collapse; a blank separates a repeated character
    ("a _ a", "aa"),
    ("_ _ _", ""),
    ("| a | | b |", "a b"),  # delimiters at the edges and in a row make single spaces
    ("a <unk> a", "aa"),  # special tokens are dropped, so <unk> splits a repeat like a blank
    ("b b b b", "b"),
])
def test_greedy_decode(frames, expected):
    ids = torch.tensor([[TOKEN_ID[t] for t in frames.split()]])
    assert ctc.greedy_decode(ids, None, ID_TO_TOKEN, blank_id=0, skip_ids=[1]) == [expected]


@pytest.mark.parametrize("frames", ["a a _ a b | b", "| a | | b |", "b _ b b | a a", "_ _ a"])
def test_greedy_decode_agrees_with_the_hf_tokenizer(frames):
    processor = ctc.make_processor({t: i for i, t in ID_TO_TOKEN.items()})
    ids = [TOKEN_ID[t] for t in frames.split()]
    expected = " ".join(processor.tokenizer.decode(ids).split())
    assert ctc.greedy_decode(torch.tensor([ids]), None, ID_TO_TOKEN, blank_id=0) == [expected]


def test_greedy_decode_stops_at_each_length():
    ids = torch.tensor([[3, 3, 0, 3, 4], [4, 2, 3, 3, 3]])
    assert ctc.greedy_decode(ids, torch.tensor([5, 3]), ID_TO_TOKEN, blank_id=0) == ["aab", "b a"]


def test_ctc_decode_batch_equals_logits_argmax(tiny_ctc_dir):
    model, processor = ctc.load_ctc_model(tiny_ctc_dir)
    torch.manual_seed(0)
    waves = [0.1 * torch.randn(8000), 0.1 * torch.randn(12000)]
    texts = ctc.decode_batch(model, processor, waves)
    vocab = {i: t for t, i in processor.tokenizer.get_vocab().items()}
    for wave, text in zip(waves, texts):
        values, mask = ctc.model_inputs(processor, [wave])
        with torch.no_grad():
            ids = model(values, attention_mask=mask).logits.argmax(-1)[0].tolist()
        chars = [vocab[t] for i, t in enumerate(ids) if (i == 0 or t != ids[i - 1]) and t > 1]
        assert text == " ".join("".join(chars).replace("|", " ").split())


def test_decode_batch_restores_training_mode(tiny_ctc_dir):
    model, processor = ctc.load_ctc_model(tiny_ctc_dir)
    model.train()
    ctc.decode_batch(model, processor, [torch.zeros(4000) + 0.01])
    assert model.training


# --- Whisper --------------------------------------------------------------------------------------
def test_init_whisper_model_loads_with_from_pretrained(tiny_whisper_dir):
    assert (tiny_whisper_dir / "model.safetensors").is_file()
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    assert model.config.vocab_size == len(processor.tokenizer) == 51865
    assert (model.config.d_model, model.config.encoder_layers, model.config.decoder_layers) == (64, 2, 2)
    assert model.config.num_mel_bins == processor.feature_extractor.feature_size == 80
    gen = model.generation_config
    assert (gen.language, gen.task, gen.decoder_start_token_id) == ("en", "transcribe", 50258)
    assert gen.lang_to_id["<|en|>"] == 50259 and gen.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert getattr(gen, "forced_decoder_ids", None) is None
    assert model_family(str(tiny_whisper_dir)) == WHISPER


def test_init_whisper_model_needs_a_tokenizer(tmp_path):
    with pytest.raises(ModelError, match="tokenizer"):
        wh.init_whisper_model(tmp_path / "out", tokenizer_dir=tmp_path)
    assert not (tmp_path / "out").exists()


def test_load_whisper_model_sets_prefix(tiny_whisper_dir):
    model, processor = wh.load_whisper_model(tiny_whisper_dir, language="de", task="translate")
    assert (model.generation_config.language, model.generation_config.task) == ("de", "translate")
    assert processor.tokenizer.prefix_tokens == [50258, 50261, 50358, 50363]
    with pytest.raises(ModelError):
        wh.load_whisper_model(tiny_whisper_dir, language="klingon")


def test_whisper_labels(tiny_whisper_dir):
    model, processor = wh.load_whisper_model(tiny_whisper_dir)
    labels = wh.make_labels(processor, ["hello world", "a"])
    tokens = processor.tokenizer.convert_ids_to_tokens([t for t in labels[0].tolist()])
    # <|startoftranscript|> is left out: the model prepends it when shifting the labels right.
    assert tokens == ["<|en|>", "<|transcribe|>", "<|notimestamps|>", "Ġhello", "Ġworld", "<|endoftext|>"]
    assert labels[1].tolist() == [50259, 50359, 50363, 257, 50257, -100]
    features = wh.input_features(model, [0.1 * torch.randn(16000), 0.1 * torch.randn(8000)])
    assert features.shape == (2, 80, 3000)
    out = model(input_features=features, labels=labels)
    assert torch.isfinite(out.loss) and out.logits.shape[:2] == labels.shape
    # The model feeds <|startoftranscript|> + labels[:-1] (padding -> <|endoftext|>) to the decoder.
    sot, eot = 50258, 50257
    shifted = torch.where(labels == -100, eot, labels)[:, :-1]
    decoder_input_ids = torch.cat([torch.full((2, 1), sot), shifted], dim=1)
    explicit = model(input_features=features, decoder_input_ids=decoder_input_ids)
    assert torch.allclose(explicit.logits, out.logits, atol=1e-5)
    with pytest.raises(ModelError, match="at most 5"):
        wh.make_labels(processor, ["hello world"], max_length=5)


def test_whisper_decode_batch(tiny_whisper_dir):
    model, processor = wh.load_whisper_model(tiny_whisper_dir)
    texts = wh.decode_batch(model, processor, [0.1 * torch.randn(16000), 0.1 * torch.randn(24000)],
                            DecodeOptions(max_new_tokens=4))
    assert len(texts) == 2 and all(isinstance(t, str) and t == t.strip() for t in texts)
    assert all("<|" not in t for t in texts)  # special tokens are not text


def test_fp16_checkpoint_loads_as_float32(tmp_path):
    """transformers 5 keeps a checkpoint's dtype by default; training needs float32 master weights."""
    from asr_sft.models.ctc import build_vocab, init_ctc_model, load_ctc_model
    from transformers import AutoModelForCTC

    src = init_ctc_model(tmp_path / "m32", "tiny", vocab=build_vocab(["AB C"]), seed=0)
    half = AutoModelForCTC.from_pretrained(src, dtype=torch.float16)
    half.save_pretrained(tmp_path / "m16")
    for name in ("vocab.json", "tokenizer_config.json", "processor_config.json"):
        (tmp_path / "m16" / name).write_bytes((src / name).read_bytes())
    model, _ = load_ctc_model(tmp_path / "m16")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
