import numpy as np
import pytest
import soundfile as sf
import torch

from asr_sft.data.audio import audio_info, load_audio, resample, write_audio
from asr_sft.errors import AudioError
from conftest import tone


@pytest.mark.parametrize("ext", [".flac", ".wav", ".ogg"])
def test_roundtrip_formats(tmp_path, ext):
    wave = tone(0.5, 16000)
    path = tmp_path / f"a{ext}"
    write_audio(path, wave, 16000)
    back = load_audio(path)
    assert back.dtype == torch.float32 and back.ndim == 1
    assert back.shape[0] == wave.shape[0]
    tol = 1e-3 if ext != ".ogg" else 0.1  # Vorbis is lossy
    assert torch.max(torch.abs(back - wave)) < tol


def test_stereo_downmix_and_resample(tmp_path):
    left, right = tone(1.0, 44100, 300.0).numpy(), tone(1.0, 44100, 500.0).numpy()
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, 44100)
    wave = load_audio(path, sample_rate=16000)
    assert wave.shape[0] == 16000
    expected = resample(torch.from_numpy((left + right) / 2), 44100, 16000)
    assert torch.allclose(wave, expected.float(), atol=1e-5)
    assert load_audio(path, sample_rate=None).shape[0] == 44100


def test_offset_duration_slice(tmp_path):
    wave = torch.linspace(-0.5, 0.5, 16000)
    path = tmp_path / "ramp.wav"
    sf.write(path, wave.numpy(), 16000, subtype="FLOAT")
    part = load_audio(path, offset=0.25, duration=0.5)
    assert part.shape[0] == 8000
    assert torch.allclose(part, wave[4000:12000])
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(path, offset=2.0)


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.flac"
    with pytest.raises(AudioError, match="missing.flac: audio file not found"):
        load_audio(missing)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + b"\x00" * 100)
    with pytest.raises(AudioError, match="corrupt.flac"):
        load_audio(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype="float32"), 16000)
    with pytest.raises(AudioError, match="empty.wav: audio file is empty"):
        load_audio(empty)


def test_write_is_atomic_and_checks_shape(tmp_path):
    with pytest.raises(AudioError, match="mono"):
        write_audio(tmp_path / "x.flac", torch.zeros(2, 10), 16000)
    with pytest.raises(AudioError, match="unsupported"):
        write_audio(tmp_path / "x.mp9", torch.zeros(10), 16000)
    assert list(tmp_path.iterdir()) == []  # no partial files left behind


def test_real_clips_mixed_rates(shared_data):
    clip = shared_data / "real-clips"
    jfk = next(clip.rglob("jfk.flac"))
    info = audio_info(jfk)
    wave = load_audio(jfk)
    assert info.channels in (1, 2)
    assert abs(wave.shape[0] / 16000 - info.duration) < 0.01
