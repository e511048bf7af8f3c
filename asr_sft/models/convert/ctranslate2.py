"""CTranslate2 Whisper folder -> Hugging Face Whisper folder.

A CTranslate2 folder holds `model.bin` (every weight, binary version 6), `config.json`
(suppress lists, alignment heads), `tokenizer.json` (a Hugging Face fast tokenizer) and
`vocabulary.txt`. `read_model_bin` parses model.bin without ctranslate2 itself; `ct2_to_hf`
maps its variables onto `WhisperForConditionalGeneration`'s parameters one to one and writes a
folder that `from_pretrained` loads, with a generation config whose special ids are read from
the tokenizer (English-only and multilingual vocabularies differ by one id).
"""

from __future__ import annotations

import json
import mmap
import shutil
import struct
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from asr_sft.atomic import staged_dir
from asr_sft.errors import ModelError

BINARY_VERSION = 6  # the model.bin layout ctranslate2 >= 3 writes; the only one read here
SPEC_NAMES = ("WhisperSpec",)  # model.bin specs this module converts
# dtype ids, in the order of ctranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
          4: np.dtype("<f2"), 5: np.dtype("<u2")}  # 5 = bfloat16: read as raw 16 bits, see _bfloat16
BFLOAT16 = 5


# --- model.bin ------------------------------------------------------------------------------------
class _Cursor:
    """Little-endian reads from a buffer; every read checks that the bytes are there, so a
    truncated file fails with its name and offset instead of a struct or numpy error."""

    def __init__(self, buf, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise ModelError(f"{self.path}: truncated CTranslate2 model.bin: {what} needs {n} bytes at "
                             f"offset {start}, the file has {len(self.buf)}")
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str):
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.buf, start)

    def uint(self, fmt: str, what: str) -> int:
        return self.unpack(fmt, what)[0]

    def string(self, what: str) -> str:
        n = self.uint("<H", f"{what} length")  # byte length, the trailing NUL included
        start = self.take(n, what)
        raw = bytes(self.buf[start:start + n])
        if n == 0 or raw[-1] != 0:
            raise ModelError(f"{self.path}: corrupt CTranslate2 model.bin: {what} at offset {start} "
                             "is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ModelError(f"{self.path}: corrupt CTranslate2 model.bin: {what} at offset {start} "
                             f"is not UTF-8 ({err})") from err


def read_model_bin(path: str | Path) -> tuple[str, int, dict[str, np.ndarray], dict, dict[str, str]]:
    """(spec_name, revision, variables, attributes, aliases) of a CTranslate2 model.bin.

    variables: name -> array (a read-only view on a memory map of the file: nothing is copied
    until used; bfloat16 is widened to float32). attributes: the rank-0 variables (spec settings
    such as `encoder/num_heads`, `decoder/pre_norm`) as Python scalars. aliases: alias -> the
    variable it names (`decoder/projection/weight` -> `decoder/embeddings/weight`: tied).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # outlives f; views keep it open
    except (OSError, ValueError) as err:  # ValueError: an empty file cannot be mapped
        raise ModelError(f"{path}: cannot read a CTranslate2 model.bin ({err})") from err
    cur = _Cursor(buf, path)
    version = cur.uint("<I", "binary version")
    if version != BINARY_VERSION:
        raise ModelError(f"{path}: CTranslate2 binary version {version} is not supported (only version "
                         f"{BINARY_VERSION}, written by ctranslate2 >= 3; reconvert the model)")
    spec = cur.string("spec name")
    if spec not in SPEC_NAMES:
        raise ModelError(f"{path}: spec {spec!r} is not a Whisper model (only {', '.join(SPEC_NAMES)} "
                         "converts to Hugging Face here)")
    revision = cur.uint("<I", "spec revision")
    variables, attributes = {}, {}
    for _ in range(cur.uint("<I", "variable count")):
        name = cur.string("variable name")
        rank = cur.uint("<B", f"{name} rank")
        shape = cur.unpack(f"<{rank}I", f"{name} shape")
        type_id = cur.uint("<B", f"{name} dtype")
        if type_id not in DTYPES:
            raise ModelError(f"{path}: variable {name!r} has unknown dtype id {type_id} "
                             f"(known: {', '.join(f'{k} {v}' for k, v in DTYPES.items())})")
        nbytes = cur.uint("<I", f"{name} byte count")
        dtype = DTYPES[type_id]
        count = int(np.prod(shape, dtype=np.int64))
        if nbytes != count * dtype.itemsize:
            raise ModelError(f"{path}: variable {name!r} of shape {shape} and dtype {dtype} should "
                             f"take {count * dtype.itemsize} bytes, the file says {nbytes}")
        start = cur.take(nbytes, f"{name} data")
        value = np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)
        if type_id == BFLOAT16:
            value = _bfloat16(value)
        if rank == 0:
            attributes[name] = value.item()
        else:
            variables[name] = value
    aliases = {}
    for _ in range(cur.uint("<I", "alias count")):
        alias = cur.string("alias name")
        aliases[alias] = cur.string(f"target of alias {alias}")
    if cur.pos != len(buf):
        raise ModelError(f"{path}: {len(buf) - cur.pos} unexpected bytes after the last alias "
                         f"(offset {cur.pos}): not a CTranslate2 model.bin, or corrupt")
    return spec, revision, variables, attributes, aliases


def _bfloat16(raw: np.ndarray) -> np.ndarray:
    # numpy has no bfloat16; its 16 bits are the top half of a float32, so widening is exact.
    return (raw.astype(np.uint32) << 16).view(np.float32)


# --- the Hugging Face folder ------------------------------------------------------------------------
MULTILINGUAL_VOCAB = 51865  # openai/whisper's rule: a vocabulary this large has language tokens
N_MELS = (80, 128)  # mel bins of the released Whisper models (large-v3: 128)
MAX_INITIAL_TIMESTAMP_INDEX = 50  # openai/whisper's max_initial_timestamp 1.0 s in 20 ms steps
ZERO_BIAS_TOLERANCE = 1e-6  # the converter stores zeros for HF's missing k_proj bias
SOT, EOT, NO_TIMESTAMPS, PREV = ("<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>",
                                 "<|startofprev|>")
TASKS = ("transcribe", "translate")
CT2_FILES = ("model.bin", "config.json", "tokenizer.json")  # vocabulary.{txt,json}: checked if there
# Spec settings that Hugging Face's Whisper hard-wires: a file setting them otherwise describes a
# different network, and is refused rather than converted into a wrong one.
FIXED_ATTRIBUTES = {"decoder/activation": 3,  # ctranslate2 Activation.GELU
                    "decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0,
                    "decoder/start_from_zero_embedding": 0}
# Settings that do not change the logits (cross-attention alignment outputs) or are read below.
KNOWN_ATTRIBUTES = ("encoder/num_heads", "decoder/num_heads", "decoder/alignment_heads",
                    "decoder/alignment_layer")


def ct2_to_hf(ct2_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the CTranslate2 Whisper folder `ct2_dir` as a Hugging Face folder `out_dir` that
    `WhisperForConditionalGeneration.from_pretrained` and `WhisperProcessor.from_pretrained` load.

    Weights keep the one float dtype the file stores (float16 for the faster-whisper packages:
    lossless and half the size; loaders cast to float32). int8/int16-quantised files are
    dequantised the way ctranslate2 quantises (int8: q / (127 / row absmax), per output row;
    int16: q / one scale) and written as float32: the result is the quantised model, not the
    original float weights. The write is staged: a failure leaves no folder under out_dir's name.
    """
    ct2_dir = Path(ct2_dir)
    for name in CT2_FILES:
        if not (ct2_dir / name).is_file():
            raise ModelError(f"{ct2_dir}: not a CTranslate2 Whisper folder ({name} is missing)")
    path = ct2_dir / "model.bin"
    _, _, variables, attributes, aliases = read_model_bin(path)
    weights = _Variables(path, variables, attributes, aliases)
    config = whisper_config(weights, attributes, path)
    ct2_config = _read_json(ct2_dir / "config.json")
    state = hf_state_dict(weights, config)
    with torch.device("meta"):  # shapes only: every tensor comes from the file
        model = WhisperForConditionalGeneration(config)
    _check_complete(path, state, model.state_dict(), config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False, assign=True)
    model.tie_weights()
    with staged_dir(out_dir, overwrite) as tmp:
        tokenizer = load_tokenizer(ct2_dir / "tokenizer.json", tmp)
        _check_vocabulary(ct2_dir, tokenizer, config.vocab_size)
        generation = make_generation_config(tokenizer, ct2_config, config, ct2_dir / "config.json")
        for key in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id",
                    "suppress_tokens", "begin_suppress_tokens"):
            setattr(model.config, key, getattr(generation, key))
        model.generation_config = generation
        model.save_pretrained(str(tmp))
        features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(str(tmp))
    return Path(out_dir)


class _Variables:
    """The model.bin weights by name, aliases followed, each taken at most once: whatever is not
    taken by the end was not mapped, and is an error rather than silently dropped."""

    def __init__(self, path: Path, variables: dict, attributes: dict, aliases: dict):
        self.path, self.aliases = path, aliases
        self.values = _dequantize(path, variables, attributes)
        self.left = set(self.values) | set(aliases)

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.values

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._get(name).shape)

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self._get(name)
        if tuple(value.shape) != tuple(shape):
            raise ModelError(f"{self.path}: variable {name!r} has shape {tuple(value.shape)}; a Whisper "
                             f"of these dimensions needs {tuple(shape)}")
        self.left.discard(name)
        self.left.discard(self.aliases.get(name, name))
        return value

    def _get(self, name: str) -> np.ndarray:
        target = self.aliases.get(name, name)
        if target not in self.values:
            what = f" (alias of {target!r})" if target != name else ""
            raise ModelError(f"{self.path}: variable {name!r}{what} is missing: not a complete Whisper model")
        return self.values[target]


def _dequantize(path: Path, variables: dict, attributes: dict) -> dict[str, np.ndarray]:
    """The float variables as they are (views on the file), and quantised ones (`X` with its
    `X_scale`, a variable, or an attribute when it is one number) turned back into float32 the
    inverse way of ctranslate2's ModelSpec._quantize; the scales themselves are not kept."""
    out = {}
    for name, value in variables.items():
        if name.endswith("_scale") and name.removesuffix("_scale") in variables:
            continue
        if value.dtype.kind == "f":
            out[name] = value
            continue
        scale = variables.get(name + "_scale", attributes.get(name + "_scale"))
        if scale is None:
            raise ModelError(f"{path}: variable {name!r} is {value.dtype} without a {name}_scale: "
                             "cannot turn it into float weights")
        scale = np.asarray(scale, dtype=np.float32)
        flat = value.reshape(value.shape[0], -1).astype(np.float32)  # conv weights: rows are outputs
        flat /= scale.reshape(-1, 1) if scale.ndim else scale
        out[name] = flat.reshape(value.shape)
    return out


def whisper_config(weights: _Variables, attributes: dict, path: Path) -> WhisperConfig:
    """A WhisperConfig whose dimensions are read off the variables' shapes and the heads counts."""
    for name, want in FIXED_ATTRIBUTES.items():
        if name in attributes and attributes[name] != want:
            raise ModelError(f"{path}: spec setting {name} = {attributes[name]} (Hugging Face's Whisper "
                             f"needs {want}): not a Whisper network")
    for name, value in attributes.items():
        # A setting this mapping does not know is accepted only when off (0): a switched-on
        # feature would change the network.
        # (An int16 weight's one-number scale is stored as an attribute too: not a setting.)
        if name not in FIXED_ATTRIBUTES and name not in KNOWN_ATTRIBUTES and value and not (
                name.endswith("_scale") and weights.has(name.removesuffix("_scale"))):
            raise ModelError(f"{path}: unknown spec setting {name} = {value}; cannot map it to Hugging Face")
    heads = {}
    for side in ("encoder", "decoder"):
        if f"{side}/num_heads" not in attributes:
            raise ModelError(f"{path}: spec setting {side}/num_heads is missing")
        heads[side] = int(attributes[f"{side}/num_heads"])
    vocab, d_model = weights.shape("decoder/embeddings/weight")
    for side, n in heads.items():
        if n <= 0 or d_model % n:
            raise ModelError(f"{path}: {side}/num_heads = {n} does not divide d_model {d_model}")
    n_mels = weights.shape("encoder/conv1/weight")[1]
    if n_mels not in N_MELS:
        raise ModelError(f"{path}: encoder/conv1/weight takes {n_mels} mel bins (Whisper: "
                         f"{' or '.join(map(str, N_MELS))})")
    return WhisperConfig(
        vocab_size=vocab, num_mel_bins=n_mels, d_model=d_model,
        encoder_layers=_count_layers(weights, "encoder"), decoder_layers=_count_layers(weights, "decoder"),
        encoder_attention_heads=heads["encoder"], decoder_attention_heads=heads["decoder"],
        encoder_ffn_dim=weights.shape("encoder/layer_0/ffn/linear_0/weight")[0],
        decoder_ffn_dim=weights.shape("decoder/layer_0/ffn/linear_0/weight")[0],
        max_source_positions=weights.shape("encoder/position_encodings/encodings")[0],
        max_target_positions=weights.shape("decoder/position_encodings/encodings")[0],
        activation_function="gelu", scale_embedding=False,
        tie_word_embeddings=_tied(weights), architectures=["WhisperForConditionalGeneration"],
    )


def _count_layers(weights: _Variables, side: str) -> int:
    names = set(weights.values) | set(weights.aliases)
    n = 0
    while any(name.startswith(f"{side}/layer_{n}/") for name in names):
        n += 1
    if n == 0:
        raise ModelError(f"{weights.path}: no {side}/layer_0 variables: not a Whisper model")
    return n


def _tied(weights: _Variables) -> bool:
    # ctranslate2 writes the output projection as an alias of the embeddings when they are equal
    # (always for Whisper); a separate, different copy becomes an untied proj_out.
    name = "decoder/projection/weight"
    if not weights.has(name):
        raise ModelError(f"{weights.path}: variable {name!r} is missing: not a complete Whisper model")
    target = weights.aliases.get(name, name)
    if target == weights.aliases.get("decoder/embeddings/weight", "decoder/embeddings/weight"):
        return True
    return bool(np.array_equal(weights.values[target], weights._get("decoder/embeddings/weight")))


def hf_state_dict(weights: _Variables, config) -> dict[str, np.ndarray]:
    """Hugging Face parameter name -> array, every model.bin variable used exactly once."""
    d, state = config.d_model, {}
    pairs = [("model.encoder.conv1", "encoder/conv1", (d, config.num_mel_bins, 3)),
             ("model.encoder.conv2", "encoder/conv2", (d, d, 3))]
    for hf, ct2, shape in pairs:
        state[f"{hf}.weight"] = weights.take(f"{ct2}/weight", shape)
        state[f"{hf}.bias"] = weights.take(f"{ct2}/bias", (d,))
    for side, n_pos in (("encoder", config.max_source_positions), ("decoder", config.max_target_positions)):
        state[f"model.{side}.embed_positions.weight"] = weights.take(f"{side}/position_encodings/encodings",
                                                                     (n_pos, d))
        _layer_norm(weights, state, f"{side}/layer_norm", f"model.{side}.layer_norm", d)
    embeddings = weights.take("decoder/embeddings/weight", (config.vocab_size, d))
    state["model.decoder.embed_tokens.weight"] = embeddings
    projection = weights.take("decoder/projection/weight", (config.vocab_size, d))
    if not config.tie_word_embeddings:
        state["proj_out.weight"] = projection
    for side, n_layers, ffn in (("encoder", config.encoder_layers, config.encoder_ffn_dim),
                                ("decoder", config.decoder_layers, config.decoder_ffn_dim)):
        for i in range(n_layers):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            _attention(weights, state, f"{src}/self_attention", f"{dst}.self_attn", d, ("q", "k", "v"))
            _layer_norm(weights, state, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", d)
            if side == "decoder":  # cross-attention: q alone, then k and v stacked
                _attention(weights, state, f"{src}/attention", f"{dst}.encoder_attn", d, ("q",), ("k", "v"))
                _layer_norm(weights, state, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm",
                            d)
            _linear(weights, state, f"{src}/ffn/linear_0", f"{dst}.fc1", (ffn, d))
            _linear(weights, state, f"{src}/ffn/linear_1", f"{dst}.fc2", (d, ffn))
            _layer_norm(weights, state, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", d)
    if weights.left:
        raise ModelError(f"{weights.path}: {len(weights.left)} variable(s) not used by a Whisper model: "
                         + ", ".join(sorted(weights.left)[:8]))
    dtype = _output_dtype(state)
    return {name: np.array(value, dtype=dtype) for name, value in state.items()}  # copies off the map


def _attention(weights: _Variables, state: dict, src: str, dst: str, d: int,
               *groups: tuple[str, ...]) -> None:
    """The fused ctranslate2 linears `linear_0`, `linear_1`, ... (each `len(group)` projections
    stacked along the output rows), then the output linear, as HF's q/k/v/out_proj."""
    for j, group in enumerate(groups):
        w = weights.take(f"{src}/linear_{j}/weight", (len(group) * d, d))
        b = weights.take(f"{src}/linear_{j}/bias", (len(group) * d,))
        for k, proj in enumerate(group):
            rows = slice(k * d, (k + 1) * d)
            state[f"{dst}.{proj}_proj.weight"] = w[rows]
            if proj != "k":
                state[f"{dst}.{proj}_proj.bias"] = b[rows]
            elif np.abs(b[rows].astype(np.float32)).max() > ZERO_BIAS_TOLERANCE:
                # A key bias only shifts every score of a query by the same amount (softmax
                # ignores it), so HF has none; a non-zero one means a file from elsewhere.
                raise ModelError(f"{weights.path}: {src}/linear_{j}/bias has a non-zero key bias; "
                                 "not written by ctranslate2's Whisper converter")
    _linear(weights, state, f"{src}/linear_{len(groups)}", f"{dst}.out_proj", (d, d))


def _linear(weights: _Variables, state: dict, src: str, dst: str, shape: tuple[int, int]) -> None:
    state[f"{dst}.weight"] = weights.take(f"{src}/weight", shape)
    state[f"{dst}.bias"] = weights.take(f"{src}/bias", (shape[0],))


def _layer_norm(weights: _Variables, state: dict, src: str, dst: str, d: int) -> None:
    state[f"{dst}.weight"] = weights.take(f"{src}/gamma", (d,))
    state[f"{dst}.bias"] = weights.take(f"{src}/beta", (d,))


def _output_dtype(state: dict) -> np.dtype:
    # One stored float dtype (float16 or float32) is kept as is: lossless. Anything else
    # (dequantised int8, bfloat16, a mix) becomes float32, which holds all of those values.
    dtypes = {value.dtype for value in state.values()}
    only = dtypes.pop() if len(dtypes) == 1 else None
    return only if only in (np.dtype("<f2"), np.dtype("<f4")) else np.dtype("<f4")


def _check_complete(path: Path, state: dict, expected: dict, config) -> None:
    tied = {"proj_out.weight"} if config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(state) - tied)
    extra = sorted(set(state) - set(expected))
    if missing or extra:  # a mapping that disagrees with this transformers' WhisperModel
        raise ModelError(f"{path}: the variables do not fill WhisperForConditionalGeneration: "
                         f"missing {missing[:5]}, unexpected {extra[:5]}")
    for name, value in state.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ModelError(f"{path}: {name} would get shape {tuple(value.shape)}, the model has "
                             f"{tuple(expected[name].shape)}")


# --- tokenizer and generation config ----------------------------------------------------------------
def load_tokenizer(tokenizer_json: Path, folder: Path) -> WhisperTokenizer:
    """A WhisperTokenizer from a Hugging Face fast-tokenizer file (copied into `folder`, which
    `from_pretrained` reads), with <|endoftext|> as pad as in OpenAI's Hugging Face folders."""
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    try:
        tokenizer = WhisperTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"{tokenizer_json}: cannot load it as a Whisper tokenizer ({err})") from err
    tokenizer.pad_token = EOT
    tokenizer.set_prefix_tokens(language=None, task=None, predict_timestamps=False)
    return tokenizer


def _token_id(tokenizer, token: str, where: Path) -> int:
    i = tokenizer.convert_tokens_to_ids(token)
    if i is None or (i == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ModelError(f"{where}: the tokenizer has no {token} token: not a Whisper tokenizer")
    return i


def make_generation_config(tokenizer: WhisperTokenizer, ct2_config: dict, config: WhisperConfig,
                           where: Path) -> GenerationConfig:
    """What `generate` needs, every special id read from `tokenizer`; the suppress lists and
    alignment heads from the CTranslate2 config.json (`where`)."""
    ids = {token: _token_id(tokenizer, token, where.with_name("tokenizer.json"))
           for token in (SOT, EOT, NO_TIMESTAMPS, PREV)}
    if len(tokenizer) > config.vocab_size:
        raise ModelError(f"{where.parent}: tokenizer.json has {len(tokenizer)} tokens, the model only "
                         f"{config.vocab_size}: they do not belong together")
    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB
    extra = {}
    if multilingual:
        extra["lang_to_id"] = _languages(tokenizer, ct2_config.get("lang_ids"), ids[SOT], where)
        extra["task_to_id"] = {task: _token_id(tokenizer, f"<|{task}|>", where) for task in TASKS}
    if (heads := ct2_config.get("alignment_heads")) is not None:
        extra["alignment_heads"] = _alignment_heads(heads, config, where)
    suppress = _id_list(ct2_config, "suppress_ids", config.vocab_size, where)
    begin = _id_list(ct2_config, "suppress_ids_begin", config.vocab_size, where)
    return GenerationConfig(
        decoder_start_token_id=ids[SOT], bos_token_id=ids[EOT], eos_token_id=ids[EOT],
        pad_token_id=ids[EOT], max_length=config.max_target_positions, is_multilingual=multilingual,
        no_timestamps_token_id=ids[NO_TIMESTAMPS], prev_sot_token_id=ids[PREV],
        suppress_tokens=suppress, begin_suppress_tokens=begin, return_timestamps=False,
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX, **extra,
    )


def _languages(tokenizer: WhisperTokenizer, lang_ids: list | None, sot: int, where: Path) -> dict[str, int]:
    """<|xx|> -> id for the languages config.json's lang_ids names (all of the vocabulary's when
    it names none). HF's WhisperTokenizer.prefix_tokens computes <|xx|> as <|startoftranscript|>
    + 1 + the index of xx in LANGUAGES: the layout is checked before anything relies on it."""
    layout = {}
    for index, code in enumerate(LANGUAGES):
        i = tokenizer.convert_tokens_to_ids(f"<|{code}|>")
        if i is None or i == tokenizer.unk_token_id:
            continue
        if i != sot + 1 + index:
            raise ModelError(f"{where.parent}: <|{code}|> is id {i}, not {sot + 1 + index}: not the "
                             "Whisper language layout")
        layout[i] = f"<|{code}|>"
    if not layout:
        raise ModelError(f"{where.parent}: a multilingual-sized model whose tokenizer has no language tokens")
    chosen = lang_ids or sorted(layout)
    if unknown := [i for i in chosen if i not in layout]:
        raise ModelError(f"{where}: lang_ids {unknown[:5]} are not language tokens of tokenizer.json")
    return {layout[i]: i for i in sorted(chosen)}


def _alignment_heads(heads: list, config: WhisperConfig, where: Path) -> list[list[int]]:
    layers, n_heads = config.decoder_layers, config.decoder_attention_heads
    if not all(len(h) == 2 and 0 <= h[0] < layers and 0 <= h[1] < n_heads for h in heads):
        raise ModelError(f"{where}: alignment_heads must be [layer, head] pairs inside the decoder's "
                         f"{layers} layers x {n_heads} heads, got {str(heads)[:80]}")
    return [[int(layer), int(head)] for layer, head in heads]


def _id_list(ct2_config: dict, key: str, vocab_size: int, where: Path) -> list[int] | None:
    values = ct2_config.get(key)  # absent or null: nothing to suppress
    if values is not None and not (isinstance(values, list) and all(
            isinstance(i, int) and 0 <= i < vocab_size for i in values)):
        raise ModelError(f"{where}: {key} must be a list of token ids below {vocab_size}, got "
                         f"{str(values)[:80]}")
    return values


def _check_vocabulary(ct2_dir: Path, tokenizer: WhisperTokenizer, vocab_size: int) -> None:
    """The id -> token list ctranslate2 keeps beside model.bin (vocabulary.txt, or vocabulary.json
    from newer converters) must have the model's size and agree with tokenizer.json on the special
    tokens, or the two files come from different models."""
    if (path := ct2_dir / "vocabulary.json").is_file():
        tokens = _read_json(path, list)
    elif (path := ct2_dir / "vocabulary.txt").is_file():
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
    else:
        return
    if len(tokens) != vocab_size:
        raise ModelError(f"{path}: {len(tokens)} tokens, the model has {vocab_size}")
    for token in (SOT, EOT, NO_TIMESTAMPS):
        i = tokenizer.convert_tokens_to_ids(token)
        if tokens[i] != token:
            raise ModelError(f"{path}: id {i} is {tokens[i]!r} here but {token} in tokenizer.json")


def _read_json(path: Path, kind: type = dict):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot read it as JSON ({err})") from err
    if not isinstance(data, kind):
        raise ModelError(f"{path}: expected a JSON {kind.__name__}, found {type(data).__name__}")
    return data
