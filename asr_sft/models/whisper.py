"""Whisper (`WhisperForConditionalGeneration`) with its real tokenizer and prefix tokens.

A transcript is trained as
    decoder input: <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> " text..."
    labels:        <|en|> <|transcribe|> <|notimestamps|> " text..." <|endoftext|>   (then -100)
The model builds the decoder input itself by shifting the labels right and prepending
decoder_start_token_id (<|startoftranscript|>), so the labels leave that token out (as the HF
fine-tuning blog does). The text starts with a space, as Whisper's own outputs do.

Language and task are set the transformers-5 way (generation_config.language / .task), never
through the deprecated forced_decoder_ids; evaluation goes through `generate`, like inference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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

from asr_sft.errors import ModelError, OptionError
from asr_sft.data.features import N_FRAMES, WhisperMelOptions, log_mel_spectrogram
from asr_sft.atomic import staged_dir
from asr_sft.models.options import MAX_NEW_TOKENS, DecodeOptions
from asr_sft.models.resolve import resolve_model

log = logging.getLogger(__name__)

MAX_TARGET_POSITIONS = 448  # decoder tokens Whisper can attend to (prefix + text + <|endoftext|>)
N_MELS = 80  # mel bins of every Whisper model up to large-v2 (large-v3: 128)
NAME = "whisper"  # model.type of this family
MAX_INPUT_SECONDS = 30.0  # the encoder's window; audio past it is not heard
SOT, EOT, NO_TIMESTAMPS = "<|startoftranscript|>", "<|endoftext|>", "<|notimestamps|>"
TASKS = ("transcribe", "translate")

# Randomly initialised shapes (`init_whisper_model`); the vocabulary is always the real 51,865 ids.
# "tiny" here is a test-sized model, not OpenAI's whisper-tiny (d_model 384, 4+4 layers).
SIZES = {
    "tiny": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256),  # ~3.5 M
    "small": dict(d_model=256, encoder_layers=4, decoder_layers=4, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024),  # ~20 M
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                 decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048),  # whisper-base, ~72 M
}


# --- loading --------------------------------------------------------------------------------------
def load_whisper_model(
    name_or_path: str | Path, language: str | None = "en", task: str = "transcribe"
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """(model, processor) of a Whisper checkpoint (hub id or local folder), with the prefix tokens
    for `language` and `task` set on both the generation config and the tokenizer."""
    name = resolve_model(name_or_path)
    try:
        processor = WhisperProcessor.from_pretrained(name)
        model = WhisperForConditionalGeneration.from_pretrained(name, dtype=torch.float32)  # see ctc.py
    except (OSError, ValueError) as err:
        raise ModelError(f"{name}: cannot load a Whisper model and processor ({err})") from err
    set_prefix(model, processor, language, task)
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


# --- random initialisation ------------------------------------------------------------------------
def make_generation_config(tokenizer: WhisperTokenizer) -> GenerationConfig:
    """What `generate` needs for a multilingual Whisper, with the ids read from `tokenizer`."""
    ids = tokenizer.convert_tokens_to_ids
    unknown = tokenizer.unk_token_id
    lang_to_id = {f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES}
    return GenerationConfig(
        decoder_start_token_id=ids(SOT), bos_token_id=ids(EOT), eos_token_id=ids(EOT), pad_token_id=ids(EOT),
        max_length=MAX_TARGET_POSITIONS, is_multilingual=True,
        lang_to_id={token: i for token, i in lang_to_id.items() if i != unknown},
        task_to_id={task: ids(f"<|{task}|>") for task in TASKS},
        no_timestamps_token_id=ids(NO_TIMESTAMPS), prev_sot_token_id=ids("<|startofprev|>"),
        begin_suppress_tokens=[ids("Ġ"), ids(EOT)],  # no blank or empty transcript first (as Whisper)
        return_timestamps=False, language="en", task="transcribe",
    )


def init_whisper_model(
    out_dir: str | Path, size: str = "tiny", *, tokenizer_dir: str | Path, seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a randomly initialised Whisper of `size` (a SIZES key) + processor to out_dir
    (safetensors), loadable with from_pretrained. The tokenizer is read from `tokenizer_dir`: a
    folder holding a multilingual WhisperTokenizer, or an existing Whisper checkpoint."""
    if size not in SIZES:
        raise ModelError(f"unknown Whisper size {size!r}; choose one of {', '.join(SIZES)}")
    try:
        tokenizer = WhisperTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError, TypeError) as err:  # TypeError: a folder without vocab files
        raise ModelError(f"{tokenizer_dir}: cannot load a Whisper tokenizer ({err})") from err
    if tokenizer.convert_tokens_to_ids("<|en|>") == tokenizer.unk_token_id:
        raise ModelError(f"{tokenizer_dir}: not a multilingual Whisper tokenizer (no <|en|> token)")
    tokenizer.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=N_MELS),
                                 tokenizer=tokenizer)
    generation = make_generation_config(tokenizer)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=N_MELS, max_source_positions=N_FRAMES // 2,
        max_target_positions=MAX_TARGET_POSITIONS, decoder_start_token_id=generation.decoder_start_token_id,
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
def make_labels(processor: WhisperProcessor, texts: Sequence[str],
                max_length: int = MAX_TARGET_POSITIONS) -> torch.Tensor:
    """(B, L) int64 labels: the tokenizer's prefix without <|startoftranscript|> (the model
    prepends it when it shifts the labels right), " text", <|endoftext|>, then -100 padding.

    The prefix is the one set by `load_whisper_model` / `set_prefix` (saved with our checkpoints).
    """
    tokenizer = processor.tokenizer
    sot = tokenizer.convert_tokens_to_ids(SOT)
    rows = []
    for i, text in enumerate(texts):
        ids = tokenizer(" " + " ".join(text.split())).input_ids
        if ids[0] != sot:
            raise ModelError("the Whisper tokenizer adds no <|startoftranscript|> prefix; "
                             "call set_prefix first")
        if len(ids) > max_length:
            raise ModelError(f"transcript {i} ({text[:60]!r}...) is {len(ids)} tokens with its prefix; the "
                             f"Whisper decoder takes at most {max_length} (filter long transcripts out)")
        rows.append(ids[1:])
    labels = torch.full((len(rows), max(map(len, rows), default=0)), -100, dtype=torch.long)
    for i, ids in enumerate(rows):
        labels[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return labels


def input_features(model: WhisperForConditionalGeneration, waves: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, n_mels, 3000) log-mel features of 16 kHz waves (padded or cut to 30 s) on the model's
    device and dtype, matching WhisperFeatureExtractor."""
    param = next(model.parameters())
    options = WhisperMelOptions(n_mels=model.config.num_mel_bins)
    return log_mel_spectrogram([w.to(param.device) for w in waves], options=options).to(param.dtype)


@torch.inference_mode()
def decode_batch(model: WhisperForConditionalGeneration, processor: WhisperProcessor,
                 waves: Sequence[torch.Tensor], options: DecodeOptions = DecodeOptions()) -> list[str]:
    """Transcripts of 16 kHz mono waves (samples,) through `generate` (greedy when num_beams=1),
    with the model's prefix tokens. Audio past 30 s is not seen (Whisper's window).

    The model is put in eval mode for the call and restored after.
    """
    features = input_features(model, waves)
    was_training = model.training
    model.eval()
    try:
        # Whisper's encoder takes no mask (every input is 30 s); an all-ones one just tells
        # `generate` so instead of warning that it cannot infer one.
        mask = torch.ones(features.shape[0], features.shape[2], dtype=torch.long, device=features.device)
        ids = model.generate(input_features=features, attention_mask=mask, num_beams=options.num_beams,
                             do_sample=False, max_new_tokens=options.max_new_tokens)
    finally:
        model.train(was_training)
    return [text.strip() for text in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]


# --- the family interface (asr_sft.models) --------------------------------------------------------
@dataclass(frozen=True)
class WhisperOptions:
    """The [model] section of a training config for `type = "whisper"` (seq2seq, cross-entropy)."""

    type: str = "whisper"  # the model family (asr_sft.models registry)
    name_or_path: str = ""  # hub id, local folder, checkpoint pointer or builtin:<name>
    language: str = "en"  # the prefix's language token (ignored by English-only models)
    task: str = "transcribe"  # "transcribe" or "translate"

    def __post_init__(self):
        if self.type != NAME:
            raise OptionError(f"model.type must be {NAME!r} for Whisper options, got {self.type!r}")
        if self.task not in TASKS:
            raise OptionError(f"model.task must be one of {', '.join(TASKS)}, got {self.task!r}")


Options = WhisperOptions


def handles(config) -> bool:
    return config.model_type == "whisper"


def load(options: WhisperOptions, texts: Iterable[str], num_processes: int = 1):
    """(model, processor) to train, with the prefix for options.language/task."""
    return load_whisper_model(options.name_or_path, options.language, options.task)


def load_for_inference(name_or_path: str | Path, options: DecodeOptions):
    return load_whisper_model(name_or_path, options.language, options.task)


def collate(processor: WhisperProcessor, rows: Sequence[dict], waves: Sequence[torch.Tensor]) -> dict:
    """log-mel input features (as decoding computes them) and prefix + text + <|endoftext|> labels."""
    options = WhisperMelOptions(n_mels=processor.feature_extractor.feature_size)
    return {"input_features": log_mel_spectrogram(list(waves), options=options),
            "labels": make_labels(processor, [r["text"] for r in rows])}


def loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, int]]:
    """Token cross-entropy (the model shifts the labels right to make its decoder input)."""
    return model(**batch).loss, {}


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
