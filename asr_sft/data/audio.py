"""Reading, down-mixing, resampling and writing audio. The only module that opens audio files.

Decoding is done by soundfile (libsndfile: FLAC, WAV, OGG/Vorbis, ...); resampling by torchaudio.
soundfile is imported on first use, so the rest of the data layer (SAMPLE_RATE, resample, and
the features and batching modules that import this one) works where it is not installed.
Every error names the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio.transforms as T

from asr_sft.atomic import atomic_path
from asr_sft.errors import AudioError

SAMPLE_RATE = 16000  # Hz: what every model in this pipeline consumes

# Subtypes written per container; FLAC is lossless and ~half the size of WAV.
_WRITE_SUBTYPE = {".flac": "PCM_16", ".wav": "PCM_16", ".ogg": "VORBIS"}


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int  # Hz
    frames: int  # samples per channel
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts of an audio file, without decoding it."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile raises a bare RuntimeError/LibsndfileError
        raise AudioError(f"{path}: cannot read audio header ({err})") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: audio file is empty (0 samples)")
    return AudioInfo(sample_rate=int(info.samplerate), frames=int(info.frames), channels=int(info.channels))


SCAN_BLOCK_FRAMES = 1 << 16  # frames decoded at a time by scan_audio (memory stays small)
TRUNCATION_TOLERANCE = 0.005  # a decode may end up to 0.5% short of the header's frame count


def scan_audio(path: str | Path) -> AudioInfo:
    """Decode the whole file once, block by block: its facts as decoded (frames = samples actually
    decoded). AudioError when it cannot be read or decoded to the end, decodes to fewer samples
    than its header promises (truncated), is empty, or holds NaN or infinite samples."""
    import soundfile as sf

    path = Path(path)
    info = audio_info(path)
    frames = 0
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=SCAN_BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioError(f"{path}: NaN or infinite samples (at about "
                                     f"{frames / info.sample_rate:.2f} s)")
                frames += block.shape[0]
    except AudioError:
        raise
    except Exception as err:  # libsndfile's errors on corrupt data
        raise AudioError(f"{path}: cannot decode audio after {frames / info.sample_rate:.2f} s ({err})") from err
    if frames == 0:
        raise AudioError(f"{path}: decoded 0 samples (corrupt or truncated file)")
    if frames < info.frames * (1 - TRUNCATION_TOLERANCE):
        raise AudioError(f"{path}: truncated: its header says {info.duration:.2f} s, it decodes to "
                         f"{frames / info.sample_rate:.2f} s")
    return AudioInfo(sample_rate=info.sample_rate, frames=frames, channels=info.channels)


def load_audio(
    path: str | Path,
    sample_rate: int | None = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Decode `path` to a mono float32 tensor of shape (samples,), in [-1, 1].

    offset, duration: seconds; only that slice is decoded. sample_rate: resample to this rate
    (None keeps the file's rate).
    """
    import soundfile as sf

    path = Path(path)
    info = audio_info(path)
    start = int(round(offset * info.sample_rate))
    stop = None if duration is None else start + int(round(duration * info.sample_rate))
    if start < 0 or start >= info.frames or (stop is not None and stop <= start):
        raise AudioError(
            f"{path}: slice offset={offset}s duration={duration}s is outside the file "
            f"({info.duration:.3f}s)"
        )
    try:
        data, file_rate = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"{path}: cannot decode audio ({err})") from err
    if data.shape[0] == 0:
        raise AudioError(f"{path}: decoded 0 samples (corrupt or truncated file)")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sample_rate is not None and file_rate != sample_rate:
        wave = resample(wave, file_rate, sample_rate)
    return wave


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited (sinc, Hann window) resampling along the last axis."""
    if orig_rate == new_rate:
        return wave
    return _resampler(orig_rate, new_rate, wave.dtype)(wave)


@lru_cache(maxsize=32)
def _resampler(orig_rate: int, new_rate: int, dtype: torch.dtype) -> T.Resample:
    # Building the sinc kernel costs as much as applying it to a short clip: build it once per pair.
    return T.Resample(orig_rate, new_rate, dtype=dtype)


def write_audio(path: str | Path, wave: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write a mono waveform (float in [-1, 1] or int16) atomically: a crash never leaves a
    half-written file under the final name. The format follows the extension."""
    import soundfile as sf

    path = Path(path)
    subtype = _WRITE_SUBTYPE.get(path.suffix.lower())
    if subtype is None:
        raise AudioError(f"{path}: unsupported output format (use one of {sorted(_WRITE_SUBTYPE)})")
    data = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if data.ndim != 1 or data.size == 0:
        raise AudioError(f"{path}: expected a non-empty mono waveform, got shape {data.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, sample_rate, subtype=subtype, format=path.suffix.lstrip(".").upper())
