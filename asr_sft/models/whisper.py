"""Whisper (`WhisperForConditionalGeneration`) with its real tokenizer and prefix tokens.

A transcript is trained as
    decoder input: <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> " text..."
    labels:        <|en|> <|transcribe|> <|notimestamps|> " text..." <|endoftext|>   (then -100)
The model builds the decoder input itself by shifting the labels right and prepending
decoder_start_token_id (<|startoftranscript|>), so the labels leave that token out (as the HF
fine-tuning blog does). The text starts with a space, as Whisper's own outputs do.

English-only checkpoints (*.en) have no language or task tokens: their prefix is
<|startoftranscript|> <|notimestamps|>.

Language and task are set the transformers-5 way (generation_config.language / .task), never
through the deprecated forced_decoder_ids; evaluation goes through `generate`, like inference.

Variable-length input (option `variable_length`): Whisper pads every input to 30 s, and HF's
encoder refuses anything else. With the option, the encoder's class becomes VariableLengthEncoder,
which takes any whole number of encoder frames (2 mel frames, 20 ms each) up to 30 s and adds the
first rows of its positional table: a batch costs what its longest utterance needs. The choice is
saved in the model config (`asr_sft_variable_length`), so a model trained with it decodes with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.models.whisper.tokenization_whisper import LANGUAGES
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from asr_sft.errors import ModelError, OptionError
from asr_sft.data.features import HOP_LENGTH, N_FRAMES, N_SAMPLES, WhisperMelOptions, log_mel_spectrogram
from asr_sft.atomic import staged_dir
from asr_sft.models import lora
from asr_sft.models.labels import change_case, check_text_case
from asr_sft.models import whisper_decoding
from asr_sft.models.options import MAX_NEW_TOKENS, DecodeOptions, Transcript
from asr_sft.models.resolve import resolve_model

log = logging.getLogger(__name__)

MAX_TARGET_POSITIONS = 448  # decoder tokens Whisper can attend to (prefix + text + <|endoftext|>)
N_MELS = 80  # mel bins of every Whisper model up to large-v2 (large-v3: 128)
NAME = "whisper"  # model.type of this family
MAX_INPUT_SECONDS = 30.0  # the encoder's window; audio past it is not heard
SOT, EOT, NO_TIMESTAMPS = "<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"
TASKS = ("transcribe", "translate")
TEXT_CASES = ("keep", "lower", "sentence")  # model.text_case
VARIABLE_LENGTH = "asr_sft_variable_length"  # model config key: the encoder takes short windows
ENCODER_STRIDE = 2  # mel frames per encoder frame (conv2's stride)
WINDOW_STEP = HOP_LENGTH * ENCODER_STRIDE  # 320 samples (20 ms): a window is whole encoder frames
MIN_WINDOW = 2 * WINDOW_STEP  # 640 samples: at least one 400-sample STFT window
GPT2_BPE_TOKENS = 50256  # regular tokens of English-only vocabularies (multilingual: 50,257)

# Randomly initialised shapes (`init_whisper_model`); the vocabulary is the tokenizer's (51,865 ids
# multilingual, 51,864 English-only). "tiny" here is a test-sized model, not OpenAI's whisper-tiny,
# whose shape is "whisper-tiny" (for benchmarks without the real weights).
SIZES = {
    "tiny": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256),  # ~3.5 M
    "small": dict(d_model=256, encoder_layers=4, decoder_layers=4, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024),  # ~20 M
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                 decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048),  # whisper-base, ~72 M
    "whisper-tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                         decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536),  # ~38 M
}


# --- loading --------------------------------------------------------------------------------------
def load_whisper_model(
    name_or_path: str | Path, language: str | None = "en", task: str = "transcribe", *,
    variable_length: bool | None = None, overrides: dict | None = None, processor: WhisperProcessor | None = None,
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """(model, processor) of a Whisper checkpoint (hub id or local folder), with the prefix tokens
    for `language` and `task` set on both the generation config and the tokenizer.

    variable_length: feed the encoder windows shorter than 30 s (None: as the checkpoint was
    trained); overrides: model config values (SpecAugment, dropout) for from_pretrained; processor:
    use this one instead of the checkpoint's (a LoRA checkpoint's own, over its base's).
    """
    name = resolve_model(name_or_path)
    try:
        processor = processor or WhisperProcessor.from_pretrained(name)
        model = WhisperForConditionalGeneration.from_pretrained(name, dtype=torch.float32,  # see ctc.py
                                                                **(overrides or {}))
    except (OSError, ValueError) as err:
        raise ModelError(f"{name}: cannot load a Whisper model and processor ({err})") from err
    whisper_decoding.check_special_ids(model, processor, str(name_or_path))
    set_prefix(model, processor, language, task)
    if variable_length is None:
        variable_length = is_variable_length(model.config)
    use_variable_length(model, processor, variable_length)
    return model, processor


def set_prefix(model: WhisperForConditionalGeneration, processor: WhisperProcessor,
               language: str | None, task: str) -> None:
    """Make `generate` and `make_labels` use <|sot|><|language|><|task|><|notimestamps|>.

    English-only checkpoints (*.en) have no language or task tokens: their prefix is
    <|sot|><|notimestamps|>, and only language "en" (or None) with task "transcribe" is accepted.
    """
    gen, tokenizer = model.generation_config, processor.tokenizer
    if task not in TASKS:
        raise ModelError(f"unknown Whisper task {task!r}; choose one of {', '.join(TASKS)}")
    if getattr(gen, "is_multilingual", True) is False:
        if language not in (None, "en", "english") or task != "transcribe":
            raise ModelError(f"an English-only Whisper model cannot do language={language!r} task={task!r}")
        language, task = None, None
    elif not hasattr(gen, "lang_to_id") or not hasattr(gen, "task_to_id"):
        raise ModelError("the Whisper generation config has no lang_to_id/task_to_id (written by an old "
                         "transformers); update its generation_config.json")
    try:
        tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
        prefix = tokenizer.prefix_tokens
    except ValueError as err:
        raise ModelError(f"Whisper prefix: {err}") from err
    if language is not None and tokenizer.convert_ids_to_tokens(prefix[1]) not in gen.lang_to_id:
        raise ModelError(f"language {language!r} is not one of this Whisper model's languages")
    gen.language, gen.task = language, task
    gen.return_timestamps = False
    gen.forced_decoder_ids = None  # deprecated; would be ignored anyway once language/task are set
    if getattr(model.config, "forced_decoder_ids", None) is not None:
        model.config.forced_decoder_ids = None


# --- variable-length input -----------------------------------------------------------------------
class VariableLengthEncoder(WhisperEncoder):
    """HF's WhisperEncoder taking any even number of mel frames up to 3,000, not exactly 3,000: the
    same layers, with the first frames // 2 rows of the positional table. At 3,000 frames it computes
    what WhisperEncoder computes (transformers 5.24's forward, otherwise unchanged)."""

    @merge_with_config_defaults
    @capture_outputs
    def forward(self, input_features: torch.Tensor, attention_mask=None, **kwargs) -> BaseModelOutput:
        frames = input_features.shape[-1]
        limit = self.config.max_source_positions * self.conv1.stride[0] * self.conv2.stride[0]
        if frames > limit or frames % ENCODER_STRIDE:
            raise ModelError(f"the Whisper encoder takes an even number of mel frames up to {limit}, got {frames}")
        inputs_embeds = nn.functional.gelu(self.conv1(input_features))
        inputs_embeds = nn.functional.gelu(self.conv2(inputs_embeds)).permute(0, 2, 1)
        hidden_states = inputs_embeds + self.embed_positions.weight[: inputs_embeds.shape[1]]
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        for encoder_layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue  # LayerDrop: skip the layer
            hidden_states = encoder_layer(hidden_states, None, **kwargs)
        return BaseModelOutput(last_hidden_state=self.layer_norm(hidden_states))


def is_variable_length(config) -> bool:
    """Whether a model (its config) was set up to take windows shorter than 30 s."""
    return bool(getattr(config, VARIABLE_LENGTH, False))


def use_variable_length(model: torch.nn.Module, processor, on: bool) -> None:
    """Switch `model`'s Whisper encoder (seq2seq or encoder + CTC) to VariableLengthEncoder, or back
    to WhisperEncoder, and record the choice in the model config (saved with it) and on the
    processor (which collate reads)."""
    encoder = model.get_encoder()
    if not isinstance(encoder, WhisperEncoder):
        raise ModelError(f"{type(model).__name__} has no Whisper encoder")
    encoder.__class__ = VariableLengthEncoder if on else WhisperEncoder  # same module, new forward
    setattr(model.config, VARIABLE_LENGTH, bool(on))
    processor.variable_length = bool(on)


def window_samples(waves: Sequence[torch.Tensor], variable: bool) -> int:
    """Samples each utterance of a batch is padded (or cut) to: 30 s, or with `variable` the longest
    wave rounded up to whole encoder frames (20 ms), at least MIN_WINDOW, at most 30 s."""
    if not variable:
        return N_SAMPLES
    longest = max(len(w) for w in waves)
    return min(max(math.ceil(longest / WINDOW_STEP) * WINDOW_STEP, MIN_WINDOW), N_SAMPLES)


def mel_features(waves: Sequence[torch.Tensor], n_mels: int, variable: bool = False) -> torch.Tensor:
    """(B, n_mels, frames) log-mel features of 16 kHz waves: frames = 3,000 (30 s), or with
    `variable` window_samples // 160, as the model's encoder is set up to take."""
    options = WhisperMelOptions(n_mels=n_mels, n_samples=window_samples(waves, variable))
    return log_mel_spectrogram(list(waves), options=options)


# --- random initialisation ------------------------------------------------------------------------
def make_generation_config(tokenizer: WhisperTokenizer) -> GenerationConfig:
    """What `generate` needs, with the ids read from `tokenizer`: a multilingual Whisper's (with
    language and task tokens), or an English-only one's when the tokenizer has no <|en|>."""
    ids = tokenizer.convert_tokens_to_ids
    unknown = tokenizer.unk_token_id
    multilingual = is_multilingual(tokenizer)
    extra = {}
    if multilingual:
        lang_to_id = {f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES}
        extra = dict(lang_to_id={token: i for token, i in lang_to_id.items() if i != unknown},
                     task_to_id={task: ids(f"<|{task}|>") for task in TASKS}, language="en", task="transcribe")
    return GenerationConfig(
        decoder_start_token_id=ids(SOT), bos_token_id=ids(EOT), eos_token_id=ids(EOT), pad_token_id=ids(EOT),
        max_length=MAX_TARGET_POSITIONS, is_multilingual=multilingual,
        no_timestamps_token_id=ids(NO_TIMESTAMPS), prev_sot_token_id=ids("<|startofprev|>"),
        begin_suppress_tokens=[ids("Ġ"), ids(EOT)],  # no blank or empty transcript first (as Whisper)
        return_timestamps=False, **extra,
    )


def is_multilingual(tokenizer: WhisperTokenizer) -> bool:
    """Both vocabularies hold the same special tokens (language tokens too) after their BPE tokens;
    English-only models use GPT-2's BPE, one token shorter, so <|endoftext|> comes one id earlier."""
    return tokenizer.convert_tokens_to_ids(EOT) >= GPT2_BPE_TOKENS + 1


def init_whisper_model(
    out_dir: str | Path, size: str = "tiny", *, tokenizer_dir: str | Path, seed: int = 0,
    overwrite: bool = False, max_target_positions: int = MAX_TARGET_POSITIONS,
) -> Path:
    """Write a randomly initialised Whisper of `size` (a SIZES key) + processor to out_dir
    (safetensors), loadable with from_pretrained. The tokenizer is read from `tokenizer_dir`: a
    folder holding a WhisperTokenizer (multilingual, or English-only like tiny.en's), or an
    existing Whisper checkpoint. A short max_target_positions (decoder context) makes an untrained
    model's runaway decoding stop early: tests use one."""
    if size not in SIZES:
        raise ModelError(f"unknown Whisper size {size!r}; choose one of {', '.join(SIZES)}")
    try:
        tokenizer = WhisperTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError, TypeError) as err:  # TypeError: a folder without vocab files
        raise ModelError(f"{tokenizer_dir}: cannot load a Whisper tokenizer ({err})") from err
    if tokenizer.convert_tokens_to_ids(SOT) in (None, tokenizer.unk_token_id):
        raise ModelError(f"{tokenizer_dir}: not a Whisper tokenizer (no {SOT} token)")
    multilingual = is_multilingual(tokenizer)
    tokenizer.pad_token = EOT
    tokenizer.set_prefix_tokens(language="en" if multilingual else None, task="transcribe" if multilingual else None,
                                predict_timestamps=False)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=N_MELS),
                                 tokenizer=tokenizer)
    generation = make_generation_config(tokenizer)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=N_MELS, max_source_positions=N_FRAMES // 2,
        max_target_positions=max_target_positions, decoder_start_token_id=generation.decoder_start_token_id,
        pad_token_id=generation.pad_token_id, bos_token_id=generation.bos_token_id,
        eos_token_id=generation.eos_token_id, begin_suppress_tokens=generation.begin_suppress_tokens,
        architectures=["WhisperForConditionalGeneration"], **SIZES[size],
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation
    with staged_dir(out_dir, overwrite) as tmp:
        model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
    n = sum(p.numel() for p in model.parameters())
    log.info("wrote a random %s Whisper (%.2f M parameters) to %s", size, n / 1e6, out_dir)
    return Path(out_dir)


# --- labels and decoding --------------------------------------------------------------------------
def label_text(text: str) -> str:
    """A transcript as Whisper is trained on it: whitespace squeezed, one leading space."""
    return " " + " ".join(text.split())


def token_ids(processor: WhisperProcessor, texts: Sequence[str]) -> list[list[int]]:
    """<|startoftranscript|> + the rest of the prefix + the tokens of label_text + <|endoftext|>, per text."""
    tokenizer = processor.tokenizer
    sot, eot = tokenizer.convert_tokens_to_ids(SOT), tokenizer.convert_tokens_to_ids(EOT)
    rows = tokenizer([label_text(t) for t in texts]).input_ids if texts else []
    if rows and (rows[0][0] != sot or rows[0][-1] != eot):
        raise ModelError("the Whisper tokenizer adds no <|startoftranscript|> prefix or <|endoftext|>; "
                         "call set_prefix first")
    return rows


def make_labels(processor: WhisperProcessor, texts: Sequence[str],
                max_length: int = MAX_TARGET_POSITIONS) -> torch.Tensor:
    """(B, L) int64 labels: the tokenizer's prefix without <|startoftranscript|> (the model
    prepends it when it shifts the labels right), " text", <|endoftext|>, then -100 padding.

    The prefix is the one set by `load_whisper_model` / `set_prefix` (saved with our checkpoints).
    Training drops over-long transcripts beforehand (check_rows); here one is an error.
    """
    rows = []
    for i, (text, ids) in enumerate(zip(texts, token_ids(processor, texts))):
        if len(ids) > max_length:
            raise ModelError(f"transcript {i} ({text[:60]!r}...) is {len(ids)} tokens with its prefix; the "
                             f"Whisper decoder takes at most {max_length} (filter long transcripts out)")
        rows.append(ids[1:])
    labels = torch.full((len(rows), max(map(len, rows), default=0)), -100, dtype=torch.long)
    for i, ids in enumerate(rows):
        labels[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return labels


def input_features(model: torch.nn.Module, waves: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, n_mels, frames) log-mel features of 16 kHz waves on the model's device and dtype, matching
    WhisperFeatureExtractor: 3,000 frames (30 s, padded or cut), or the batch's own window for a
    model set up for variable-length input."""
    param = next(model.parameters())
    features = mel_features([w.to(param.device) for w in waves], model.config.num_mel_bins,
                            is_variable_length(model.config))
    return features.to(param.dtype)


def decode_batch(model: WhisperForConditionalGeneration, processor: WhisperProcessor,
                 waves: Sequence[torch.Tensor], options: DecodeOptions = DecodeOptions()) -> list[str]:
    """Transcripts of 16 kHz mono waves (samples,): the texts of transcribe_batch."""
    return [t.text for t in transcribe_batch(model, processor, waves, options)]


@torch.inference_mode()
def transcribe_batch(model: WhisperForConditionalGeneration, processor: WhisperProcessor,
                     waves: Sequence[torch.Tensor], options: DecodeOptions = DecodeOptions()) -> list[Transcript]:
    """Transcripts of 16 kHz mono waves (samples,) and how each was decoded: through `generate`
    (greedy when num_beams=1) with the model's prefix tokens, and Whisper's temperature fallback
    for runaway or unlikely output (asr_sft/models/whisper_decoding.py). Audio past 30 s is not
    seen (Whisper's window). The model is put in eval mode for the call and restored after.
    """
    features = input_features(model, waves)
    was_training = model.training
    model.eval()
    try:
        return whisper_decoding.transcribe(lora.inner_model(model), processor, waves, features, options)
    finally:
        model.train(was_training)


# --- options both Whisper families share ----------------------------------------------------------
@dataclass(frozen=True)
class WhisperEncoderOptions(lora.LoraOptions):
    """[model] options of the Whisper encoder, shared by `whisper` and `whisper_ctc` (LoRA: lora.py)."""

    # Feed the encoder only the batch's longest utterance (rounded up to 20 ms), not 30 s of
    # padding: much faster on short utterances. Saved with the model; decoding does the same.
    variable_length: bool = False
    freeze_encoder: bool = False  # train everything but the encoder (also its LoRA updates)
    # SpecAugment on the log-mel input, in training only (HF's WhisperModel._mask_input_features).
    apply_spec_augment: bool = False
    mask_time_prob: float = 0.05  # fraction of mel frames that start a time mask
    mask_time_length: int = 10  # mel frames per time mask (10 ms each)
    mask_feature_prob: float = 0.0  # fraction of mel bins that start a frequency mask
    mask_feature_length: int = 10  # mel bins per frequency mask
    dropout: float | None = None  # hidden, attention and activation dropout; None keeps the checkpoint's
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower

    def __post_init__(self):
        super().__post_init__()
        for name in ("mask_time_prob", "mask_feature_prob") + (("dropout",) if self.dropout is not None else ()):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise OptionError(f"model.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("mask_time_length", "mask_feature_length"):
            if getattr(self, name) < 1:
                raise OptionError(f"model.{name} must be >= 1, got {getattr(self, name)}")

    def config_overrides(self) -> dict:
        """The options that live in the model config (what from_pretrained accepts as kwargs)."""
        overrides = dict(apply_spec_augment=self.apply_spec_augment, mask_time_prob=self.mask_time_prob,
                         mask_time_length=self.mask_time_length, mask_feature_prob=self.mask_feature_prob,
                         mask_feature_length=self.mask_feature_length)
        if self.dropout is not None:
            overrides.update(dropout=self.dropout, attention_dropout=self.dropout, activation_dropout=self.dropout)
        return overrides


def prepare_for_training(model: torch.nn.Module, options: WhisperEncoderOptions, base: str,
                         train_whole: tuple[str, ...] = ()) -> torch.nn.Module:
    """Gradient checkpointing, LoRA (lora.add_lora; `train_whole` are trained in full beside the
    updates) and a frozen encoder, as `options` ask; returns the model to train."""
    if options.gradient_checkpointing:  # renamed activation checkpointing in transformers 5.x
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    encoder = model.get_encoder()
    model = lora.add_lora(model, options, base, train_whole)
    if options.freeze_encoder:
        encoder.requires_grad_(False)
    return model


def drop_long_rows(rows: Sequence[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Rows Whisper's 30 s window holds, and the others with the reason."""
    kept, dropped = [], []
    for row in rows:
        if float(row["duration"]) > MAX_INPUT_SECONDS:
            dropped.append((row, f"{float(row['duration']):.1f} s is longer than Whisper's "
                                 f"{MAX_INPUT_SECONDS:g} s window"))
        else:
            kept.append(row)
    return kept, dropped


# --- the family interface (asr_sft.models) --------------------------------------------------------
@dataclass(frozen=True)
class WhisperOptions(WhisperEncoderOptions):
    """The [model] section of a training config for `type = "whisper"` (seq2seq, cross-entropy)."""

    type: str = "whisper"  # the model family (asr_sft.models registry)
    name_or_path: str = ""  # hub id, local folder, checkpoint pointer or builtin:<name>
    language: str = "en"  # the prefix's language token (ignored by English-only models)
    task: str = "transcribe"  # "transcribe" or "translate"
    # Case of the training transcripts as Whisper sees them: "keep", "lower", or "sentence" (lower
    # case, first letter and "I" upper). Whisper was trained on written text; LibriSpeech-style
    # upper-case transcripts are rare, long BPE sequences to it, and fine-tuning on them teaches
    # it to shout: measured on the demo's data, dev WER 61% with "keep" vs 20% with "sentence".
    text_case: str = "keep"

    def __post_init__(self):
        if self.type != NAME:
            raise OptionError(f"model.type must be {NAME!r} for Whisper options, got {self.type!r}")
        if self.task not in TASKS:
            raise OptionError(f"model.task must be one of {', '.join(TASKS)}, got {self.task!r}")
        check_text_case(self.text_case, TEXT_CASES)
        super().__post_init__()


Options = WhisperOptions


def handles(config) -> bool:
    return config.model_type == "whisper" and "WhisperEncoderForCTC" not in (config.architectures or [])


def load(options: WhisperOptions, texts: Iterable[str], num_processes: int = 1):
    """(model, processor) to train, with the prefix for options.language/task."""
    lora.refuse_adapter(options.name_or_path)
    model, processor = load_whisper_model(options.name_or_path, options.language, options.task,
                                          variable_length=options.variable_length,
                                          overrides=options.config_overrides())
    processor.text_case = options.text_case  # read by collate
    return prepare_for_training(model, options, options.name_or_path), processor


def load_for_inference(name_or_path: str | Path, options: DecodeOptions):
    """(model, processor) of a checkpoint, or of a LoRA checkpoint: its base with the adapter on it."""
    folder = resolve_model(name_or_path)
    if not lora.is_adapter_dir(folder):
        return load_whisper_model(folder, options.language, options.task, variable_length=options.variable_length)
    variable = options.variable_length
    model, processor = load_whisper_model(
        lora.adapter_base(folder), options.language, options.task, processor=WhisperProcessor.from_pretrained(folder),
        variable_length=is_variable_length(WhisperConfig.from_pretrained(folder)) if variable is None else variable)
    return lora.load_adapter(model, folder), processor


def check_rows(processor: WhisperProcessor, rows: Sequence[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Rows Whisper can train on, and the others with the reason: audio over 30 s (the encoder
    would not hear its end) or labels over MAX_TARGET_POSITIONS tokens with the prefix."""
    kept, dropped = drop_long_rows(rows)
    fitting = []
    for row, ids in zip(kept, token_ids(processor, [r["text"] for r in kept])):
        if len(ids) > MAX_TARGET_POSITIONS:
            dropped.append((row, f"{len(ids)} tokens with the prefix and {EOT}; the Whisper decoder "
                                 f"takes at most {MAX_TARGET_POSITIONS}"))
        else:
            fitting.append(row)
    return fitting, dropped


def collate(processor: WhisperProcessor, rows: Sequence[dict], waves: Sequence[torch.Tensor]) -> dict:
    """log-mel input features (as decoding computes them) and prefix + text + <|endoftext|> labels."""
    features = mel_features(waves, processor.feature_extractor.feature_size,
                            getattr(processor, "variable_length", False))
    case = getattr(processor, "text_case", "keep")
    return {"input_features": features,
            "labels": make_labels(processor, [change_case(r["text"], case) for r in rows])}


def loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, int]]:
    """Token cross-entropy (the model shifts the labels right to make its decoder input)."""
    return model(**batch).loss, {}


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def freeze_schedule(model: torch.nn.Module, options: WhisperOptions) -> list[tuple[int, list[torch.nn.Parameter]]]:
    """Nothing is frozen for a number of steps (freeze_encoder freezes the encoder for good)."""
    return []


def oov_rate(processor: WhisperProcessor, texts: Iterable[str]) -> float:
    """Whisper's byte-level BPE spells any text: nothing is out of its vocabulary."""
    return 0.0
