"""Checkpoints: atomic writes, keep-last-N, best-by-dev-WER, and exact resume.

Layout under <output_dir>/checkpoints/:
  step-000200/            model (safetensors) + processor, loadable with from_pretrained
    trainer_state.pt      optimizer, scheduler, sampler position, RNG states, step
    train_config.json     the resolved training config (config.json is the model's)
    metrics.json          dev WER etc. at this step
  latest                  name of the newest complete checkpoint
  best                    name of the checkpoint with the lowest dev WER

A checkpoint is written into a temporary folder and renamed into place, and the pointer files are
replaced atomically, so a crash mid-save never hides or corrupts a finished checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from asr_sft.atomic import write_text_atomic

STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "train_config.json"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def capture_rng() -> dict:
    """Every random state that affects training, so a resumed run replays the same numbers."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str | Path, step: int, model, processor, trainer_state: dict,
                    config_dict: dict, metrics: dict | None = None) -> Path:
    """Write a complete checkpoint atomically and point `latest` at it."""
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    torch.save(trainer_state, tmp / STATE_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps(config_dict, indent=2) + "\n")
    (tmp / METRICS_FILE).write_text(json.dumps(metrics or {}, indent=2) + "\n")
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it whole
        shutil.rmtree(final)
    tmp.rename(final)
    write_text_atomic(root / "latest", final.name + "\n")
    return final


def read_pointer(output_dir: str | Path, name: str) -> Path | None:
    """The checkpoint a pointer file (`latest` or `best`) names, if it exists and is complete."""
    pointer = checkpoint_dir(output_dir) / name
    if not pointer.is_file():
        return None
    path = checkpoint_dir(output_dir) / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def mark_best(output_dir: str | Path, checkpoint: Path) -> None:
    write_text_atomic(checkpoint_dir(output_dir) / "best", checkpoint.name + "\n")


def prune_checkpoints(output_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints; never the best or the latest."""
    root = checkpoint_dir(output_dir)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    protected = {read_pointer(output_dir, "best"), read_pointer(output_dir, "latest")}
    removed = []
    for path in steps[: max(len(steps) - keep_last, 0)]:
        if path not in protected:
            shutil.rmtree(path)
            removed.append(path)
    return removed


def load_trainer_state(checkpoint: Path) -> dict:
    # weights_only=False: the state holds numpy RNG tuples and python objects we wrote ourselves.
    return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)


def read_metrics(checkpoint: Path) -> dict:
    return json.loads((checkpoint / METRICS_FILE).read_text())
