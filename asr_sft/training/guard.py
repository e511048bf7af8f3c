"""What a training run checks before it spends time, and what it holds while it runs.

At start (`open_run`, before any model is loaded):
  - the machine can honour the request: train.device=cuda needs a CUDA GPU; bf16/fp16 mixed
    precision needs one too (and bf16 one that supports it); train.eval_normalizer must exist.
    Numeric ranges are checked where the options are defined (asr_sft.training.config).
  - one run per output folder: <output_dir>/.lock is held with flock for the run's life, so a
    second `asr-sft train` into the same folder stops at once, naming the holder's pid.
  - leftovers of a killed save are removed and the `latest`/`best` pointers rewritten from the
    checkpoints themselves (asr_sft.training.checkpoint).
  - the folder holds this run and no other: its resolved config (less RESUMABLE_FIELDS) and the
    contents of its train and dev manifests are recorded in <output_dir>/run.json; a folder with
    checkpoints whose record differs is refused, listing the differences, unless
    train.resume_changed (`asr-sft train --resume-changed`) says to continue it anyway.
Then, once the model is loaded, `check_vocabulary` reports the share of the training text's
characters the model's vocabulary lacks (each becomes <unk>) and refuses above data.max_oov_rate.

While it trains, `Run` turns SIGINT and SIGTERM into a request to stop: the loop saves a checkpoint
after the current step and returns (exit status 128 + the signal's number from the CLI, so a
recipe stops too); a second signal aborts at once, without a checkpoint, as does one that arrives
before the first step (during the start-up checks and loading there is nothing new to save).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from asr_sft.atomic import write_text_atomic
from asr_sft.errors import AsrSftError, ManifestError, OptionError
from asr_sft.training import checkpoint as ckpt

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"  # in the output folder, flock-ed by the main process for the run's life
IDENTITY_FILE = "run.json"  # in the output folder: what makes this run this run
# Options that may change when a run is resumed without making it another run: how often it logs,
# evaluates and saves, how long it may take, how many threads it uses, and the start-up checks.
# Everything else (data, model, optimiser, schedule incl. train.max_steps, seed, precision,
# dev_max_utterances) shapes the weights, so changing it needs train.resume_changed.
RESUMABLE_FIELDS = frozenset({
    "train.output_dir", "train.resume_changed", "train.max_minutes", "train.log_every",
    "train.eval_every", "train.save_every", "train.keep_last", "train.num_threads",
    "train.tensorboard", "train.device", "data.loader_threads", "data.audio_check",
    "data.skip_invalid", "data.max_oov_rate",
})
MANIFEST_FIELDS = ("data.train_manifest", "data.dev_manifest")  # compared by content, not path
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunError(AsrSftError):
    """The output folder holds another run, or is in use by one."""


# --- the machine ----------------------------------------------------------------------------------
def check_environment(config) -> None:
    """OptionError (one line, exit 2) for requests this machine cannot honour."""
    from asr_sft.evaluation.text import get_normalizer

    train = config.train
    cuda = torch.cuda.is_available()
    if train.device == "cuda" and not cuda:
        raise OptionError("train.device=cuda, but no CUDA GPU is available here "
                          "(torch.cuda.is_available() is False); use train.device=cpu or auto")
    on_cpu = train.device == "cpu" or not cuda
    if train.precision != "no" and on_cpu:
        raise OptionError(f"train.precision={train.precision} (mixed precision) needs a CUDA GPU, but this run "
                          f"would train on the CPU (train.device={train.device}); use train.precision=no")
    if train.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise OptionError("train.precision=bf16, but this GPU does not support bfloat16; use fp16 or no")
    try:
        get_normalizer(train.eval_normalizer)
    except AsrSftError as err:
        raise OptionError(f"train.eval_normalizer: {err}") from err


# --- the vocabulary -------------------------------------------------------------------------------
def check_vocabulary(family, processor, train_rows: list[dict], dev_rows: list[dict], config) -> float:
    """The share of the training transcripts' characters the model cannot represent (the family's
    oov_rate hook; 0 for a family without one); ManifestError above data.max_oov_rate."""
    rate_of = getattr(family, "oov_rate", None)
    if rate_of is None:
        return 0.0
    limit = config.data.max_oov_rate
    rate = rate_of(processor, [r["text"] for r in train_rows])
    dev_rate = rate_of(processor, [r["text"] for r in dev_rows])
    log.info("out-of-vocabulary characters: %.2f%% of the training text, %.2f%% of the dev text",
             100 * rate, 100 * dev_rate)
    examples = getattr(family, "oov_characters", None)
    if rate > limit:
        shown = examples(processor, [r["text"] for r in train_rows]) if examples else []
        raise ManifestError(
            f"{config.data.train_manifest}: {rate:.1%} of the training transcripts' characters are "
            f"outside the model's vocabulary and would train as <unk> (data.max_oov_rate={limit:g})"
            + (f"; most common: {' '.join(repr(c) for c in shown)}" if shown else "")
            + "; normalise the text to the vocabulary (e.g. its letter case), build a new one "
              "(model.new_vocab=true), or raise data.max_oov_rate")
    if dev_rate > limit:
        log.warning("%s: %.1f%% of the dev transcripts' characters are outside the vocabulary; dev "
                    "WER counts them as errors the model cannot avoid", config.data.dev_manifest, 100 * dev_rate)
    return rate


# --- the run's identity ---------------------------------------------------------------------------
def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def run_identity(config) -> dict:
    """What must stay the same for a resumed run to be the same run (see RESUMABLE_FIELDS)."""
    flat = _flatten(dataclasses.asdict(config))
    identity = {k: v for k, v in flat.items() if k not in RESUMABLE_FIELDS and k not in MANIFEST_FIELDS}
    for name in MANIFEST_FIELDS:
        identity[f"{name}.sha256"] = _file_sha256(flat[name])
    return identity


def _recorded_identity(out: Path) -> dict | None:
    """The identity this folder's run recorded; for a run from before run.json, its config."""
    for path in [out / IDENTITY_FILE] + [p / ckpt.CONFIG_FILE for p in reversed(ckpt.list_checkpoints(out))]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if path.name == IDENTITY_FILE and isinstance(record, dict):
            return record
        if isinstance(record, dict):
            flat = _flatten(record)
            return {k: v for k, v in flat.items() if k not in RESUMABLE_FIELDS and k not in MANIFEST_FIELDS}
    return None


def identity_changes(recorded: dict, current: dict) -> list[str]:
    """'name: old -> new' for every option both know that differs (options added or removed
    since the record was written are not compared)."""
    changes = []
    for name in sorted(set(recorded) & set(current)):
        if recorded[name] != current[name]:
            what = "content changed" if name.endswith(".sha256") else f"{recorded[name]!r} -> {current[name]!r}"
            changes.append(f"{name.removesuffix('.sha256')}: {what}")
    return changes


def check_identity(config, out: Path) -> None:
    """Refuse (RunError) to continue a folder holding checkpoints of another run, unless
    train.resume_changed; then record this run's identity."""
    current = run_identity(config)
    if ckpt.list_checkpoints(out):
        recorded = _recorded_identity(out)
        changes = identity_changes(recorded, current) if recorded is not None else []
        if changes and not config.train.resume_changed:
            raise RunError(
                f"{out} holds checkpoints of another run ({'; '.join(changes)}): train into a new "
                "train.output_dir, resume with the run's own settings, or pass --resume-changed "
                "(train.resume_changed=true) to continue this run with the new ones")
        if changes:
            log.warning("%s: continuing the run with changed settings (train.resume_changed): %s",
                        out, "; ".join(changes))
    write_text_atomic(out / IDENTITY_FILE, json.dumps(current, indent=2) + "\n")


# --- the lock -------------------------------------------------------------------------------------
def _lock(out: Path) -> int:
    """A descriptor of <out>/.lock holding an exclusive flock; RunError when another holds it."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            raise RunError(f"{out} is in use by another training run (pid {holder}); two runs "
                           "into one folder would overwrite each other's checkpoints") from err
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


# --- signals --------------------------------------------------------------------------------------
class Run:
    """A running training job: its lock, and the stop requests SIGINT/SIGTERM make."""

    def __init__(self, out: Path, main: bool):
        self.out, self.main = out, main
        self.stop_signal: int | None = None  # the first stop signal received
        self.armed = False  # set by the loop once it trains: before that a signal aborts at once
        self._lock_fd: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.stop_signal is not None or not self.armed:  # the second one, or nothing to save yet
            self._restore_handlers()
            log.warning("%s %s: aborting without a checkpoint", "second" if self.armed else "before training:",
                        signal.Signals(signum).name)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.stop_signal = signum
        log.warning("%s received: stopping after this step with a checkpoint (send it again to "
                    "abort at once)", signal.Signals(signum).name)

    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread; a caller elsewhere keeps its own
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def should_stop(self, accelerator) -> bool:
        """Whether a stop signal arrived; under DDP, whether one reached any process (all agree)."""
        flag = self.stop_signal is not None
        if accelerator.num_processes > 1:
            tensor = torch.tensor([float(flag)], device=accelerator.device)
            flag = bool(accelerator.reduce(tensor, "max").item())
        return flag


def _is_main_process() -> bool:
    """Rank 0 by the launcher's environment (torchrun / accelerate launch set RANK)."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def open_run(config) -> Iterator[Run]:
    """The start-of-run checks (module docstring), then the lock and signal handlers, held until
    the block ends."""
    check_environment(config)
    out = Path(config.train.output_dir)
    run = Run(out, _is_main_process())
    try:
        if run.main:
            out.mkdir(parents=True, exist_ok=True)
            run._lock_fd = _lock(out)
            ckpt.clean_leftovers(out)
            ckpt.repair_pointers(out)
            check_identity(config, out)
        run._install_handlers()
        yield run
    finally:
        run._restore_handlers()
        if run._lock_fd is not None:
            os.close(run._lock_fd)  # releases the flock
