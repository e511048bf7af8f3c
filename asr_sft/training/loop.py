"""Fine-tuning: one plain PyTorch loop on accelerate (devices, mixed precision, DDP) for every
model family.

Read top to bottom: `train` sets up data, model and optimizer, resumes from the latest checkpoint if
there is one, then runs `train_step` until `train.max_steps`, evaluating (decode + WER through the
same code as `asr-sft decode`/`score`) and saving checkpoints along the way. Everything that differs
between families (loading, which rows it can train on, collating, the loss, decoding, parameters
frozen for a while) is behind the family interface (asr_sft.models), chosen by config.model.type;
this module never asks which family it trains. Utterances filtered out (duration) or dropped by the
family (check_rows) are logged and listed in <output_dir>/dropped.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from asr_sft.training import checkpoint as ckpt
from asr_sft.training import guard
from asr_sft.data.augment import AugmentOptions, augment
from asr_sft.data.batching import BatchingOptions, DurationBatchSampler, padding_fraction
from asr_sft.training.config import Config, config_to_dict, save_config
from asr_sft.atomic import write_text_atomic
from asr_sft.errors import ManifestError
from asr_sft.data.features import load_row
from asr_sft.data.manifest import FilterOptions, filter_rows, read_manifest
from asr_sft.models import get_family

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Everything besides weights, optimizer and the sampler's position that a resumed run needs to
    continue exactly."""

    step: int = 0  # optimizer steps taken
    best_wer: float = math.inf
    nonfinite_steps: int = 0  # optimizer steps skipped because the gradient was NaN/inf
    # What the family's loss counted, summed (CTC: infeasible_utterances, labels longer than frames).
    counts: dict[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0  # real (unpadded) training audio seen, this rank


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    steps: int
    best_checkpoint: Path | None
    best_wer: float
    last_checkpoint: Path | None
    stopped_by: int | None = None  # the signal (SIGINT/SIGTERM) that stopped the run early, if any


# --- data -----------------------------------------------------------------------------------------
DROPPED_FILE = "dropped.jsonl"  # in the output folder: one {"split", "id", "reason"} per dropped row


def load_rows(manifest: str, config: Config, what: str, dropped: list[dict]) -> list[dict]:
    """The manifest's rows within data.min/max_duration; the others are logged and added to `dropped`."""
    # Deep: every audio file decoded once now (finite, as long as the manifest says), not mid-run.
    rows = read_manifest(manifest, skip_invalid=config.data.skip_invalid, deep=config.data.audio_check == "deep")
    kept, out = filter_rows(rows, FilterOptions(config.data.min_duration, config.data.max_duration))
    report_dropped(what, out, dropped, "filtered")
    if not kept:
        raise ManifestError(f"{manifest}: no {what} utterances left after filtering")
    return kept


def check_rows(family, processor, rows: list[dict], what: str, dropped: list[dict]) -> list[dict]:
    """The rows the model can train on (the family's check_rows); the others are logged and added
    to `dropped`, so a too-long transcript is reported up front instead of failing mid-run."""
    kept, out = family.check_rows(processor, rows)
    report_dropped(what, out, dropped, "dropped")
    if not kept:
        reasons = sorted({reason for _, reason in out})[:3]
        raise ManifestError(f"no {what} utterances the model can train on ({len(out)} dropped: {'; '.join(reasons)})")
    return kept


def report_dropped(what: str, out: list[tuple[dict, str]], dropped: list[dict], verb: str) -> None:
    for row, reason in out:
        log.warning("%s: %s %s: %s", what, verb, row["id"], reason)
        dropped.append({"split": what, "id": row["id"], "reason": reason})
    if out:
        log.warning("%s: %s %d utterance(s) (listed in %s)", what, verb, len(out), DROPPED_FILE)


def collate(family, processor, rows: list[dict], epoch: int = 0,
            augmentation: AugmentOptions = AugmentOptions()) -> dict:
    """One micro-batch: the family's tensors (inputs exactly as decoding builds them, and labels)
    plus the real audio seconds, which the loop pops for its throughput figures. With
    augmentation, each utterance is noised / speed-perturbed as (augment.seed, its id, the epoch)
    draw: the same in a resumed run, in any loader thread, and different in each epoch."""
    waves = [augment(load_row(r), str(r["id"]), augmentation, epoch, family.MAX_INPUT_SECONDS) for r in rows]
    batch = family.collate(processor, rows, waves)
    return {**batch, "audio_seconds": sum(r["duration"] for r in rows)}


# --- optimisation ---------------------------------------------------------------------------------
def lr_factor(step: int, config: Config) -> float:
    """Linear warm-up, then linear/cosine decay to 0 at max_steps, or constant."""
    warmup, total = config.optim.warmup_steps, config.train.max_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.optim.schedule == "constant":
        return 1.0
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    if config.optim.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def make_optimizer(model, params, config: Config):
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, betas=config.optim.betas,
                                  eps=config.optim.eps, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    return optimizer, scheduler


def hold_fixed(schedule: list[tuple[int, list]], step: int, ddp: bool) -> list[torch.nn.Parameter]:
    """The parameters the family's freeze_schedule holds fixed at `step`. Outside DDP they stop
    needing gradients (backward skips them) and start again when their steps are over; under DDP
    they keep them (DDP expects every gradient it was built with) and train_step drops them
    before the update, so the two give the same weights."""
    held = []
    for steps, params in schedule:
        frozen = step < steps
        for p in params:
            if not ddp:
                p.requires_grad_(not frozen)
            if frozen:
                held.append(p)
    return held


def train_step(family, model, optimizer, scheduler, micro_batches: list[dict], accelerator, config,
               state, held: list[torch.nn.Parameter] = ()) -> dict:
    """One optimizer step over grad_accum micro-batches; returns loss and grad norm. `held`
    parameters (hold_fixed) get no update: their gradients are dropped before clipping."""
    model.train()
    total_loss = 0.0
    for i, batch in enumerate(micro_batches):
        state.audio_seconds += batch.pop("audio_seconds")
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        # DDP: only the last micro-batch all-reduces gradients.
        sync = accelerator.no_sync(model) if i < len(micro_batches) - 1 else contextlib.nullcontext()
        with sync, accelerator.autocast():
            loss, counts = family.loss(model, batch)
            loss = loss / len(micro_batches)
        for name, n in counts.items():
            state.counts[name] = state.counts.get(name, 0) + n
        accelerator.backward(loss)
        total_loss += loss.detach().float()
    for p in held:
        p.grad = None  # AdamW skips a parameter without a gradient: no update, no moment change
    max_norm = config.optim.max_grad_norm or math.inf
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
    grad_norm = float(grad_norm) if grad_norm is not None else 0.0
    # Gradients are already all-reduced, so every rank takes the same decision here.
    if math.isfinite(grad_norm):
        optimizer.step()
    else:
        state.nonfinite_steps += 1
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return {"loss": float(accelerator.reduce(total_loss, "mean")), "grad_norm": grad_norm}


# --- batches across epochs ------------------------------------------------------------------------
class BatchStream:
    """Micro-batches in a deterministic order across epochs. It starts where the sampler stands (a
    restored sampler: where the checkpoint left off) and its position goes back into the sampler's
    own state_dict at every save, so a resumed run continues with exactly the batches an
    uninterrupted run would have seen. With `threads` > 0 the next `threads` batches are read and collated in
    background threads (soundfile and torch release the GIL) while the model trains on this one:
    a GPU step is faster than one thread decoding its audio."""

    def __init__(self, sampler: DurationBatchSampler, rows: list[dict], make_batch, threads: int = 0):
        self.sampler, self.rows, self.make_batch = sampler, rows, make_batch
        self.epoch, self.done = sampler.epoch, sampler.batches_yielded  # batches taken this epoch
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="collate") if threads else None
        self.ahead = threads
        self.pending: deque = deque()  # (epoch, position, batch indices, future or collated batch)
        self._epochs: dict[int, list[list[int]]] = {}

    def batches(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epochs:
            self.sampler.set_epoch(epoch)
            self._epochs = {e: b for e, b in self._epochs.items() if e >= epoch - 1}
            self._epochs[epoch] = self.sampler.batches()
        return self._epochs[epoch]

    def _next_position(self) -> tuple[int, int]:
        epoch, position = ((self.pending[-1][0], self.pending[-1][1] + 1) if self.pending
                           else (self.epoch, self.done))
        while position >= len(self.batches(epoch)):
            epoch, position = epoch + 1, 0
        return epoch, position

    def _fill(self) -> None:
        while len(self.pending) < self.ahead + 1:
            epoch, position = self._next_position()
            indices = self.batches(epoch)[position]
            rows = [self.rows[i] for i in indices]
            work = self.pool.submit(self.make_batch, rows, epoch) if self.pool else self.make_batch(rows, epoch)
            self.pending.append((epoch, position, indices, work))

    def take(self, n: int) -> tuple[list[dict], list[list[int]]]:
        """The next n collated micro-batches and their indices."""
        out, indices = [], []
        for _ in range(n):
            self._fill()
            epoch, position, batch, work = self.pending.popleft()
            self.epoch, self.done = epoch, position + 1
            indices.append(batch)
            out.append(work.result() if self.pool else work)
        return out, indices

    def state_dict(self) -> dict:
        """The sampler's own state at the position training has reached (see BatchStream)."""
        self.sampler.set_epoch(self.epoch)
        return self.sampler.state_dict(batches_done=self.done)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


# --- evaluation -----------------------------------------------------------------------------------
def evaluate(model, processor, rows: list[dict], config: Config) -> dict:
    """Dev WER through the same decoding and scoring code as `asr-sft decode` + `asr-sft score`."""
    from asr_sft.evaluation.decode import decode_rows
    from asr_sft.models.options import DecodeOptions
    from asr_sft.evaluation.scoring import score_texts

    hyps = decode_rows(model, processor, rows, DecodeOptions(max_batch_seconds=config.data.max_batch_seconds))
    summary = score_texts([r["text"] for r in rows], hyps, normalizer=config.train.eval_normalizer).summary()
    return {"dev_wer": summary.wer, "dev_cer": summary.cer, "dev_utterances": len(rows),
            "normalizer": summary.normalizer}


# --- the loop -------------------------------------------------------------------------------------
def resume(accelerator, model, optimizer, scheduler, sampler, output_dir: Path) -> TrainState:
    """Restore the newest checkpoint that loads, if any (an incomplete or corrupt newer one is
    reported and skipped), into the model, optimizer, scheduler and sampler (whose load_state_dict
    refuses a changed manifest, budget or replica count); otherwise a fresh state."""
    def restore(latest: Path) -> dict:
        saved = ckpt.load_trainer_state(latest)
        if "sampler" not in saved:
            raise ManifestError(f"{latest}: written by an older asr_sft without the sampler's state; "
                                "start a new train.output_dir")
        ckpt.load_weights(accelerator.unwrap_model(model), latest)
        sampler.load_state_dict(saved["sampler"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.restore_rng(saved["rng"])
        return saved

    found = ckpt.resume_newest(output_dir, restore)
    if found is None:
        return TrainState()
    latest, saved = found
    log.info("resumed from %s (step %d)", latest, saved["state"]["step"])
    return TrainState(**saved["state"])


def save(accelerator, model, processor, optimizer, scheduler, stream, state, config, metrics) -> Path | None:
    sampler_state = stream.state_dict()  # on every rank: it touches the sampler's epoch
    if not accelerator.is_main_process:
        return None
    trainer_state = {"state": vars(state).copy(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": ckpt.capture_rng(),
                     "sampler": sampler_state}
    path = ckpt.save_checkpoint(config.train.output_dir, state.step, accelerator.unwrap_model(model),
                                processor, trainer_state, config_to_dict(config), metrics)
    ckpt.update_pointers(config.train.output_dir, path)  # `best` from the checkpoints' own metrics
    ckpt.prune_checkpoints(config.train.output_dir, config.train.keep_last)
    return path


def train(config: Config, stop_at: int | None = None) -> TrainResult:
    """Train (or resume) until train.max_steps; `stop_at` ends the run early at that step, after its
    checkpoint, as a time-limited job or a crash would (the schedule still follows max_steps).
    Start-up checks, the folder's lock and SIGINT/SIGTERM handling: asr_sft.training.guard."""
    with guard.open_run(config) as run:
        return _train(config, stop_at, run)


def _train(config: Config, stop_at: int | None, run: guard.Run) -> TrainResult:
    out = Path(config.train.output_dir)
    cpu = config.train.device == "cpu" or (config.train.device == "auto" and not torch.cuda.is_available())
    accelerator = Accelerator(mixed_precision=config.train.precision, cpu=cpu)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    set_seed(config.train.seed)
    dropped: list[dict] = []
    train_rows = load_rows(config.data.train_manifest, config, "train", dropped)
    dev_rows = load_rows(config.data.dev_manifest, config, "dev", dropped)
    family = get_family(config.model.type)
    model, processor = family.load(config.model, [r["text"] for r in train_rows], accelerator.num_processes)
    train_rows = check_rows(family, processor, train_rows, "train", dropped)
    dev_rows = check_rows(family, processor, dev_rows, "dev", dropped)
    guard.check_vocabulary(family, processor, train_rows, dev_rows, config)
    if config.data.dev_max_utterances:
        dev_rows = dev_rows[: config.data.dev_max_utterances]
    schedule = family.freeze_schedule(model, config.model)
    optimizer, scheduler = make_optimizer(model, family.trainable_parameters(model), config)
    model, optimizer = accelerator.prepare(model, optimizer)
    sampler = DurationBatchSampler(
        [r["duration"] for r in train_rows],
        BatchingOptions(max_batch_seconds=config.data.max_batch_seconds,
                        max_batch_size=config.data.max_batch_size, num_buckets=config.data.num_buckets,
                        seed=config.train.seed),
        num_replicas=accelerator.num_processes, rank=accelerator.process_index,
    )
    state = resume(accelerator, model, optimizer, scheduler, sampler, out)
    if config.augment.enabled:
        log.info("augmentation: %s", config.augment)
    stream = BatchStream(sampler, train_rows,
                         lambda rows, epoch: collate(family, processor, rows, epoch, config.augment),
                         config.data.loader_threads)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "train_config.json")
        write_text_atomic(out / DROPPED_FILE, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dropped))
    logger = TrainLogger(out, config, accelerator.is_main_process, state)
    bar = tqdm(total=config.train.max_steps, initial=state.step, disable=not accelerator.is_main_process,
               desc="train")
    durations = [r["duration"] for r in train_rows]
    deadline = time.monotonic() + 60 * config.train.max_minutes if config.train.max_minutes else None
    run.armed = True  # from here a SIGINT/SIGTERM saves a checkpoint and stops
    while state.step < config.train.max_steps and state.step != stop_at:
        micro, indices = stream.take(config.optim.grad_accum)
        held = hold_fixed(schedule, state.step, accelerator.num_processes > 1)
        stats = train_step(family, model, optimizer, scheduler, micro, accelerator, config, state, held)
        logger.add(stats, indices)
        bar.update(1)
        if state.step % config.train.log_every == 0:
            bar.set_postfix(logger.flush(state, stream.epoch, scheduler.get_last_lr()[0], durations))
        timed_out = out_of_time(deadline, accelerator)
        if timed_out:
            log.warning("train.max_minutes=%s reached: stopping at step %d", config.train.max_minutes, state.step)
        stopping = run.should_stop(accelerator)  # SIGINT/SIGTERM: save this step (no evaluation), return
        evaluating = (state.step % config.train.eval_every == 0 or state.step == config.train.max_steps
                      or timed_out) and not stopping
        metrics = {}
        if evaluating and accelerator.is_main_process:
            metrics = evaluate(accelerator.unwrap_model(model), processor, dev_rows, config)
            logger.log_eval(state.step, metrics)
            state.best_wer = min(state.best_wer, metrics["dev_wer"])
        # Every evaluation is saved, so the best checkpoint always exists on disk.
        if evaluating or state.step % config.train.save_every == 0 or state.step == stop_at or stopping:
            save(accelerator, model, processor, optimizer, scheduler, stream, state, config, metrics)
            accelerator.wait_for_everyone()
        if timed_out or stopping:
            break
    bar.close()
    stream.close()
    logger.close()
    check_replicas_agree(model, accelerator)
    accelerator.wait_for_everyone()
    best = ckpt.read_pointer(out, "best")  # every process reads the main one's record
    best_wer = ckpt.read_metrics(best).get("dev_wer", math.inf) if best else math.inf
    return TrainResult(out, state.step, best, best_wer, ckpt.read_pointer(out, "latest"), run.stop_signal)


def out_of_time(deadline: float | None, accelerator) -> bool:
    """Whether the wall-clock budget is spent; under DDP the main process decides for everyone, so
    all processes stop at the same step."""
    if deadline is None:
        return False
    flag = torch.tensor([float(time.monotonic() > deadline)], device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, "max")
    return bool(flag.item())


def check_replicas_agree(model, accelerator) -> None:
    """Under DDP every process must hold the same weights; a silent divergence would make the saved
    checkpoint (rank 0's) unrepresentative, so compare a checksum across processes."""
    if accelerator.num_processes == 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    gathered = accelerator.gather(checksum.reshape(1).to(accelerator.device))
    if not torch.all(gathered == gathered[0]):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {gathered.tolist()}")
    log.info("all %d DDP replicas hold identical weights (checksum %.6f)",
             accelerator.num_processes, float(gathered[0]))


class TrainLogger:
    """Train loss, learning rate, throughput, padding and NaN/inf counts to train_log.jsonl and
    TensorBoard (main process only)."""

    def __init__(self, out: Path, config: Config, main: bool, state: TrainState):
        self.main, self.path = main, out / "train_log.jsonl"
        self.writer = None
        if main and config.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out / "tensorboard"))
        self._reset(state)

    def _reset(self, state: TrainState) -> None:
        self.stats, self.batches = [], []
        self.start, self.audio_mark = time.perf_counter(), state.audio_seconds

    def add(self, stats: dict, indices: list[list[int]]) -> None:
        self.stats.append(stats)
        self.batches += indices

    def flush(self, state: TrainState, epoch: int, lr: float, durations: list[float]) -> dict:
        """Write one record averaged since the last flush; returns what the progress bar shows."""
        n = max(len(self.stats), 1)
        record = {
            "step": state.step, "epoch": epoch,
            "loss": sum(s["loss"] for s in self.stats) / n,
            "grad_norm": sum(s["grad_norm"] for s in self.stats) / n,
            "lr": lr,
            # this process's real (unpadded) audio; multiply by the process count for the total
            "audio_seconds_per_second": (state.audio_seconds - self.audio_mark)
            / (time.perf_counter() - self.start),
            "padding_fraction": padding_fraction(self.batches, durations) if self.batches else 0.0,
            "nonfinite_steps": state.nonfinite_steps,
            **state.counts,
        }
        self._write(record)
        self._reset(state)
        return {"loss": f"{record['loss']:.3f}", "lr": f"{lr:.2e}"}

    def log_eval(self, step: int, metrics: dict) -> None:
        if metrics:
            self._write({"step": step, **metrics})

    def _write(self, record: dict) -> None:
        if not self.main:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.writer:
            self.writer.close()
