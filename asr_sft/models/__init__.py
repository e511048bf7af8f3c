"""Model families and the one registry the training loop and the decoder look them up in.

A family is a module with the same small interface; nothing outside it knows its internals:

    NAME                               the `model.type` that selects it in a training config
    Options                            frozen dataclass: the config's [model] section for it
    handles(hf_config) -> bool         whether a saved model (its config.json) belongs to it
    load(options, texts, num_processes) -> (model, processor)    for training
    load_for_inference(name_or_path, decode_options) -> (model, processor)
    collate(processor, rows, waves) -> dict of tensors          one micro-batch, labels included
    loss(model, batch) -> (loss, counts)                        counts: {name: int} to accumulate
    decode_batch(model, processor, waves, decode_options) -> list[str]
    transcribe_batch(...) -> list[Transcript]   optional: decode_batch with per-utterance decode facts
                                                (models/options.py); Whisper's counts its fallback
    trainable_parameters(model) -> list[Parameter]              what the optimizer updates
    check_rows(processor, rows) -> (kept, [(row, reason), ...])
        the manifest rows the model can train on, and the others with why (Whisper: over 30 s or
        over 448 tokens; CTC: no characters, or the word delimiter "|" in the text); the loop
        drops them from train and dev before training and reports them (log + dropped.jsonl)
    freeze_schedule(model, options) -> [(steps, [Parameter, ...]), ...]
        parameters the loop holds fixed for the first `steps` optimizer steps (whisper_ctc's
        freeze_encoder_steps); [] for none
    oov_rate(processor, texts) -> float                  optional (asr_sft.training.guard)
        the share of the text's characters the vocabulary lacks (CTC: each trains as <unk>;
        Whisper's BPE: 0.0); training refuses to start above data.max_oov_rate

`load` and `load_for_inference` return a peft model when LoRA is on (asr_sft.models.lora); a LoRA
checkpoint (an adapter folder) loads through `load_for_inference` onto its base.

Families: `ctc` (wav2vec2, HuBERT, WavLM, data2vec-audio + CTC), `whisper` (seq2seq) and
`whisper_ctc` (the Whisper encoder with a character CTC head).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from transformers import AutoConfig, PreTrainedConfig

from asr_sft.errors import ModelError
from asr_sft.models.resolve import resolve_model

# model.type -> module; the order is the order `family_of_config` asks them in (most specific first).
# whisper_ctc first: its config is a WhisperConfig and its architecture ends in ForCTC.
FAMILY_MODULES = {"whisper_ctc": "asr_sft.models.whisper_ctc", "whisper": "asr_sft.models.whisper",
                  "ctc": "asr_sft.models.ctc"}
CTC, WHISPER, WHISPER_CTC = "ctc", "whisper", "whisper_ctc"
FAMILIES = tuple(FAMILY_MODULES)


def get_family(name: str) -> ModuleType:
    """The family module for a `model.type`."""
    if name not in FAMILY_MODULES:
        raise ModelError(f"unknown model type {name!r}; choose one of {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name])


def config_family(config: PreTrainedConfig) -> str:
    """The family name of a model from its config (model_type and architectures)."""
    for name in FAMILY_MODULES:
        if get_family(name).handles(config):
            return name
    raise ModelError(
        f"model type {config.model_type!r} (architectures {config.architectures}) is neither a CTC "
        "model (*ForCTC) nor Whisper (seq2seq or WhisperEncoderForCTC)"
    )


def family_of(model) -> ModuleType:
    """The family module of a loaded model."""
    return get_family(config_family(model.config))


def model_family(name_or_path: str) -> str:
    """The family name of a hub id or local checkpoint folder (reads only its config.json)."""
    try:
        config = AutoConfig.from_pretrained(resolve_model(name_or_path))
    except (OSError, ValueError) as err:
        raise ModelError(f"{name_or_path}: cannot read a model config ({err})") from err
    return config_family(config)


def unwrap(model):
    """The transformers model inside DDP (.module) or torch.compile (._orig_mod) wrappers."""
    import torch

    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner
