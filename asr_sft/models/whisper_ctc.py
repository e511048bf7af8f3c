"""Whisper encoder + CTC: the pretrained encoder of any Whisper checkpoint with a new character CTC head.

Text is characters with asr_sft.models.ctc's rules and vocabulary (build_vocab: <pad> = 0 is the
blank, <unk>, "|" between words), and decoding is ctc's greedy_decode over the encoder frames each
utterance really has (50 a second), in training-time evaluation and `asr-sft decode` alike.

The model, WhisperEncoderForCTC, is a WhisperPreTrainedModel (save_pretrained / from_pretrained);
its config is a WhisperConfig whose vocab_size is the CTC vocabulary's, pad_token_id the blank and
architectures ["WhisperEncoderForCTC"], which is how `handles` tells it from seq2seq Whisper.
Loaded from a seq2seq checkpoint it takes the encoder's weights, leaves the decoder out and gets a
new head; from its own checkpoint it keeps its head (unless a new vocabulary is asked for).
Input is Whisper's log-mel window (30 s, or variable-length: see asr_sft.models.whisper).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor, WhisperConfig, WhisperFeatureExtractor
from transformers.modeling_outputs import CausalLMOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperModel, WhisperPreTrainedModel

from asr_sft.data.features import HOP_LENGTH
from asr_sft.errors import ModelError, OptionError
from asr_sft.models import ctc, lora
from asr_sft.models.options import DecodeOptions
from asr_sft.models.resolve import resolve_model
from asr_sft.models.whisper import (
    ENCODER_STRIDE, N_MELS, WhisperEncoderOptions, drop_long_rows, input_features, is_variable_length,
    mel_features, prepare_for_training, use_variable_length,
)

log = logging.getLogger(__name__)

NAME = "whisper_ctc"  # model.type of this family
MAX_INPUT_SECONDS = 30.0  # the encoder's window; audio past it is not heard
ARCHITECTURE = "WhisperEncoderForCTC"  # config.architectures of our checkpoints
HEAD = "ctc_head"  # the new layer (trained whole under LoRA)
ENCODER_FRAMES_PER_SECOND = 16000 / HOP_LENGTH / ENCODER_STRIDE  # 50


class WhisperEncoderForCTC(WhisperPreTrainedModel):
    """Whisper's encoder and a linear CTC head: (B, n_mels, frames) log-mel -> (B, frames // 2, vocab)
    logits. SpecAugment (config.apply_spec_augment, mask_*) is seq2seq Whisper's own."""

    _mask_input_features = WhisperModel._mask_input_features  # uses only self.config and self.training
    # Loading a seq2seq checkpoint: its decoder is left out on purpose, and the head is made anew.
    _keys_to_ignore_on_load_unexpected = [r"decoder\.", r"proj_out\."]
    _keys_to_ignore_on_load_missing = [r"ctc_head\."]

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size)
        self.post_init()

    def output_lengths(self, feature_lengths: torch.Tensor | None, frames: int) -> torch.Tensor | None:
        """Encoder frames of utterances `feature_lengths` mel frames long (conv2 halves them)."""
        if feature_lengths is None:
            return None
        return self._get_feat_extract_output_lengths(feature_lengths).clamp(max=frames)

    def forward(self, input_features: torch.Tensor, feature_lengths: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> CausalLMOutput:
        """feature_lengths (B,): each utterance's real mel frames (None: every frame is real);
        labels (B, L): character ids, -100 after each transcript's end."""
        input_features = self._mask_input_features(input_features)
        hidden = self.encoder(input_features, **kwargs).last_hidden_state
        logits = self.ctc_head(hidden)
        loss = None
        if labels is not None:
            lengths = self.output_lengths(feature_lengths, logits.shape[1])
            if lengths is None:
                lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
            loss = ctc_loss(logits, lengths, labels, self.config)
        return CausalLMOutput(loss=loss, logits=logits)


def ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """CTC loss as Wav2Vec2ForCTC computes it (float32 log-softmax; "mean": each utterance's loss
    divided by its label length, then averaged)."""
    log_probs = nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    valid = labels >= 0
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's CTC needs int32 targets on the CPU
        return nn.functional.ctc_loss(log_probs, labels.masked_select(valid), lengths, valid.sum(-1),
                                      blank=config.pad_token_id, reduction=config.ctc_loss_reduction,
                                      zero_infinity=config.ctc_zero_infinity)


# --- options and loading --------------------------------------------------------------------------
@dataclass(frozen=True)
class WhisperCTCOptions(WhisperEncoderOptions):
    """The [model] section of a training config for `type = "whisper_ctc"`."""

    type: str = "whisper_ctc"  # the model family (asr_sft.models registry)
    # Any Whisper checkpoint (its encoder is used), or a whisper_ctc checkpoint; hub id, folder,
    # checkpoint pointer or builtin:<name>.
    name_or_path: str = ""
    # Build the vocabulary from the training text and a new head even when the checkpoint has a
    # CTC head already (a seq2seq checkpoint always gets them).
    new_vocab: bool = False
    # Optimizer steps the encoder is held fixed at the start, so the new head learns first and its
    # random gradients do not disturb the pretrained encoder; 0 = train it from the first step.
    freeze_encoder_steps: int = 0
    ctc_loss_reduction: str = "mean"  # "mean": per-utterance loss divided by its label length
    ctc_zero_infinity: bool = True  # an utterance too short for its labels gives loss 0, not inf

    def __post_init__(self):
        if self.type != NAME:
            raise OptionError(f"model.type must be {NAME!r} for Whisper-CTC options, got {self.type!r}")
        if self.freeze_encoder_steps < 0:
            raise OptionError(f"model.freeze_encoder_steps must be >= 0, got {self.freeze_encoder_steps}")
        if self.ctc_loss_reduction not in ("mean", "sum"):
            raise OptionError(f"model.ctc_loss_reduction must be 'mean' or 'sum', got {self.ctc_loss_reduction!r}")
        super().__post_init__()


Options = WhisperCTCOptions


def handles(config) -> bool:
    return config.model_type == "whisper" and ARCHITECTURE in (config.architectures or [])


def load_whisper_ctc(name_or_path: str | Path, vocab: dict[str, int] | None = None,
                     options: WhisperCTCOptions | None = None, *,
                     variable_length: bool | None = None) -> tuple[WhisperEncoderForCTC, Wav2Vec2Processor]:
    """(model, processor) from a Whisper checkpoint (a new head for `vocab`) or a whisper_ctc one
    (its head and tokenizer, unless `vocab` differs from them). variable_length None: as
    options.variable_length, or without options as the checkpoint was trained."""
    training = options is not None
    if variable_length is None and training:
        variable_length = options.variable_length
    options = options or WhisperCTCOptions()
    name = resolve_model(name_or_path)
    try:
        config = WhisperConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ModelError(f"{name}: cannot read a Whisper config ({err})") from err
    ours = handles(config)
    if not ours and vocab is None:
        raise ModelError(f"{name}: a Whisper checkpoint without a CTC head; pass a vocabulary (build_vocab "
                         "of the training transcripts)")
    overrides = options.config_overrides()
    if not ours:  # the CTC shape; the decoder's special ids mean nothing here (the start id must be an int)
        blank = vocab[ctc.PAD_TOKEN]
        overrides.update(vocab_size=len(vocab), pad_token_id=blank, bos_token_id=None, eos_token_id=None,
                         decoder_start_token_id=blank, architectures=[ARCHITECTURE])
    try:
        model = WhisperEncoderForCTC.from_pretrained(name, dtype=torch.float32, **overrides)
        features = WhisperFeatureExtractor.from_pretrained(name)
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(name) if ours else None
    except (OSError, ValueError) as err:
        raise ModelError(f"{name}: cannot load the Whisper encoder + CTC model ({err})") from err
    if features.feature_size != model.config.num_mel_bins:
        features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins or N_MELS)
    if vocab is not None and (tokenizer is None or tokenizer.get_vocab() != vocab):
        tokenizer = ctc.make_tokenizer(vocab)
        reset_head(model, len(vocab))
    model.config.pad_token_id = tokenizer.pad_token_id  # the CTC blank
    for key in ("ctc_loss_reduction", "ctc_zero_infinity"):  # training's choice, else as saved
        if training or not hasattr(model.config, key):
            setattr(model.config, key, getattr(options, key))
    processor = Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer)
    use_variable_length(model, processor, is_variable_length(config) if variable_length is None else variable_length)
    return model, processor


def reset_head(model: WhisperEncoderForCTC, vocab_size: int) -> None:
    """A new (d_model -> vocab_size) head: normal(0, init_std) weights, zero bias (Whisper's own
    initialisation), and the size recorded in the config."""
    head = nn.Linear(model.config.d_model, vocab_size)
    nn.init.normal_(head.weight, mean=0.0, std=model.config.init_std)
    nn.init.zeros_(head.bias)
    model.ctc_head = head
    model.config.vocab_size = vocab_size
    log.info("new CTC head on the Whisper encoder: %d outputs", vocab_size)


# --- the family interface (asr_sft.models) --------------------------------------------------------
def load(options: WhisperCTCOptions, texts: Iterable[str], num_processes: int = 1):
    """(model, processor) to train: a vocabulary from `texts` for a seq2seq checkpoint or new_vocab."""
    lora.refuse_adapter(options.name_or_path)
    name = resolve_model(options.name_or_path)
    try:
        has_head = handles(WhisperConfig.from_pretrained(name))
    except (OSError, ValueError) as err:
        raise ModelError(f"{name}: cannot read a Whisper config ({err})") from err
    vocab = None
    if options.new_vocab or not has_head:
        vocab = ctc.build_vocab(t for t in texts if ctc.text_problem(t) is None)
    model, processor = load_whisper_ctc(name, vocab, options)
    return prepare_for_training(model, options, options.name_or_path, (HEAD,)), processor


def load_for_inference(name_or_path: str | Path, options: DecodeOptions):
    """(model, processor) of a checkpoint, or of a LoRA checkpoint: its base with the adapter on it."""
    folder = resolve_model(name_or_path)
    if not lora.is_adapter_dir(folder):
        return load_whisper_ctc(folder, variable_length=None, options=None)
    processor = Wav2Vec2Processor.from_pretrained(folder)
    variable = is_variable_length(WhisperConfig.from_pretrained(folder))
    model, _ = load_whisper_ctc(lora.adapter_base(folder), processor.tokenizer.get_vocab(), variable_length=variable)
    use_variable_length(model, processor, variable)
    return lora.load_adapter(model, folder), processor


def check_rows(processor: Wav2Vec2Processor, rows: Sequence[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Rows this model can train on, and the others with the reason: over 30 s, a transcript CTC
    cannot use (ctc.text_problem), or more labels (plus a blank between repeats) than encoder frames."""
    kept, dropped = drop_long_rows(rows)
    usable = []
    for row in kept:
        if (problem := ctc.text_problem(row["text"])) is not None:
            dropped.append((row, problem))
        else:
            usable.append(row)
    feasible = []
    for row, labels in zip(usable, ctc.make_labels(processor, [r["text"] for r in usable]) if usable else []):
        labels = labels[labels >= 0]
        needed = len(labels) + int((labels[1:] == labels[:-1]).sum())
        frames = int(float(row["duration"]) * ENCODER_FRAMES_PER_SECOND)
        if needed > frames:
            dropped.append((row, f"{needed} CTC labels (with a blank between repeats) but only {frames} "
                                 "encoder frames (50 a second)"))
        else:
            feasible.append(row)
    return feasible, dropped


def feature_lengths(waves: Sequence[torch.Tensor], frames: int) -> torch.Tensor:
    """(B,) int64 real mel frames of each wave in a window of `frames`."""
    return torch.tensor([min(len(w) // HOP_LENGTH, frames) for w in waves], dtype=torch.long)


def collate(processor: Wav2Vec2Processor, rows: Sequence[dict], waves: Sequence[torch.Tensor]) -> dict:
    """log-mel features as decoding computes them, each utterance's real mel frames, and CTC labels."""
    features = mel_features(waves, processor.feature_extractor.feature_size,
                            getattr(processor, "variable_length", False))
    return {"input_features": features, "feature_lengths": feature_lengths(waves, features.shape[-1]),
            "labels": ctc.make_labels(processor, [r["text"] for r in rows])}


def loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, int]]:
    """CTC loss (check_rows has dropped the utterances too short for their labels)."""
    return model(**batch).loss, {}


@torch.inference_mode()
def decode_batch(model: torch.nn.Module, processor: Wav2Vec2Processor, waves: Sequence[torch.Tensor],
                 options: DecodeOptions | None = None) -> list[str]:
    """Greedy CTC transcripts of 16 kHz mono waves (samples,), on the model's device and dtype; the
    model is put in eval mode for the call and restored after."""
    features = input_features(model, waves)
    lengths = feature_lengths(waves, features.shape[-1]).to(features.device)
    was_training = model.training
    model.eval()
    try:
        logits = model(features, feature_lengths=lengths).logits
    finally:
        model.train(was_training)
    frames = model.output_lengths(lengths, logits.shape[1])  # a peft model passes the call on
    return ctc.greedy_texts(processor.tokenizer, logits.argmax(dim=-1).cpu(), frames.cpu())


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def freeze_schedule(model: torch.nn.Module,
                    options: WhisperCTCOptions) -> list[tuple[int, list[torch.nn.Parameter]]]:
    """The encoder's trainable parameters (its own, or its LoRA updates) for freeze_encoder_steps."""
    if not options.freeze_encoder_steps:
        return []
    return [(options.freeze_encoder_steps, [p for p in model.get_encoder().parameters() if p.requires_grad])]
