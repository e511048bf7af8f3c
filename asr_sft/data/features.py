"""Acoustic features, batched, computed with torch on the device of the input tensors.

Three kinds:
  wav2vec2     the waveform normalised to zero mean / unit variance per utterance over its real
               samples, as `transformers.Wav2Vec2FeatureExtractor(do_normalize=True)` does;
  fbank        Kaldi log mel filterbank (`torchaudio.compliance.kaldi.fbank`);
  whisper_mel  Whisper's log-mel spectrogram, matching `transformers.WhisperFeatureExtractor`.

Every function takes a batch as either a list of 1-D float tensors (samples,) at 16 kHz, or a padded
(B, T) tensor plus lengths (B,). Samples past an utterance's length are ignored (treated as silence).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from asr_sft.data.audio import SAMPLE_RATE, load_audio
from asr_sft.errors import AsrSftError, AudioError

N_FFT = 400  # samples per STFT window: 25 ms at 16 kHz
HOP_LENGTH = 160  # samples between STFT frames: 10 ms at 16 kHz
CHUNK_LENGTH = 30  # seconds: Whisper always sees a 30 s chunk
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480,000 samples in a chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3,000 mel frames in a chunk (the last STFT frame is dropped)
MEL_FMAX = SAMPLE_RATE / 2  # Hz: Whisper's filterbank spans 0 Hz to Nyquist
LOG_FLOOR = 1e-10  # mel power floor before log10
DYNAMIC_RANGE = 8.0  # log10 units (80 dB) kept below each utterance's loudest bin
NORM_EPS = 1e-7  # added to the variance, as Wav2Vec2FeatureExtractor does
KINDS = ("whisper_mel", "fbank", "wav2vec2")

Waves = Sequence[torch.Tensor] | torch.Tensor


@dataclass(frozen=True)
class WhisperMelOptions:
    n_mels: int = 80  # mel bins: 80 for Whisper up to large-v2, 128 for large-v3
    # Pad with zeros or trim every utterance to this many samples, as Whisper does (30 s).
    # None: pad to the longest utterance of the batch instead (not what Whisper models expect).
    n_samples: int | None = N_SAMPLES
    # Utterances per STFT call. None: 1 on CPU, where a whole batch's STFT (~80 MB for 16 chunks)
    # runs ~2x slower than one utterance at a time (fresh allocations and cache misses dominate);
    # the whole batch on other devices, where one large call is fastest. Results do not depend on it.
    stft_batch: int | None = None

    def __post_init__(self):
        if self.n_mels < 1 or (self.stft_batch is not None and self.stft_batch < 1):
            raise ValueError(f"n_mels and stft_batch must be >= 1: {self}")
        if self.n_samples is not None and self.n_samples < N_FFT:
            raise ValueError(f"n_samples must be at least one STFT window ({N_FFT}): {self}")


@dataclass(frozen=True)
class FbankOptions:
    """Keyword arguments of torchaudio.compliance.kaldi.fbank (Kaldi's names and units)."""

    num_mel_bins: int = 80
    frame_length: float = 25.0  # milliseconds
    frame_shift: float = 10.0  # milliseconds
    dither: float = 0.0  # 0 keeps features deterministic (Kaldi's own default is 1.0)
    window_type: str = "povey"
    low_freq: float = 20.0  # Hz
    high_freq: float = 0.0  # Hz; <= 0 means Nyquist + high_freq
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    snip_edges: bool = True  # only whole frames inside the signal
    sample_frequency: float = float(SAMPLE_RATE)  # Hz


# --- batches --------------------------------------------------------------------------------------
def pad_batch(waves: Waves, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (samples,) tensors, or a (B, T) tensor plus lengths, as a zero-padded (B, T)
    tensor and lengths (B,) int64, both on the waves' device. Samples past a length become 0."""
    if isinstance(waves, torch.Tensor):
        return _check_padded(waves, lengths)
    if lengths is not None:
        raise AudioError("lengths are only for a padded (B, T) tensor, not for a list of waveforms")
    if len(waves) == 0:
        raise AudioError("no waveforms given (empty batch)")
    for i, wave in enumerate(waves):
        _check_wave(wave, f"waveform {i} of the batch")
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long, device=waves[0].device)
    return torch.nn.utils.rnn.pad_sequence(list(waves), batch_first=True), lengths


def _check_wave(wave, what: str) -> None:
    if not isinstance(wave, torch.Tensor):
        raise AudioError(f"{what}: expected a torch.Tensor, got {type(wave).__name__}")
    if wave.ndim != 1:
        raise AudioError(f"{what}: expected a 1-D mono waveform (samples,), got shape {tuple(wave.shape)}")
    if wave.numel() == 0:
        raise AudioError(f"{what}: waveform is empty (0 samples)")
    if not wave.is_floating_point():
        raise AudioError(f"{what}: expected float samples in [-1, 1], got dtype {wave.dtype}")


def _check_padded(batch: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.ndim != 2:
        raise AudioError(
            f"expected a padded batch of shape (B, T), got shape {tuple(batch.shape)} "
            "(pass a single waveform as [wave])"
        )
    if batch.shape[0] == 0 or batch.shape[1] == 0:
        raise AudioError(f"waveform batch is empty: shape {tuple(batch.shape)}")
    if not batch.is_floating_point():
        raise AudioError(f"expected float samples in [-1, 1], got dtype {batch.dtype}")
    if lengths is None:
        return batch, torch.full((batch.shape[0],), batch.shape[1], dtype=torch.long, device=batch.device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=batch.device)
    if lengths.shape != (batch.shape[0],):
        raise AudioError(f"lengths must have shape ({batch.shape[0]},), got {tuple(lengths.shape)}")
    bad = ((lengths < 1) | (lengths > batch.shape[1])).nonzero().flatten().tolist()
    if bad:
        raise AudioError(
            f"waveform(s) {bad} of the batch: length must be 1..{batch.shape[1]} samples, "
            f"got {lengths[bad].tolist()}"
        )
    return batch * sample_mask(lengths, batch.shape[1]), lengths


def sample_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) lengths -> (B, size) bool mask, True on the first lengths[b] positions."""
    return torch.arange(size, device=lengths.device) < lengths[:, None]


# --- wav2vec2 -------------------------------------------------------------------------------------
def normalize_waveforms(waves: Waves, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero mean, unit variance per utterance over its real samples only; padding stays 0.

    Returns input_values (B, T) float and attention_mask (B, T) int64 (1 on real samples).
    """
    batch, lengths = pad_batch(waves, lengths)
    mask = sample_mask(lengths, batch.shape[1])
    count = lengths[:, None].to(batch.dtype)
    mean = batch.sum(dim=1, keepdim=True) / count  # padding is already 0
    centred = (batch - mean) * mask
    var = centred.square().sum(dim=1, keepdim=True) / count  # population variance, like numpy's
    return centred / torch.sqrt(var + NORM_EPS), mask.long()


# --- Kaldi fbank ----------------------------------------------------------------------------------
def compute_fbank(
    waves: Waves, lengths: torch.Tensor | None = None, options: FbankOptions = FbankOptions()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi log mel filterbank of each utterance (one torchaudio call each: it does not batch).

    Returns features (B, frames, num_mel_bins), zero past each utterance's frames, and frames (B,).
    """
    batch, lengths = pad_batch(waves, lengths)
    window = int(options.sample_frequency * options.frame_length / 1000)  # samples
    short = (lengths < window).nonzero().flatten().tolist()
    if short:
        raise AudioError(f"waveform(s) {short} of the batch: shorter than one {window}-sample fbank frame")
    feats = [kaldi.fbank(batch[i : i + 1, :n], **asdict(options)) for i, n in enumerate(lengths.tolist())]
    frames = torch.tensor([f.shape[0] for f in feats], dtype=torch.long, device=batch.device)
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), frames


# --- Whisper log-mel ------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def mel_filters(n_mels: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Whisper's mel filterbank (n_mels, N_FFT // 2 + 1): slaney scale, slaney (area) norm, 0-8 kHz,
    the same matrix as librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels). Cached per
    (n_mels, device, dtype); do not modify the returned tensor."""
    fb = AF.melscale_fbanks(
        N_FFT // 2 + 1, 0.0, MEL_FMAX, n_mels, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )
    return fb.T.contiguous().to(device=device, dtype=dtype)


@lru_cache(maxsize=16)
def hann_window(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Periodic Hann window (N_FFT,), cached per (device, dtype)."""
    return torch.hann_window(N_FFT, periodic=True, device=device, dtype=dtype)


def fit_length(batch: torch.Tensor, n_samples: int) -> torch.Tensor:
    """(B, T) -> (B, n_samples): zero-pad or trim along time."""
    if batch.shape[1] >= n_samples:
        return batch[:, :n_samples]
    return torch.nn.functional.pad(batch, (0, n_samples - batch.shape[1]))


def log_mel_spectrogram(
    waves: Waves, lengths: torch.Tensor | None = None, options: WhisperMelOptions = WhisperMelOptions()
) -> torch.Tensor:
    """Whisper's log-mel spectrogram: (B, n_mels, frames), frames = N_FRAMES (3,000) by default.

    Power STFT (N_FFT, HOP_LENGTH, periodic Hann, reflect-padded centre frames, last frame dropped),
    mel filterbank, log10 floored at LOG_FLOOR, values below each utterance's own peak minus
    DYNAMIC_RANGE raised to it (per utterance, so a batch gives what each utterance gives alone),
    then (x + 4) / 4. With options.n_samples=None, frames = longest // HOP_LENGTH and each
    utterance's peak is taken over its first length // HOP_LENGTH frames.
    """
    batch, lengths = pad_batch(waves, lengths)
    if options.n_samples is not None:
        batch = fit_length(batch, options.n_samples)
        frames = torch.full_like(lengths, options.n_samples // HOP_LENGTH)
    else:
        short = (lengths < N_FFT).nonzero().flatten().tolist()
        if short:
            raise AudioError(f"waveform(s) {short} of the batch: shorter than one {N_FFT}-sample STFT window")
        frames = lengths // HOP_LENGTH
    step = options.stft_batch or (1 if batch.device.type == "cpu" else batch.shape[0])
    chunks = [
        _log_mel(batch[i : i + step], frames[i : i + step], options.n_mels)
        for i in range(0, batch.shape[0], step)
    ]
    return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


def _log_mel(batch: torch.Tensor, frames: torch.Tensor, n_mels: int) -> torch.Tensor:
    """(b, samples) -> (b, n_mels, samples // HOP_LENGTH); each peak over its first frames[i]."""
    stft = torch.stft(batch, N_FFT, HOP_LENGTH, window=hann_window(batch.device, batch.dtype),
                      center=True, pad_mode="reflect", return_complex=True)
    spec = stft[..., :-1]  # (b, N_FFT // 2 + 1, frames): Whisper drops the last frame
    power = spec.real.square() + spec.imag.square()  # a new contiguous tensor: fast matmul below
    mel = mel_filters(n_mels, batch.device, batch.dtype) @ power  # (b, n_mels, frames)
    log_spec = mel.clamp(min=LOG_FLOOR).log10()
    valid = sample_mask(frames, log_spec.shape[2])[:, None, :]  # (b, 1, frames)
    peak = log_spec.masked_fill(~valid, -math.inf).amax(dim=(1, 2), keepdim=True)  # (b, 1, 1)
    return (torch.maximum(log_spec, peak - DYNAMIC_RANGE) + 4.0) / 4.0


# --- any kind -------------------------------------------------------------------------------------
def extract_features(waves: Waves, kind: str, n_mels: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of `kind` (one of KINDS) in one layout: (B, frames, dims) and frames (B,).

    wav2vec2: dims 1, one frame per sample; fbank: dims n_mels; whisper_mel: dims n_mels, 3,000
    frames (the transpose of log_mel_spectrogram's output, which is what Whisper models take).
    """
    if kind == "whisper_mel":
        mel = log_mel_spectrogram(waves, options=WhisperMelOptions(n_mels=n_mels))
        return mel.transpose(1, 2), torch.full((mel.shape[0],), mel.shape[2], dtype=torch.long)
    if kind == "fbank":
        return compute_fbank(waves, options=FbankOptions(num_mel_bins=n_mels))
    if kind == "wav2vec2":
        values, mask = normalize_waveforms(waves)
        return values[:, :, None], mask.sum(dim=1)
    raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(KINDS)}")


# --- summary --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSummary:
    kind: str
    device: str
    utterances: int
    audio_seconds: float  # at 16 kHz, after any offset/duration slicing
    dims: int  # feature values per frame
    min_frames: int  # frames per utterance (samples for wav2vec2)
    max_frames: int
    mean: float  # over every value of every utterance's real frames
    std: float
    load_seconds: float  # wall time decoding and resampling audio
    feature_seconds: float  # wall time computing features (device-synchronised)

    @property
    def total_seconds(self) -> float:
        return self.load_seconds + self.feature_seconds

    @property
    def audio_seconds_per_second(self) -> float:
        """Audio seconds processed per wall-clock second, loading included."""
        return self.audio_seconds / max(self.total_seconds, 1e-9)

    @property
    def feature_audio_seconds_per_second(self) -> float:
        """Audio seconds processed per wall-clock second of feature computation alone."""
        return self.audio_seconds / max(self.feature_seconds, 1e-9)


def load_row(row: dict) -> torch.Tensor:
    """A manifest row's audio (samples,) at 16 kHz; rows with an offset are a slice of the file."""
    if row.get("offset") is not None:
        return load_audio(row["audio_filepath"], offset=float(row["offset"]), duration=float(row["duration"]))
    return load_audio(row["audio_filepath"])


def summarize_features(
    rows: Sequence[dict], kind: str, n_mels: int = 80, batch_size: int = 16, device: str = "cpu"
) -> FeatureSummary:
    """Load every row's audio, compute `kind` features in batches on `device`, and summarise them."""
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not rows:
        raise AudioError("no utterances to compute features for (empty manifest?)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AsrSftError(f"device {device} requested but CUDA is not available here")
    total, total_sq, count, samples = 0.0, 0.0, 0, 0
    frame_counts, dims, load_s, feat_s = [], 0, 0.0, 0.0
    for start in range(0, len(rows), batch_size):
        t0 = time.perf_counter()
        waves = [load_row(row) for row in rows[start : start + batch_size]]
        t1 = time.perf_counter()
        load_s += t1 - t0
        feats, frames = extract_features([w.to(device) for w in waves], kind, n_mels)
        valid = sample_mask(frames.to(device), feats.shape[1])[:, :, None]
        values = feats.double().masked_fill(~valid, 0.0)
        total += values.sum().item()  # .item() synchronises the device
        total_sq += values.square().sum().item()
        feat_s += time.perf_counter() - t1
        count += int(frames.sum()) * feats.shape[2]
        frame_counts += frames.tolist()
        dims = feats.shape[2]
        samples += sum(len(w) for w in waves)
    mean = total / count
    return FeatureSummary(
        kind=kind, device=str(device), utterances=len(rows), audio_seconds=samples / SAMPLE_RATE,
        dims=dims, min_frames=min(frame_counts), max_frames=max(frame_counts), mean=mean,
        std=math.sqrt(max(total_sq / count - mean * mean, 0.0)), load_seconds=load_s, feature_seconds=feat_s,
    )
