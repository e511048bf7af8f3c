"""Acoustic conditions beyond accent: additive noise at a chosen SNR and speed perturbation, for
training (`augment`, called per utterance by the collate path) and for fixed-SNR test sets
(`make_noisy_sets`, so "robust to noise" is measured the way "robust to accent" is).

Noise sources: "white" (Gaussian), "pink" (1/f power, shaped in the frequency domain), "babble"
(a sum of BABBLE_VOICES other utterances, each at equal power) and noise files (any format
asr_sft.data.audio reads; looped when shorter than the utterance, a random stretch when longer).

Determinism: every random choice for an utterance comes from a generator seeded by (seed, row id,
epoch), so the result is the same whatever the batch order, thread or worker count. The noisy test
sets use the same noise stretch for an utterance at every SNR: only its level changes.

SNR is signal power over noise power, 10*log10(mean(clean^2) / mean(noise^2)), over the whole
utterance. When clean + noise would exceed MAX_PEAK the mixture is scaled down as a whole (the
SNR is unchanged; the gain is recorded in noisy test sets).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from asr_sft.atomic import write_text_atomic
from asr_sft.data.audio import SAMPLE_RATE, load_audio, resample, write_audio
from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.errors import AudioError, ManifestError, OptionError

SYNTHETIC_NOISES = ("white", "pink", "babble")
BABBLE_VOICES = 4  # utterances summed into one babble signal
MAX_PEAK = 0.99  # full scale is 1.0; a mixture above this is scaled down
SPEED_RANGE = (0.5, 2.0)  # allowed speed factors
NOISY_SUMMARY = "noisy_summary.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AugmentOptions:
    noise: tuple[str, ...] = ()  # "white", "pink", "babble" and/or noise file paths; one drawn per utterance
    noise_prob: float = 0.5  # chance that an utterance gets noise (when `noise` is not empty)
    snr_db: tuple[float, float] = (5.0, 20.0)  # SNR drawn uniformly from [low, high] dB
    speeds: tuple[float, ...] = (1.0,)  # speed factors, one drawn per utterance; 1.1 = 10% faster
    seed: int = 0
    babble_manifest: str = ""  # manifest whose utterances make babble (needed for "babble")
    babble_pool: int = 64  # utterances of babble_manifest held in memory (chosen by the seed)

    def __post_init__(self):
        if not 0.0 <= self.noise_prob <= 1.0:
            raise OptionError(f"augment.noise_prob must be in [0, 1], got {self.noise_prob}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise OptionError(f"augment.snr_db must be [low, high] with low <= high, got {list(self.snr_db)}")
        if not self.speeds or any(not SPEED_RANGE[0] <= s <= SPEED_RANGE[1] for s in self.speeds):
            raise OptionError(f"augment.speeds must be factors in {list(SPEED_RANGE)}, got {list(self.speeds)}")
        if "babble" in self.noise and not self.babble_manifest:
            raise OptionError("augment.noise has 'babble' but augment.babble_manifest is empty")
        if self.babble_pool < 2:
            raise OptionError(f"augment.babble_pool must be >= 2, got {self.babble_pool}")

    @property
    def enabled(self) -> bool:
        return bool(self.noise and self.noise_prob > 0) or any(s != 1.0 for s in self.speeds)


# --- the training hook ---------------------------------------------------------------------------
def augment(wave: torch.Tensor, row_id: str, options: AugmentOptions, epoch: int = 0,
            max_seconds: float | None = None) -> torch.Tensor:
    """One utterance (samples,) at 16 kHz, speed-perturbed and/or noised as `options` draw for
    (row_id, epoch). Returns a new float32 tensor; `wave` is not modified. A slow-down that would
    make the utterance longer than `max_seconds` (a model's window) keeps the original speed."""
    if not options.enabled:
        return wave
    rng = utterance_rng(options.seed, row_id, epoch)
    speed = float(options.speeds[rng.integers(len(options.speeds))])
    if max_seconds is not None and wave.shape[-1] / speed > max_seconds * SAMPLE_RATE:
        speed = 1.0  # the draws that follow are unchanged, so the noise stays the same
    noisy = rng.random() < options.noise_prob and bool(options.noise)
    out = speed_perturb(wave, speed)
    if noisy:
        kind = options.noise[rng.integers(len(options.noise))]
        snr = rng.uniform(*options.snr_db)
        noise = make_noise(kind, out.shape[-1], rng, _bank(options), exclude_id=row_id)
        out, _ = mix_at_snr(out, noise, snr)
    return out.to(torch.float32)


def utterance_rng(seed: int, row_id: str, epoch: int = 0) -> np.random.Generator:
    """A generator fixed by (seed, row id, epoch): the same draws in any order or process."""
    digest = hashlib.sha256(f"asr_sft.augment {seed} {epoch} {row_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def speed_perturb(wave: torch.Tensor, factor: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Play `factor` times faster (pitch moves with it, as Kaldi/ESPnet speed perturbation does):
    resample from sample_rate * factor to sample_rate, so the length becomes len / factor."""
    if factor == 1.0:
        return wave
    return resample(wave, int(round(sample_rate * factor)), sample_rate)


def mix_at_snr(clean: torch.Tensor, noise: torch.Tensor, snr_db: float) -> tuple[torch.Tensor, float]:
    """clean + noise scaled to `snr_db`, and the gain applied to both afterwards (1.0 unless the
    mixture would pass MAX_PEAK). A silent utterance is returned unchanged (SNR is undefined)."""
    if noise.shape != clean.shape:
        raise AudioError(f"noise has shape {tuple(noise.shape)}, utterance {tuple(clean.shape)}")
    clean64, noise64 = clean.to(torch.float64), noise.to(torch.float64)
    p_clean, p_noise = clean64.pow(2).mean().item(), noise64.pow(2).mean().item()
    if p_clean == 0.0:
        return clean.clone(), 1.0
    if p_noise == 0.0:
        raise AudioError("noise is silent: cannot scale it to an SNR")
    mixed = clean64 + noise64 * math.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10)))
    peak = mixed.abs().max().item()
    gain = MAX_PEAK / peak if peak > MAX_PEAK else 1.0
    return (mixed * gain).to(torch.float32), gain


def measure_snr(clean: torch.Tensor, noisy: torch.Tensor, gain: float = 1.0) -> float:
    """SNR (dB) of `noisy` against the clean utterance it was made from (with the mixture's gain)."""
    clean64 = clean.to(torch.float64) * gain
    noise = noisy.to(torch.float64) - clean64
    return 10 * math.log10(clean64.pow(2).mean().item() / noise.pow(2).mean().item())


# --- noise ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseBank:
    files: dict[str, torch.Tensor]  # noise file path -> waveform at 16 kHz
    babble: tuple[tuple[str, str | None, torch.Tensor], ...]  # (row id, speaker, waveform) to mix


def make_noise(kind: str, samples: int, rng: np.random.Generator, bank: NoiseBank | None = None,
               exclude_id: str | None = None, exclude_speaker: str | None = None) -> torch.Tensor:
    """`samples` of noise of `kind` ("white", "pink", "babble" or a file in `bank`). Babble never
    uses the utterance `exclude_id`, nor (when others remain) the speaker `exclude_speaker`."""
    if kind == "white":
        return torch.from_numpy(rng.standard_normal(samples))
    if kind == "pink":
        return pink_noise(samples, rng)
    if kind == "babble":
        return _babble(samples, rng, bank, exclude_id, exclude_speaker)
    if bank is None or kind not in bank.files:
        raise AudioError(f"noise {kind!r} is not white, pink, babble or a loaded noise file")
    return _stretch(bank.files[kind], samples, rng)


def pink_noise(samples: int, rng: np.random.Generator) -> torch.Tensor:
    """Noise whose power falls as 1/f: white noise with each frequency bin scaled by 1/sqrt(f)."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0  # the DC bin keeps its (tiny) value instead of dividing by zero
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), n=samples)
    return torch.from_numpy(pink / (pink.std() or 1.0))


def _stretch(source: torch.Tensor, samples: int, rng: np.random.Generator) -> torch.Tensor:
    """A random stretch of `samples` from `source`, looped when it is shorter."""
    if source.shape[0] < samples:
        source = source.repeat(math.ceil(samples / source.shape[0]) + 1)
    start = int(rng.integers(source.shape[0] - samples + 1))
    return source[start:start + samples].to(torch.float64)


def _babble(samples: int, rng: np.random.Generator, bank: NoiseBank | None, exclude_id: str | None,
            exclude_speaker: str | None) -> torch.Tensor:
    voices = [v for v in (bank.babble if bank else ()) if v[0] != exclude_id]
    others = [v for v in voices if exclude_speaker is None or v[1] != exclude_speaker]
    voices = others if others else voices
    if not voices:
        raise AudioError("babble needs other utterances to mix, and there are none")
    picks = rng.choice(len(voices), size=min(BABBLE_VOICES, len(voices)), replace=False)
    mixed = torch.zeros(samples, dtype=torch.float64)
    for i in sorted(picks.tolist()):
        voice = _stretch(voices[i][2], samples, rng)
        power = voice.pow(2).mean().sqrt().item()
        mixed += voice / power if power > 0 else voice
    return mixed


def load_bank(noise: Sequence[str], babble_rows: Sequence[dict] = (), babble_pool: int = 64,
              seed: int = 0) -> NoiseBank:
    """Noise files of `noise` loaded at 16 kHz, and up to `babble_pool` of `babble_rows` (chosen by
    the seed, independent of row order) for babble."""
    files = {}
    for item in noise:
        if item not in SYNTHETIC_NOISES:
            files[item] = load_audio(item)
            if files[item].pow(2).mean().item() == 0.0:
                raise AudioError(f"{item}: noise file is silent")
    babble = ()
    if "babble" in noise:
        rows = sorted(babble_rows, key=lambda r: str(r["id"]))
        order = utterance_rng(seed, "babble pool").permutation(len(rows))[:babble_pool]
        babble = tuple((str(rows[i]["id"]), rows[i].get("speaker"), _load_row(rows[i])) for i in sorted(order))
        if len(babble) < 2:
            raise AudioError(f"babble needs at least 2 utterances to choose from, got {len(babble)}")
    return NoiseBank(files, babble)


@lru_cache(maxsize=4)
def _bank(options: AugmentOptions) -> NoiseBank:
    # Loaded once per options (the collate threads share it); babble rows come from a manifest.
    rows = read_manifest(options.babble_manifest) if "babble" in options.noise else ()
    return load_bank(options.noise, rows, options.babble_pool, options.seed)


def _load_row(row: dict) -> torch.Tensor:
    if row.get("offset") is not None:
        return load_audio(row["audio_filepath"], offset=float(row["offset"]), duration=float(row["duration"]))
    return load_audio(row["audio_filepath"])


# --- noisy test sets -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NoisySet:
    snr_db: float
    manifest: Path
    utterances: int
    mean_measured_snr_db: float  # over the utterances, measured on the float mixture before writing


def noise_label(noise: Sequence[str]) -> str:
    """The noise's name in conditions and file names: the kind, a file's stem, or "files"."""
    if len(noise) == 1:
        return noise[0] if noise[0] in SYNTHETIC_NOISES else _SAFE.sub("_", Path(noise[0]).stem)
    return "files"


def make_noisy_sets(manifest: str | Path, snrs: Sequence[float], noise: Sequence[str], out_dir: str | Path,
                    seed: int = 0, babble_pool: int = 64) -> list[NoisySet]:
    """For each SNR, write every utterance of `manifest` with noise added at exactly that SNR
    (16 kHz FLAC under <out_dir>/<label>_snr<snr>dB/) and one manifest <out_dir>/<label>_snr<snr>dB.jsonl.

    Rows keep their id, text, speaker and accent (so clean and noisy scores pair by id) and gain
    custom {"condition": "<label>@<snr>dB", "noise", "snr_db", "gain", "source_audio"}. Babble is
    made from the manifest's other utterances (other speakers where there are any)."""
    if not snrs:
        raise OptionError("noisy: give at least one SNR")
    if not noise:
        raise OptionError("noisy: give a noise (white, pink, babble or noise files)")
    if len(set(snrs)) != len(snrs):
        raise OptionError(f"noisy: SNRs repeat: {list(snrs)}")
    mixed_kinds = [n for n in noise if n in SYNTHETIC_NOISES]
    if mixed_kinds and len(noise) > 1:
        raise OptionError(f"noisy: give one of white/pink/babble, or noise files, not {list(noise)}")
    rows = read_manifest(manifest)
    if not rows:
        raise ManifestError(f"{manifest}: no utterances")
    bank = load_bank(noise, rows, babble_pool, seed)
    label, out = noise_label(noise), Path(out_dir)
    names = _file_names([r["id"] for r in rows])
    sums, written = {snr: 0.0 for snr in snrs}, {snr: [] for snr in snrs}
    for row in rows:
        clean = _load_row(row)
        rng = utterance_rng(seed, str(row["id"]))
        kind = noise[int(rng.integers(len(noise)))]
        base = make_noise(kind, clean.shape[0], rng, bank, exclude_id=str(row["id"]),
                          exclude_speaker=row.get("speaker"))
        for snr in snrs:
            noisy, gain = mix_at_snr(clean, base, snr)
            sums[snr] += measure_snr(clean, noisy, gain)
            stem = f"{label}_snr{snr:g}dB"
            path = out / stem / f"{names[row['id']]}.flac"
            write_audio(path, noisy, SAMPLE_RATE)
            written[snr].append(_noisy_row(row, path, noisy.shape[0], label, snr, gain))
    results = []
    for snr in snrs:
        path = write_manifest(out / f"{label}_snr{snr:g}dB.jsonl", written[snr])
        results.append(NoisySet(snr, path, len(rows), sums[snr] / len(rows)))
    summary = {"manifest": str(Path(manifest).absolute()), "noise": list(noise), "seed": seed,
               "sets": [{**asdict(r), "manifest": str(r.manifest)} for r in results]}
    write_text_atomic(out / NOISY_SUMMARY, json.dumps(summary, indent=1) + "\n")
    return results


def _noisy_row(row: dict, path: Path, samples: int, label: str, snr: float, gain: float) -> dict:
    source = {"source_audio": row["audio_filepath"]}
    if row.get("offset") is not None:
        source["source_offset"] = row["offset"]
    custom = {**(row.get("custom") or {}), "condition": f"{label}@{snr:g}dB", "noise": label,
              "snr_db": float(snr), "gain": round(gain, 6), **source}
    out = {k: v for k, v in row.items() if k != "offset"}
    return {**out, "audio_filepath": str(path.absolute()), "duration": samples / SAMPLE_RATE,
            "sampling_rate": SAMPLE_RATE, "custom": custom}


def _file_names(ids: Sequence) -> dict:
    """A file-system-safe, unique name per id (a hash suffix where two ids clean to the same name)."""
    clean = {i: _SAFE.sub("_", str(i)).strip("._") or "utt" for i in ids}
    counts = {}
    for name in clean.values():
        counts[name] = counts.get(name, 0) + 1
    return {i: name if counts[name] == 1 else f"{name}-{hashlib.sha1(str(i).encode()).hexdigest()[:8]}"
            for i, name in clean.items()}
