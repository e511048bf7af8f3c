import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from asr_sft.data import features as F
from asr_sft.data.audio import audio_info, load_audio
from asr_sft.cli import main
from asr_sft.errors import AudioError
from asr_sft.data.manifest import make_row, write_manifest
from conftest import tone

WHISPER_TOL = 1e-3  # max abs difference allowed against transformers' log-mel


@pytest.fixture(scope="module")
def clips(shared_data) -> list[tuple[str, float, str]]:
    """(absolute path, duration s, transcript) of every real clip listed in transcripts.tsv."""
    root = shared_data / "real-clips"
    lines = (root / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines if line.strip()]
    assert len(rows) >= 20
    return [(str(root / r[0]), float(r[1]), r[4]) for r in rows]


@pytest.fixture(scope="module")
def waves(clips) -> list[torch.Tensor]:
    return [load_audio(path) for path, _, _ in clips]


def pad_to_chunk(wave: torch.Tensor) -> np.ndarray:
    out = np.zeros(F.N_SAMPLES, dtype=np.float32)
    out[: min(len(wave), F.N_SAMPLES)] = wave.numpy()[: F.N_SAMPLES]
    return out


# --- Whisper log-mel ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_whisper_mel_matches_transformers_on_real_clips(waves, n_mels):
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    ours = F.log_mel_spectrogram(waves, options=F.WhisperMelOptions(n_mels=n_mels))
    assert ours.shape == (len(waves), n_mels, F.N_FRAMES) and ours.dtype == torch.float32
    # The numpy path (the reference implementation) and the default (torch) path of __call__.
    numpy_path = extractor._np_extract_fbank_features(np.stack([pad_to_chunk(w) for w in waves]), "cpu")
    default_path = extractor([w.numpy() for w in waves], sampling_rate=16000, return_tensors="np")
    for i in range(len(waves)):
        assert np.abs(ours[i].numpy() - numpy_path[i]).max() <= WHISPER_TOL, i
        assert np.abs(ours[i].numpy() - default_path["input_features"][i]).max() <= WHISPER_TOL, i


def test_whisper_mel_batch_equals_each_utterance_alone(waves):
    # A quiet clip next to a loud one: a batch-wide peak would clamp the quiet one's range.
    batch = [waves[0], waves[1] * 1e-3, waves[13]]
    alone = torch.cat([F.log_mel_spectrogram([w]) for w in batch])
    one_call = F.log_mel_spectrogram(batch, options=F.WhisperMelOptions(stft_batch=len(batch)))
    default = F.log_mel_spectrogram(batch)
    torch.testing.assert_close(one_call, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(default, alone, atol=1e-5, rtol=0)
    # Each floor is its own peak minus 8 decades (or the 1e-10 power floor, for the quiet clip:
    # a batch-wide peak would have raised its floor to the loud clips' peak minus 8).
    silence = (np.log10(F.LOG_FLOOR) + 4) / 4
    floors = [max(float(mel.max()) - F.DYNAMIC_RANGE / 4, silence) for mel in alone]
    assert floors[1] == silence and floors[0] > silence + 0.5
    assert [float(mel.min()) for mel in default] == pytest.approx(floors, abs=1e-6)


def test_whisper_mel_padded_tensor_ignores_samples_past_lengths(waves):
    batch = [waves[2], waves[6]]
    lengths = torch.tensor([len(w) for w in batch])
    padded = torch.full((2, int(lengths.max())), 0.5)  # junk in the padding must not leak in
    for i, wave in enumerate(batch):
        padded[i, : len(wave)] = wave
    torch.testing.assert_close(F.log_mel_spectrogram(padded, lengths), F.log_mel_spectrogram(batch))


def test_whisper_mel_trims_to_30_seconds_and_can_skip_padding():
    long = tone(31.0, freq=300.0) + 0.01 * torch.randn(31 * 16000)
    trimmed = F.log_mel_spectrogram([long])
    assert trimmed.shape == (1, 80, F.N_FRAMES)
    torch.testing.assert_close(trimmed, F.log_mel_spectrogram([long[: F.N_SAMPLES]]))
    short = F.log_mel_spectrogram([long[:16000], long[:8000]], options=F.WhisperMelOptions(n_samples=None))
    assert short.shape == (2, 80, 16000 // F.HOP_LENGTH)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_whisper_mel_on_gpu_matches_cpu(waves):
    on_gpu = F.log_mel_spectrogram([w.cuda() for w in waves[:4]])
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), F.log_mel_spectrogram(waves[:4]), atol=WHISPER_TOL, rtol=0)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_whisper_npz(shared_data, n_mels):
    exact = np.load(shared_data / "whisper-assets" / "mel_filters.npz")[f"mel_{n_mels}"]
    ours = F.mel_filters(n_mels)
    assert ours.shape == exact.shape == (n_mels, F.N_FFT // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), exact, atol=1e-6, rtol=0)


def test_mel_filters_and_window_are_cached_per_device_and_dtype():
    assert F.mel_filters(80, "cpu", torch.float32) is F.mel_filters(80, "cpu", torch.float32)
    assert F.mel_filters(80, "cpu", torch.float64).dtype == torch.float64
    assert F.mel_filters(128, "cpu", torch.float32).shape[0] == 128
    assert F.hann_window("cpu", torch.float32) is F.hann_window("cpu", torch.float32)
    torch.testing.assert_close(F.hann_window(), torch.hann_window(F.N_FFT, periodic=True))


# --- wav2vec2 -------------------------------------------------------------------------------------
def test_normalize_matches_wav2vec2_feature_extractor_with_padding(waves):
    batch = [waves[6], waves[0], waves[14]]  # 1.9 s, 7.1 s, 3.3 s: two of them padded
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    ref = extractor([w.numpy() for w in batch], sampling_rate=16000, padding="longest", return_tensors="np")
    values, mask = F.normalize_waveforms(batch)
    assert values.shape == ref["input_values"].shape and mask.dtype == torch.long
    np.testing.assert_array_equal(mask.numpy(), ref["attention_mask"])
    np.testing.assert_allclose(values.numpy(), ref["input_values"], atol=1e-4, rtol=0)
    first = values[0, : len(batch[0])]
    assert abs(float(first.mean())) < 1e-4 and float(first.std(correction=0)) == pytest.approx(1.0, abs=1e-3)
    assert torch.all(values[0, len(batch[0]) :] == 0)


# --- Kaldi fbank ----------------------------------------------------------------------------------
def test_fbank_matches_torchaudio_and_zero_pads(waves):
    short, long = waves[15], waves[0]
    feats, frames = F.compute_fbank([short, long])
    direct = kaldi.fbank(short[None], num_mel_bins=80, dither=0.0)
    assert direct.shape == (1 + (len(short) - 400) // 160, 80)
    assert frames.tolist() == [direct.shape[0], 1 + (len(long) - 400) // 160]
    assert feats.shape == (2, frames.max(), 80)
    torch.testing.assert_close(feats[0, : frames[0]], direct)
    assert torch.all(feats[0, frames[0] :] == 0)


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: F.log_mel_spectrogram([torch.zeros(0)]), "empty"),
        (lambda: F.log_mel_spectrogram([torch.zeros(16000), torch.zeros(2, 100)]), "waveform 1"),
        (lambda: F.log_mel_spectrogram(torch.zeros(16000)), "(B, T)"),
        (lambda: F.log_mel_spectrogram(torch.zeros(2, 2, 100)), "(B, T)"),
        (lambda: F.log_mel_spectrogram([]), "empty batch"),
        (lambda: F.log_mel_spectrogram([torch.zeros(100, dtype=torch.int16)]), "float"),
        (lambda: F.normalize_waveforms(torch.zeros(2, 100), torch.tensor([100, 101])), "1..100"),
        (lambda: F.normalize_waveforms(torch.zeros(2, 100), torch.tensor([0, 50])), "1..100"),
        (lambda: F.compute_fbank([torch.zeros(300)]), "shorter than one"),
        (lambda: F.log_mel_spectrogram([torch.zeros(300)], options=F.WhisperMelOptions(n_samples=None)),
         "shorter than one"),
    ],
)
def test_bad_input_raises_audio_error(call, message):
    with pytest.raises(AudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="whisper_mel"):
        F.extract_features([torch.zeros(1000)], "mfcc")


# --- summary and CLI ------------------------------------------------------------------------------
@pytest.fixture()
def small_manifest(tmp_path, clips):
    rows = []
    for i, (path, _, text) in enumerate(clips[:3]):
        info = audio_info(path)
        rows.append(make_row(id=f"clip{i}", audio_filepath=path, duration=info.duration, text=text,
                             speaker=f"s{i}", corpus="real-clips", split="test",
                             sampling_rate=info.sample_rate))
    return write_manifest(tmp_path / "small.jsonl", rows), rows


def test_summarize_features_matches_direct_computation(small_manifest, waves):
    _, rows = small_manifest
    summary = F.summarize_features(rows, "fbank", batch_size=2)
    direct = [kaldi.fbank(w[None], num_mel_bins=80) for w in waves[:3]]
    values = torch.cat(direct).double()
    assert summary.utterances == 3 and summary.dims == 80
    assert summary.audio_seconds == pytest.approx(sum(len(w) for w in waves[:3]) / 16000)
    assert (summary.min_frames, summary.max_frames) == (min(len(d) for d in direct), max(len(d) for d in direct))
    assert summary.mean == pytest.approx(float(values.mean()), rel=1e-5)
    assert summary.std == pytest.approx(float(values.std(correction=0)), rel=1e-5)
    assert summary.audio_seconds_per_second > 0 and summary.feature_seconds > 0


def test_cli_features_prints_summary(small_manifest, capsys):
    path, _ = small_manifest
    assert main(["features", str(path), "--kind", "whisper_mel", "--limit", "2", "--batch-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "utterances       2" in out and "3000 x 80 per utterance (frames x dims)" in out
    assert "audio-s/s" in out
    assert main(["features", str(path), "--kind", "wav2vec2"]) == 0
    out = capsys.readouterr().out
    assert "utterances       3" in out and "mean / std       0.0000 / 1.0000" in out


def test_cli_features_reports_bad_manifest(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    assert main(["features", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
