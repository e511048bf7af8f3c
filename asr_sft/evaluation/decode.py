"""Decoding: a manifest through a CTC or Whisper checkpoint into `hyps.jsonl`.

    decode_manifest(model, manifest, out_dir) -> out_dir/hyps.jsonl + out_dir/decode.json

hyps.jsonl has one object per manifest row, in manifest order: id, ref (the manifest text, not
normalised), hyp, then the row's other fields (audio_filepath, duration, speaker, accent, ...).
decode.json records the model, the options and the timing: audio loading and feature->text
(device-synchronised) are timed apart, so RTFx = audio seconds / feature->text seconds, as the
Open ASR Leaderboard counts it.

Training-time evaluation calls `decode_rows` on the model it holds, through the same
`decode_batch`, so its WER and a standalone decode of the saved checkpoint agree.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from asr_sft.data.audio import SAMPLE_RATE
from asr_sft.data.batching import pack_batches
from asr_sft.errors import ManifestError, ModelError
from asr_sft.data.features import load_row
from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest
from asr_sft.models import config_family, family_of, get_family, model_family, unwrap
from asr_sft.models.options import DecodeOptions

log = logging.getLogger(__name__)

HYPS_NAME = "hyps.jsonl"
SUMMARY_NAME = "decode.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class DecodeTiming:
    utterances: int
    audio_seconds: float  # decoded audio at 16 kHz
    load_seconds: float  # wall time reading and resampling audio
    decode_seconds: float  # wall time from waveforms to text (features, model, detokenising), synchronised

    @property
    def rtfx(self) -> float:
        """Audio seconds transcribed per second of feature->text time (audio loading excluded)."""
        return self.audio_seconds / self.decode_seconds if self.decode_seconds > 0 else math.inf


# --- one batch ------------------------------------------------------------------------------------
def decode_batch(model: torch.nn.Module, processor, waves: Sequence[torch.Tensor],
                 options: DecodeOptions = DecodeOptions()) -> list[str]:
    """Transcripts of 16 kHz mono waves (samples,) with any family's model, on the model's device."""
    model = unwrap(model)
    return family_of(model).decode_batch(model, processor, waves, options)


# --- many rows ------------------------------------------------------------------------------------
def make_batches(rows: Sequence[dict], options: DecodeOptions) -> list[list[int]]:
    """Row indices in batches, longest utterances first (ties in manifest order)."""
    durations = np.array([float(r["duration"]) for r in rows])
    order = sorted(range(len(rows)), key=lambda i: -durations[i])
    budget = options.max_batch_seconds if options.max_batch_seconds is not None else math.inf
    return pack_batches(order, durations, budget, options.batch_size)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode_rows_timed(model: torch.nn.Module, processor, rows: Sequence[dict],
                      options: DecodeOptions = DecodeOptions()) -> tuple[list[str], DecodeTiming]:
    """Hypotheses for manifest rows (in row order) with the model where it is (its device and dtype;
    options.device/dtype are for decode_manifest's loading), and how long it took."""
    if not rows:
        raise ManifestError("no utterances to decode")
    device = next(unwrap(model).parameters()).device
    batches = make_batches(rows, options)
    if options.warmup:
        decode_batch(model, processor, [load_row(rows[i]) for i in batches[0]], options)
    hyps: list[str | None] = [None] * len(rows)
    load_s = decode_s = 0.0
    samples = 0
    with tqdm(total=len(rows), unit="utt", desc="decode", disable=not options.progress) as bar:
        for batch in batches:
            t0 = time.perf_counter()
            waves = [load_row(rows[i]) for i in batch]
            _synchronize(device)
            t1 = time.perf_counter()
            texts = decode_batch(model, processor, waves, options)
            _synchronize(device)
            t2 = time.perf_counter()
            load_s, decode_s = load_s + t1 - t0, decode_s + t2 - t1
            samples += sum(len(w) for w in waves)
            for i, text in zip(batch, texts):
                hyps[i] = text
            bar.update(len(batch))
    timing = DecodeTiming(len(rows), samples / SAMPLE_RATE, load_s, decode_s)
    return hyps, timing


def decode_rows(model: torch.nn.Module, processor, rows: Sequence[dict],
                options: DecodeOptions = DecodeOptions()) -> list[str]:
    """Hypotheses for manifest rows, in row order (see decode_rows_timed)."""
    return decode_rows_timed(model, processor, rows, options)[0]


# --- a manifest -----------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ModelError(f"unknown device {name!r} ({err})") from err


def load_model(name_or_path: str | Path,
               options: DecodeOptions = DecodeOptions()) -> tuple[torch.nn.Module, object]:
    """(model, processor) of a checkpoint of any family, in eval mode on options.device/dtype."""
    model, processor = get_family(model_family(str(name_or_path))).load_for_inference(str(name_or_path), options)
    model.to(device=resolve_device(options.device), dtype=DTYPES[options.dtype])
    return model.eval(), processor


def too_long_warning(model: torch.nn.Module, rows: Sequence[dict]) -> str | None:
    """What to tell the user when some rows are longer than the model hears (Whisper: 30 s)."""
    limit = family_of(unwrap(model)).MAX_INPUT_SECONDS
    long = 0 if limit is None else sum(float(r["duration"]) > limit for r in rows)
    if not long:
        return None
    return f"{long} utterance(s) longer than {limit:g} s; the model hears only their first {limit:g} s"


def hyp_rows(rows: Sequence[dict], hyps: Sequence[str]) -> list[dict]:
    """hyps.jsonl rows: id, ref, hyp, then every other manifest field of the row."""
    return [{"id": r["id"], "ref": r["text"], "hyp": h,
             **{k: v for k, v in r.items() if k not in ("id", "text")}}
            for r, h in zip(rows, hyps, strict=True)]


def decode_manifest(model_dir_or_id: str | Path, manifest: str | Path, out_dir: str | Path,
                    options: DecodeOptions = DecodeOptions()) -> Path:
    """Decode every row of `manifest`; write out_dir/hyps.jsonl (atomically, manifest order) and
    out_dir/decode.json (model, options, timing). Returns the path of hyps.jsonl."""
    rows = read_manifest(manifest)
    if not rows:
        raise ManifestError(f"{manifest}: no utterances to decode")
    model, processor = load_model(model_dir_or_id, options)
    family = config_family(model.config)
    if (warning := too_long_warning(model, rows)) is not None:
        log.warning("%s: %s", manifest, warning)
    hyps, timing = decode_rows_timed(model, processor, rows, options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in hyp_rows(rows, hyps)]
    write_text_atomic(out_dir / HYPS_NAME, "".join(lines))
    summary = {"model": str(model_dir_or_id), "family": family, "manifest": str(Path(manifest).absolute()),
               "device": str(next(model.parameters()).device), "options": asdict(options),
               **asdict(timing), "rtfx": timing.rtfx if math.isfinite(timing.rtfx) else None}
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    log.info("decoded %d utterances (%.1f s of audio): load %.2f s, decode %.2f s, RTFx %.1f",
             timing.utterances, timing.audio_seconds, timing.load_seconds, timing.decode_seconds, timing.rtfx)
    return out_dir / HYPS_NAME
