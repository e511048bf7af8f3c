"""Checkpoints: atomic writes, keep-last-N, best-by-dev-WER, and exact resume without pickle.

Layout under <output_dir>/checkpoints/:
  step-000200/                 model (safetensors) + processor, loadable with from_pretrained
    trainer_state.json         step, scheduler, sampler position, python/numpy RNG states, ...
    trainer_state.safetensors  every tensor of the trainer state (optimizer moments, torch RNG)
    train_config.json          the resolved training config (config.json is the model's)
    metrics.json               dev WER etc. at this step
  latest                       name of the newest complete checkpoint
  best                         name of the checkpoint with the lowest dev WER

Nothing here is ever unpickled: the trainer state is JSON plus safetensors (a pickled
`trainer_state.pt`, as older versions wrote, is refused, because loading a pickle runs whatever
code it names). A checkpoint is written into `.step-N.tmp/`, fsynced, and renamed into place, so a
folder named step-N is always complete. The pointer files are conveniences for people and recipes;
the checkpoints are the truth: `best` is recomputed from the checkpoints' own metrics.json before
pruning and on every start, so a crash between pointer writes can never make pruning delete the
best checkpoint, and a resume starts from the newest checkpoint that loads, whatever `latest` says.

Test-only fault injection: with ASR_SFT_FAULT=<point>[@<step>] in the environment, the process
kills itself (SIGKILL) on reaching that point of save_checkpoint / update_pointers (at that step,
or at any). Points: FAULT_POINTS. tests/_fault_injection.py uses it; never set it otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from asr_sft.atomic import disk_full_error, free_bytes, is_disk_full, write_text_atomic
from asr_sft.errors import AsrSftError

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
TENSORS_FILE = "trainer_state.safetensors"
LEGACY_STATE_FILE = "trainer_state.pt"  # pickle, written before trainer_state.json: never loaded
METRICS_FILE = "metrics.json"
CONFIG_FILE = "train_config.json"
STATE_FORMAT = 1  # version of trainer_state.json's layout
FAULT_ENV = "ASR_SFT_FAULT"  # test-only, see the module docstring
FAULT_POINTS = ("mid-save", "before-rename", "between-pointers", "after-save")
NEARLY_FULL_BYTES = 1 << 20  # a save failing with less free than this (1 MiB) was a full disk
_STEP_DIR = re.compile(r"step-(\d+)")


class CheckpointError(AsrSftError):
    """A checkpoint is incomplete, corrupt, or of a kind we refuse to load."""


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def _fault(point: str, step: int) -> None:
    """Test-only: die here, as a power cut or an OOM kill would, when ASR_SFT_FAULT says so."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, at = wanted.partition("@")
    if name == point and (not at or int(at) == step):
        os.kill(os.getpid(), signal.SIGKILL)


# --- random states --------------------------------------------------------------------------------
def capture_rng() -> dict:
    """Every random state that affects training, so a resumed run replays the same numbers."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# --- trainer state: JSON + safetensors ------------------------------------------------------------
_NDARRAY_DTYPES = frozenset({"uint8", "uint32", "int32", "int64", "float32", "float64", "bool"})


def _encode(obj, tensors: dict[str, torch.Tensor]):
    """obj as JSON values; tensors go into `tensors` under a key the JSON names."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in the trainer state")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        if obj.get("dtype") not in _NDARRAY_DTYPES:
            raise CheckpointError(f"unexpected array dtype {obj.get('dtype')!r} in the trainer state")
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def write_trainer_state(folder: Path, trainer_state: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(trainer_state, tensors)
    save_file(tensors, str(folder / TENSORS_FILE), metadata={"format": str(STATE_FORMAT)})
    text = json.dumps({"format": STATE_FORMAT, "state": encoded})
    (folder / STATE_FILE).write_text(text + "\n", encoding="utf-8")


def load_trainer_state(checkpoint: Path) -> dict:
    """The trainer state of a checkpoint; CheckpointError when it is missing, truncated or a
    pickle (which is never loaded: unpickling runs code)."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / STATE_FILE).is_file():
        if (checkpoint / LEGACY_STATE_FILE).exists():
            raise CheckpointError(f"{checkpoint}: holds a pickled {LEGACY_STATE_FILE} (written by an "
                                  "older asr_sft, or planted); pickles can run code and are never "
                                  "loaded: start a new train.output_dir")
        raise CheckpointError(f"{checkpoint}: no {STATE_FILE}")
    try:
        record = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(checkpoint / TENSORS_FILE))
    except (OSError, ValueError, SafetensorError) as err:
        raise CheckpointError(f"{checkpoint}: trainer state is unreadable or truncated ({err})") from err
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{checkpoint}: {STATE_FILE} has an unknown format")
    try:
        return _decode(record["state"], tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{checkpoint}: {STATE_FILE} is inconsistent ({err})") from err


def load_weights(model, checkpoint: Path) -> None:
    """Load a checkpoint's trained weights into `model` (built as it was when saved; for a LoRA
    model its adapter); CheckpointError when they are missing, truncated or do not fit."""
    from asr_sft.models.lora import load_trained

    try:
        load_trained(model, checkpoint)
    except (OSError, ValueError, RuntimeError, SafetensorError, AsrSftError) as err:
        raise CheckpointError(f"{checkpoint}: model weights are missing, unreadable, truncated or do "
                              f"not fit the model ({err})") from err


# --- saving ---------------------------------------------------------------------------------------
def save_checkpoint(output_dir: str | Path, step: int, model, processor, trainer_state: dict,
                    config_dict: dict, metrics: dict | None = None) -> Path:
    """Write a complete checkpoint atomically (a step-N folder is never partial); then call
    update_pointers. StorageError when the disk is full (the partial folder is removed)."""
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    from asr_sft.models.lora import save_trained

    try:
        tmp.mkdir()
        save_trained(model, tmp)  # model.safetensors, or a LoRA model's adapter
        processor.save_pretrained(tmp)
        _fault("mid-save", step)
        write_trainer_state(tmp, trainer_state)
        (tmp / CONFIG_FILE).write_text(json.dumps(config_dict, indent=2) + "\n")
        (tmp / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2) + "\n")
        _fsync_tree(tmp)
    except BaseException as err:
        free = free_bytes(root)
        full = is_disk_full(err) or (free is not None and free < NEARLY_FULL_BYTES)
        shutil.rmtree(tmp, ignore_errors=True)
        if full and isinstance(err, Exception):
            raise disk_full_error(root, f"saving checkpoint {final.name}") from err
        raise
    _fault("before-rename", step)
    _replace_dir(tmp, final)
    return final


def _fsync_tree(folder: Path) -> None:
    """Flush every file and the folders themselves, so the rename below publishes complete data."""
    for path in sorted(folder.rglob("*"), reverse=True):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename tmp to final; an existing final (the same step saved again after a resume) is moved
    aside first and removed after, so some complete step-N exists at every moment."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


# --- finding checkpoints --------------------------------------------------------------------------
def step_of(path: Path) -> int | None:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match[1]) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """step-N folders holding a trainer state (or a legacy one), oldest first."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and step_of(p) is not None
             and ((p / STATE_FILE).is_file() or (p / LEGACY_STATE_FILE).exists())]
    return sorted(found, key=step_of)


def read_pointer(output_dir: str | Path, name: str) -> Path | None:
    """The checkpoint a pointer file (`latest` or `best`) names, if it exists and is complete."""
    pointer = checkpoint_dir(output_dir) / name
    try:
        target = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not _STEP_DIR.fullmatch(target):
        return None
    path = checkpoint_dir(output_dir) / target
    return path if (path / STATE_FILE).is_file() else None


def read_metrics(checkpoint: Path) -> dict:
    try:
        metrics = json.loads((Path(checkpoint) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def best_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint with the lowest dev WER in its own metrics.json (the later one on a tie, as
    training marks it), or None when none was evaluated."""
    best, best_wer = None, math.inf
    for path in list_checkpoints(output_dir):
        wer = read_metrics(path).get("dev_wer")
        if isinstance(wer, (int, float)) and not isinstance(wer, bool) and wer <= best_wer:
            best, best_wer = path, wer
    return best


def update_pointers(output_dir: str | Path, latest: Path) -> None:
    """Point `latest` at `latest` and `best` at best_checkpoint()."""
    root = checkpoint_dir(output_dir)
    write_text_atomic(root / "latest", latest.name + "\n")
    _fault("between-pointers", step_of(latest) or 0)
    best = best_checkpoint(output_dir)
    if best is not None:
        write_text_atomic(root / "best", best.name + "\n")
    _fault("after-save", step_of(latest) or 0)


def mark_best(output_dir: str | Path, checkpoint: Path) -> None:
    write_text_atomic(checkpoint_dir(output_dir) / "best", checkpoint.name + "\n")


def prune_checkpoints(output_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints; never the best (by the checkpoints' own
    metrics, whatever the `best` pointer says), the newest, or what a pointer names."""
    steps = list_checkpoints(output_dir)
    protected = {best_checkpoint(output_dir), read_pointer(output_dir, "best"),
                 read_pointer(output_dir, "latest"), steps[-1] if steps else None}
    removed = []
    for path in steps[: max(len(steps) - keep_last, 0)]:
        if path not in protected:
            shutil.rmtree(path)
            removed.append(path)
    return removed


# --- start of a run: leftovers, pointers, what to resume from -------------------------------------
def clean_leftovers(output_dir: str | Path) -> list[Path]:
    """Remove what a killed save leaves behind (.step-N.tmp folders, .<pointer>.*.part files) and
    put back a step-N that a kill left moved aside (.step-N.old) without its replacement."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".step-") and path.name.endswith(".old") and path.is_dir():
            final = root / path.name[1:].removesuffix(".old")
            if not final.exists():
                os.replace(path, final)
                log.warning("%s: restored from %s (a save was interrupted)", final, path.name)
                continue
        if path.name.startswith(".") and path.name.endswith((".tmp", ".part", ".old")):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed.append(path)
    if removed:
        log.warning("%s: removed %d leftover(s) of an interrupted save: %s", root, len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def repair_pointers(output_dir: str | Path) -> None:
    """Rewrite `latest` and `best` from the checkpoints themselves when they are wrong."""
    steps = [p for p in list_checkpoints(output_dir) if (p / STATE_FILE).is_file()]
    if not steps:
        return
    root, best = checkpoint_dir(output_dir), best_checkpoint(output_dir)
    for name, target in (("latest", steps[-1]), ("best", best)):
        if target is not None and read_pointer(output_dir, name) != target:
            log.warning("%s/%s named %s; it now names %s, the %s checkpoint", root, name,
                        _pointer_text(root / name), target.name,
                        "newest" if name == "latest" else "lowest-dev-WER")
            write_text_atomic(root / name, target.name + "\n")


def _pointer_text(pointer: Path) -> str:
    try:
        return repr(pointer.read_text(encoding="utf-8").strip()[:40])
    except (OSError, UnicodeDecodeError):
        return "nothing"


def resume_newest(output_dir: str | Path, restore) -> tuple[Path, object] | None:
    """(checkpoint, restore(checkpoint)) for the newest checkpoint that `restore` loads (it raises
    CheckpointError when one is incomplete or corrupt; load_trainer_state and load_weights do),
    or None when the run has no checkpoint. A newer one that does not load is reported and
    skipped; when none loads, CheckpointError: starting over would overwrite them."""
    candidates = list_checkpoints(output_dir)
    if not candidates:
        return None
    pointer = read_pointer(output_dir, "latest")
    problems = []
    for path in reversed(candidates):
        try:
            result = restore(path)
        except CheckpointError as err:
            log.warning("cannot resume from %s: %s", path.name, err)
            problems.append(str(err))
            continue
        if problems or pointer != path:
            log.warning("resuming from %s, the newest complete checkpoint (checkpoints/latest names "
                        "%s)", path, pointer.name if pointer else "nothing usable")
        return path, result
    raise CheckpointError(f"{checkpoint_dir(output_dir)}: {len(candidates)} checkpoint(s), none of which "
                          f"loads; refusing to start over and overwrite them: {'; '.join(problems[:3])}")
