"""Decoding: a manifest through a CTC or Whisper checkpoint into `hyps.jsonl`.

    decode_manifest(model, manifest, out_dir) -> out_dir/hyps.jsonl + out_dir/decode.json

hyps.jsonl has one object per manifest row, in manifest order: id, ref (the manifest text, not
normalised), hyp, then the row's other fields (audio_filepath, duration, speaker, accent, ...).
decode.json records the model, the options and the timing: audio loading and feature->text
(device-synchronised) are timed apart, so RTFx = audio seconds / feature->text seconds, as the
Open ASR Leaderboard counts it; RTFx per duration bucket ("by_duration": each utterance is charged
its batch's time over the batch size); and "guard": what Whisper's fallback caught (utterances
re-decoded, still failing, stopped at max_new_tokens, empty; see asr_sft/models/whisper_decoding.py).

Training-time evaluation calls `decode_rows` on the model it holds, through the same
`decode_batch`, so its WER and a standalone decode of the saved checkpoint agree.
"""

from __future__ import annotations

import contextlib
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
from asr_sft.errors import AudioError, ManifestError, ModelError
from asr_sft.data.features import load_row
from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest
from asr_sft.models import config_family, family_of, get_family, model_family, unwrap
from asr_sft.models.options import DecodeOptions, Transcript

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
    # {"id", "error"} of each utterance that could not be loaded or decoded; its hypothesis is "".
    errors: tuple[dict, ...] = ()

    @property
    def rtfx(self) -> float:
        """Audio seconds transcribed per second of feature->text time (audio loading excluded)."""
        return self.audio_seconds / self.decode_seconds if self.decode_seconds > 0 else math.inf


@dataclass(frozen=True)
class DecodeRun:
    """Everything decode_rows_report measured, in row order."""

    transcripts: tuple[Transcript, ...]
    timing: DecodeTiming
    utterance_seconds: tuple[float, ...]  # decode time charged to each row: its batch's / batch size

    @property
    def texts(self) -> list[str]:
        return [t.text for t in self.transcripts]


# --- one batch ------------------------------------------------------------------------------------
def decode_batch(model: torch.nn.Module, processor, waves: Sequence[torch.Tensor],
                 options: DecodeOptions = DecodeOptions()) -> list[str]:
    """Transcripts of 16 kHz mono waves (samples,) with any family's model, on the model's device."""
    return [t.text for t in transcribe_batch(model, processor, waves, options)]


def transcribe_batch(model: torch.nn.Module, processor, waves: Sequence[torch.Tensor],
                     options: DecodeOptions = DecodeOptions()) -> list[Transcript]:
    """decode_batch with what decoding did per utterance: the family's `transcribe_batch` where it
    has one (Whisper: fallback, token counts), else its decode_batch texts."""
    model = unwrap(model)
    family = family_of(model)
    if hasattr(family, "transcribe_batch"):
        return family.transcribe_batch(model, processor, waves, options)
    return [Transcript(text) for text in family.decode_batch(model, processor, waves, options)]


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


MIN_DECODE_SAMPLES = 400  # 25 ms: shorter clips are zero-padded to it (one wav2vec2 frame, one STFT window)


def _load_checked(row: dict) -> torch.Tensor:
    """A row's audio, finite and as long as the row says (else AudioError); a clip shorter than
    MIN_DECODE_SAMPLES is zero-padded to it, so it decodes the same in any batch."""
    from asr_sft.data.manifest import DURATION_TOLERANCE, DURATION_TOLERANCE_S

    wave = load_row(row)
    if not torch.isfinite(wave).all():
        raise AudioError(f"{row['audio_filepath']}: NaN or infinite samples")
    seconds, duration = len(wave) / SAMPLE_RATE, float(row["duration"])
    if row.get("offset") is None and abs(seconds - duration) > max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * duration):
        raise AudioError(f"{row['audio_filepath']}: holds {seconds:.2f} s of audio, but its row says {duration:g} s")
    if len(wave) < MIN_DECODE_SAMPLES:
        wave = torch.nn.functional.pad(wave, (0, MIN_DECODE_SAMPLES - len(wave)))
    return wave


def _transcribe_each(model, processor, rows, batch: list[int], waves, options, errors: list[dict],
                     failures: list[Exception]) -> list[Transcript]:
    """transcribe_batch; when the batch fails, each utterance alone; one that still fails gets ""
    and an entry in `errors` (its exception also in `failures`)."""
    try:
        return transcribe_batch(model, processor, waves, options)
    except Exception as err:  # noqa: BLE001: any failure of one batch must not end the decode
        if len(batch) > 1:
            log.warning("a batch of %d utterances failed (%s: %s); decoding them one by one", len(batch),
                        type(err).__name__, err)
        if len(batch) == 1:
            errors.append({"id": rows[batch[0]]["id"], "error": f"{type(err).__name__}: {err}"})
            failures.append(err)
            return [Transcript("")]
    return [_transcribe_each(model, processor, rows, [i], [w], options, errors, failures)[0]
            for i, w in zip(batch, waves)]


def decode_rows_report(model: torch.nn.Module, processor, rows: Sequence[dict],
                       options: DecodeOptions = DecodeOptions()) -> DecodeRun:
    """Transcripts for manifest rows (in row order) with the model where it is (its device and dtype;
    options.device/dtype are for decode_manifest's loading), and how long it took."""
    if not rows:
        raise ManifestError("no utterances to decode")
    device = next(unwrap(model).parameters()).device
    batches = make_batches(rows, options)
    if options.warmup:
        with contextlib.suppress(Exception):  # a bad utterance is reported by the timed pass
            transcribe_batch(model, processor, [_load_checked(rows[i]) for i in batches[0]], options)
    out: list[Transcript | None] = [None] * len(rows)
    charged = [0.0] * len(rows)
    load_s = decode_s = 0.0
    samples = 0
    errors: list[dict] = []  # one bad utterance costs its own hypothesis, never the decode
    failures: list[Exception] = []
    with tqdm(total=len(rows), unit="utt", desc="decode", disable=not options.progress) as bar:
        for planned in batches:
            t0 = time.perf_counter()
            batch, waves = [], []
            for i in planned:
                try:
                    waves.append(_load_checked(rows[i]))
                    batch.append(i)
                except AudioError as err:
                    errors.append({"id": rows[i]["id"], "error": str(err)})
                    out[i] = Transcript("")
            if not batch:
                bar.update(len(planned))
                continue
            _synchronize(device)
            t1 = time.perf_counter()
            transcripts = _transcribe_each(model, processor, rows, batch, waves, options, errors, failures)
            _synchronize(device)
            t2 = time.perf_counter()
            load_s, decode_s = load_s + t1 - t0, decode_s + t2 - t1
            samples += sum(len(w) for w in waves)
            for i, transcript in zip(batch, transcripts, strict=True):
                out[i], charged[i] = transcript, (t2 - t1) / len(batch)
            bar.update(len(planned))
    if failures and len(failures) == len(rows):  # nothing decoded at all: a fault, not bad input
        raise failures[-1]
    if errors:
        log.warning("%d of %d utterance(s) could not be decoded and have empty hypotheses: %s", len(errors),
                    len(rows), "; ".join(f"{e['id']}: {e['error']}" for e in errors[:3]))
    timing = DecodeTiming(len(rows), samples / SAMPLE_RATE, load_s, decode_s, tuple(errors))
    return DecodeRun(tuple(out), timing, tuple(charged))


def decode_rows_timed(model: torch.nn.Module, processor, rows: Sequence[dict],
                      options: DecodeOptions = DecodeOptions()) -> tuple[list[str], DecodeTiming]:
    """Hypotheses for manifest rows, in row order, and how long they took (see decode_rows_report)."""
    run = decode_rows_report(model, processor, rows, options)
    return run.texts, run.timing


def decode_rows(model: torch.nn.Module, processor, rows: Sequence[dict],
                options: DecodeOptions = DecodeOptions()) -> list[str]:
    """Hypotheses for manifest rows, in row order (see decode_rows_report)."""
    return decode_rows_report(model, processor, rows, options).texts


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


def guard_counts(rows: Sequence[dict], run: DecodeRun):
    """What the decoding guard did on these rows (asr_sft.evaluation.results.DecodeCounts)."""
    from asr_sft.evaluation.results import DecodeCounts

    return DecodeCounts.from_transcripts([str(r["id"]) for r in rows], run.transcripts)


def speed_by_duration(rows: Sequence[dict], run: DecodeRun):
    """RTFx per duration bucket (asr_sft.evaluation.results.BucketSpeed), shortest first."""
    from asr_sft.evaluation.results import BucketSpeed

    return BucketSpeed.from_utterances([float(r["duration"]) for r in rows], run.utterance_seconds)


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
    run = decode_rows_report(model, processor, rows, options)
    timing = run.timing
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in hyp_rows(rows, run.texts)]
    write_text_atomic(out_dir / HYPS_NAME, "".join(lines))
    guard = guard_counts(rows, run)
    summary = {"model": str(model_dir_or_id), "family": family, "manifest": str(Path(manifest).absolute()),
               "device": str(next(model.parameters()).device), "options": asdict(options),
               **asdict(timing), "rtfx": timing.rtfx if math.isfinite(timing.rtfx) else None,
               "by_duration": [asdict(b) for b in speed_by_duration(rows, run)], "guard": guard.to_dict()}
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    log.info("decoded %d utterances (%.1f s of audio): load %.2f s, decode %.2f s, RTFx %.1f",
             timing.utterances, timing.audio_seconds, timing.load_seconds, timing.decode_seconds, timing.rtfx)
    if guard.redecoded or guard.at_max_tokens:
        log.warning("%s: %d utterance(s) re-decoded by temperature fallback, %d still failing its checks, "
                    "%d stopped at max_new_tokens (ids in %s)", manifest, guard.redecoded, guard.still_failing,
                    guard.at_max_tokens, out_dir / SUMMARY_NAME)
    return out_dir / HYPS_NAME
