"""LoRA adapters (peft) for every model family: options, adding them, saving them apart from the
base model, loading them back onto it, and merging them in.

A LoRA run trains small low-rank updates of the `lora_targets` linear layers (and, whole, any
new layer the family names: a fresh CTC head), the base weights fixed. Its checkpoints hold

    adapter_config.json        peft's config; base_model_name_or_path names the base model
    adapter_model.safetensors  the LoRA matrices and the layers trained whole
    config.json                the adapted model's own config (so its family can be read from it)
    (generation_config.json, the processor, and the trainer's files)

and no model.safetensors: the base weights come from the base model whenever the folder is loaded
(`load_for_inference` of any family accepts such a folder). `merge_adapter` writes an ordinary
checkpoint with the updates folded into the weights, for export or for training on.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from asr_sft.atomic import staged_dir
from asr_sft.errors import ModelError, OptionError
from asr_sft.models.resolve import follow_pointer

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"  # peft's file names
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FULL_WEIGHTS = "model.safetensors"  # what save_pretrained writes for a model without adapters
DEFAULT_TARGETS = "q_proj,v_proj"  # attention query and value projections (Whisper, wav2vec2 alike)


@dataclass(frozen=True)
class LoraOptions:
    """LoRA fields every family's [model] options share (a base class of each family's Options)."""

    lora_rank: int = 0  # rank r of each update; 0 = no LoRA (train the model's own weights)
    lora_alpha: float = 32.0  # the update is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.05  # dropout on each adapted layer's input, in training only
    # Comma-separated module names to adapt (matched against the end of each module's name).
    lora_targets: str = DEFAULT_TARGETS

    def __post_init__(self):
        if self.lora_rank < 0:
            raise OptionError(f"model.lora_rank must be >= 0 (0 = off), got {self.lora_rank}")
        if not self.lora_alpha > 0:
            raise OptionError(f"model.lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise OptionError(f"model.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_rank and not self.target_modules():
            raise OptionError("model.lora_targets names no modules")

    def target_modules(self) -> list[str]:
        return [name.strip() for name in self.lora_targets.split(",") if name.strip()]


# --- adding and recognising adapters --------------------------------------------------------------
def base_reference(name_or_path: str | Path) -> str:
    """How an adapter names its base: a checkpoint pointer as the folder it names now, a local
    folder as an absolute path, anything else (hub id, builtin:<name>) as given."""
    name = str(name_or_path)
    if (target := follow_pointer(name)) is not None:
        return str(target.resolve())
    return str(Path(name).resolve()) if Path(name).exists() else name


def add_lora(model: torch.nn.Module, options: LoraOptions, base: str | Path,
             train_whole: tuple[str, ...] = ()) -> torch.nn.Module:
    """`model` wrapped in a peft model with LoRA updates of options.lora_targets, or unchanged when
    options.lora_rank is 0. Only the updates and the `train_whole` modules (names, e.g. a new
    head) are trainable afterwards; `base` is recorded as the adapter's base model."""
    if not options.lora_rank:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                        target_modules=options.target_modules(), modules_to_save=list(train_whole) or None)
    try:
        with _quiet_peft():
            wrapped = get_peft_model(model, config)
    except ValueError as err:  # e.g. no module matches the targets
        raise ModelError(f"model.lora_targets={options.lora_targets!r}: {err}") from err
    wrapped.peft_config["default"].base_model_name_or_path = base_reference(base)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    log.info("LoRA rank %d on %s: %.3f M of %.2f M parameters trainable", options.lora_rank,
             options.lora_targets, trainable / 1e6, total / 1e6)
    return wrapped


@contextlib.contextmanager
def _quiet_peft():
    """peft 0.21 calls transformers 5's deprecated is_gradient_checkpointing: not our warning to show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_lora(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft model (the LoRA layers sit in it, so it computes with
    them), for code that needs the model's own class (GenerationMixin.generate); else `model`."""
    return model.get_base_model() if is_lora(model) else model


def is_adapter_dir(path: str | Path) -> bool:
    """Whether a folder (or checkpoint pointer) holds a LoRA adapter rather than whole weights."""
    path = follow_pointer(path) or Path(path)
    return (path / ADAPTER_CONFIG).is_file() and not (path / FULL_WEIGHTS).is_file()


def refuse_adapter(name_or_path: str | Path) -> None:
    """Training starts from whole weights: an adapter folder as the starting model is an error."""
    if Path(str(name_or_path)).exists() and is_adapter_dir(name_or_path):
        raise ModelError(f"{name_or_path}: a LoRA adapter checkpoint; merge it into its base first "
                         "(asr_sft.models.lora.merge_adapter) to train from it")


def adapter_base(path: str | Path) -> str:
    """The base model an adapter folder was trained on (as recorded: hub id, builtin:<name> or folder)."""
    from peft import PeftConfig

    try:
        base = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot read {ADAPTER_CONFIG} ({err})") from err
    if not base:
        raise ModelError(f"{path}/{ADAPTER_CONFIG}: names no base model (base_model_name_or_path)")
    return base


def load_adapter(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """`model` (the base, built as training built it) with the adapter in `path` loaded onto it."""
    from peft import PeftModel

    try:
        with _quiet_peft():
            return PeftModel.from_pretrained(model, str(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(f"{path}: cannot load the LoRA adapter onto its base ({err})") from err


# --- saving and restoring the trained weights -----------------------------------------------------
def save_trained(model: torch.nn.Module, folder: str | Path) -> None:
    """save_pretrained, and for a LoRA model also the adapted model's config (and generation config),
    so the adapter folder says which family and shape it belongs to."""
    folder = Path(folder)
    if not is_lora(model):
        model.save_pretrained(str(folder), safe_serialization=True)
        return
    # The adapter only. save_embedding_layers=False: peft would otherwise take a new head's size
    # (a CTC vocabulary) for a resized embedding and save embeddings the model does not have.
    model.save_pretrained(str(folder), safe_serialization=True, save_embedding_layers=False)
    base = model.get_base_model()
    base.config.save_pretrained(str(folder))
    if base.can_generate():
        base.generation_config.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's empty model card template


def load_trained(model: torch.nn.Module, folder: str | Path) -> None:
    """Load what `save_trained` wrote into `model` (built as it was when saved): every weight, or
    for a LoRA model its adapter. Missing or unexpected tensors are an error."""
    folder = Path(folder)
    if is_lora(model):
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        weights = load_file(folder / ADAPTER_WEIGHTS)
        expected = set(get_peft_model_state_dict(model))
        if set(weights) != expected:
            raise ModelError(f"{folder}/{ADAPTER_WEIGHTS}: adapter tensors differ from the model's (missing "
                             f"{sorted(expected - set(weights))[:3]}, unexpected {sorted(set(weights) - expected)[:3]})")
        set_peft_model_state_dict(model, weights)
        return
    result = model.load_state_dict(load_file(folder / FULL_WEIGHTS), strict=False)
    # save_pretrained writes a tied weight once (Whisper's proj_out is its embed_tokens).
    aliases = {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    missing = set(result.missing_keys) - aliases
    if missing or result.unexpected_keys:
        raise ModelError(f"{folder}/{FULL_WEIGHTS}: weights differ from the model's (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(result.unexpected_keys)[:3]})")


# --- merging --------------------------------------------------------------------------------------
def merge_adapter(folder: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the model of adapter checkpoint `folder` with its updates merged into the weights, as an
    ordinary checkpoint (model.safetensors + processor) in `out`, loadable with from_pretrained."""
    from asr_sft.models import get_family, model_family
    from asr_sft.models.options import DecodeOptions

    folder = follow_pointer(folder) or Path(folder)
    if not is_adapter_dir(folder):
        raise ModelError(f"{folder}: not a LoRA adapter checkpoint (no {ADAPTER_CONFIG}, or whole weights)")
    model, processor = get_family(model_family(str(folder))).load_for_inference(str(folder), DecodeOptions())
    merged = model.merge_and_unload()
    with staged_dir(out, overwrite) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        processor.save_pretrained(str(tmp))
        if (folder / "generation_config.json").is_file():  # the prefix training used, not the decoder's
            shutil.copyfile(folder / "generation_config.json", Path(tmp) / "generation_config.json")
    log.info("merged the adapter %s into %s", folder, out)
    return Path(out)
