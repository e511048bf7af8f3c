"""Model families: CTC encoders (`ctc.py`: wav2vec2, HuBERT, WavLM, data2vec-audio) and Whisper
(`whisper.py`). Both load from a hub id or a local folder with `from_pretrained`, the same way."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from importlib import resources
from collections.abc import Iterator
from pathlib import Path

from transformers import AutoConfig, PreTrainedConfig

from asr_sft.errors import ModelError

# Models shipped inside the package, usable wherever a hub id or folder is: "builtin:<name>".
BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = {"wav2vec2-small-en-us": "base_model"}  # name -> folder under asr_sft/assets

CTC = "ctc"
WHISPER = "whisper"
FAMILIES = (CTC, WHISPER)


# Files in a training run's checkpoints/ folder that name a checkpoint (see asr_sft.checkpoint).
POINTER_NAMES = ("best", "latest")


def follow_pointer(path: str | Path) -> Path | None:
    """The checkpoint folder that a `best` or `latest` pointer file names, else None."""
    path = Path(path)
    if path.name not in POINTER_NAMES or not path.is_file():
        return None
    target = path.parent / path.read_text(encoding="utf-8").strip()
    return target if target.is_dir() else None


def resolve_model(name_or_path: str | Path) -> str:
    """A hub id or folder as given, the checkpoint a `checkpoints/best` (or `latest`) pointer names,
    or the folder of a built-in model ("builtin:<name>")."""
    name = str(name_or_path)
    if (target := follow_pointer(name)) is not None:
        return str(target)
    if not name.startswith(BUILTIN_PREFIX):
        return name
    key = name.removeprefix(BUILTIN_PREFIX)
    if key not in BUILTIN_MODELS:
        raise ModelError(f"unknown built-in model {name!r}; built in: "
                         + ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_MODELS))
    folder = Path(str(resources.files("asr_sft") / "assets" / BUILTIN_MODELS[key]))
    if not (folder / "config.json").is_file():
        raise ModelError(f"{name}: not in this installation ({folder} is missing); "
                         "build it with recipes/synthetic_pretrain/run.sh")
    return str(folder)


def config_family(config: PreTrainedConfig) -> str:
    """CTC or WHISPER, from a model config (its model_type and architectures)."""
    if config.model_type == "whisper":
        return WHISPER
    if any(name.endswith("ForCTC") for name in (config.architectures or [])):
        return CTC
    raise ModelError(
        f"model type {config.model_type!r} (architectures {config.architectures}) is neither a CTC "
        "model (*ForCTC) nor Whisper"
    )


def model_family(name_or_path: str) -> str:
    """CTC or WHISPER for a hub id or local checkpoint folder (reads only its config.json)."""
    try:
        config = AutoConfig.from_pretrained(resolve_model(name_or_path))
    except (OSError, ValueError) as err:
        raise ModelError(f"{name_or_path}: cannot read a model config ({err})") from err
    return config_family(config)


@contextlib.contextmanager
def staged_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside `out_dir` that replaces out_dir when the block succeeds and is
    removed when it fails, so a half-written model folder never sits under out_dir's name."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise ModelError(f"{out_dir} already exists and is not empty (overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".part"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():  # os.replace cannot replace a non-empty folder: move it aside first
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
