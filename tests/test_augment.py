"""Noise and speed augmentation: determinism per (seed, utterance, epoch), SNR accuracy, speed
factors, noise colours and sources, and fixed-SNR noisy test sets (`asr-sft noisy`)."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from asr_sft.cli import main
from asr_sft.data.audio import load_audio, write_audio
from asr_sft.data.augment import (AugmentOptions, NoiseBank, augment, load_bank, make_noise,
                                  make_noisy_sets, measure_snr, mix_at_snr, pink_noise,
                                  speed_perturb, utterance_rng)
from asr_sft.data.manifest import read_manifest, write_manifest
from asr_sft.errors import OptionError
from conftest import tone

SNRS = (20.0, 10.0, 5.0, 0.0, -5.0)


def _speech_like(seconds=1.0, seed=0):
    """A tone with a syllable-rate envelope and silent edges (the power is not flat, as in speech)."""
    t = torch.arange(int(seconds * 16000)) / 16000
    envelope = (torch.sin(2 * torch.pi * 4 * t).clamp(min=0) + 0.05) * (t > 0.1) * (t < seconds - 0.1)
    return (0.4 * envelope * torch.sin(2 * torch.pi * (220 + 40 * seed) * t)).float()


def _clips(tmp_path, n=4, speakers=2):
    rows = []
    for i in range(n):
        path = tmp_path / "clean" / f"u{i}.flac"
        write_audio(path, _speech_like(0.8 + 0.1 * i, seed=i), 16000)
        rows.append({"id": f"spk{i % speakers}/u{i}", "audio_filepath": str(path), "duration": 0.8 + 0.1 * i,
                     "text": f"utterance {i}", "speaker": f"spk{i % speakers}", "accent": "en-us",
                     "corpus": "t", "split": "test", "sampling_rate": 16000})
    return write_manifest(tmp_path / "clean.jsonl", rows)


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_mix_hits_the_requested_snr(kind):
    clean = _speech_like(1.0)
    bank = NoiseBank({}, tuple((f"o{i}", f"s{i}", _speech_like(0.7, seed=i + 1)) for i in range(5)))
    noise = make_noise(kind, clean.shape[0], utterance_rng(0, "x"), bank, exclude_id="x")
    for snr in SNRS:
        noisy, gain = mix_at_snr(clean, noise, snr)
        assert measure_snr(clean, noisy, gain) == pytest.approx(snr, abs=0.01)
        assert noisy.abs().max() <= 0.99 + 1e-6


def test_loud_mixture_is_scaled_not_clipped():
    clean = 0.95 * torch.sin(torch.arange(16000) / 3.0)
    noisy, gain = mix_at_snr(clean, make_noise("white", 16000, utterance_rng(0, "x")), -5.0)
    assert gain < 1.0 and noisy.abs().max() == pytest.approx(0.99, abs=1e-6)
    assert measure_snr(clean, noisy, gain) == pytest.approx(-5.0, abs=0.01)
    silent = torch.zeros(100)
    assert torch.equal(mix_at_snr(silent, torch.ones(100), 10)[0], silent)


def test_pink_noise_falls_3_db_per_octave():
    noise = pink_noise(2**16, np.random.default_rng(0)).numpy()
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / 16000)
    band = lambda lo: power[(freqs >= lo) & (freqs < 2 * lo)].mean()  # noqa: E731
    drop = 10 * np.log10(band(100) / band(3200))  # five octaves
    assert drop == pytest.approx(15.0, abs=1.5)
    white = make_noise("white", 2**16, np.random.default_rng(0)).numpy()
    wpower = np.abs(np.fft.rfft(white)) ** 2
    assert 10 * np.log10(wpower[(freqs >= 100) & (freqs < 200)].mean()
                         / wpower[(freqs >= 3200) & (freqs < 6400)].mean()) == pytest.approx(0, abs=1.0)


def test_speed_perturbation_changes_length_and_pitch():
    wave = tone(1.0, 16000, freq=500.0)
    for factor in (0.9, 1.1):
        out = speed_perturb(wave, factor)
        assert out.shape[0] == pytest.approx(16000 / factor, abs=2)
        peak_hz = np.argmax(np.abs(np.fft.rfft(out.numpy()))) * 16000 / out.shape[0]
        assert peak_hz == pytest.approx(500.0 * factor, abs=3)
    assert speed_perturb(wave, 1.0) is wave


def test_augment_is_deterministic_per_utterance_and_epoch():
    options = AugmentOptions(noise=("white", "pink"), noise_prob=1.0, snr_db=(0.0, 10.0), speeds=(0.9, 1.0, 1.1), seed=5)
    waves = {f"utt{i}": _speech_like(1.0, seed=i) for i in range(12)}
    first = {k: augment(w, k, options, epoch=0) for k, w in waves.items()}
    with ThreadPoolExecutor(4) as pool:  # another order, other threads: the same result
        keys = sorted(waves, reverse=True)
        again = dict(zip(keys, pool.map(lambda k: augment(waves[k], k, options, epoch=0), keys)))
    assert all(torch.equal(first[k], again[k]) for k in waves)
    assert {first[k].shape[0] for k in waves} == {14546, 16000, 17778}  # all three speeds drawn
    assert not torch.equal(first["utt0"], augment(waves["utt0"], "utt0", options, epoch=1))
    assert not torch.equal(first["utt0"], augment(waves["utt0"], "utt0", AugmentOptions(**{**options.__dict__, "seed": 6})))
    assert first["utt0"].dtype == torch.float32 and torch.equal(waves["utt0"], _speech_like(1.0, seed=0))


def test_augment_noise_probability_and_snr_range():
    options = AugmentOptions(noise=("white",), noise_prob=0.5, snr_db=(5.0, 15.0), seed=1)
    clean = _speech_like(1.0)
    snrs = []
    for i in range(200):
        out = augment(clean, f"u{i}", options)
        if not torch.equal(out, clean):
            snrs.append(measure_snr(clean, out))
    assert 70 <= len(snrs) <= 130
    assert 5.0 - 0.01 <= min(snrs) and max(snrs) <= 15.0 + 0.01 and np.std(snrs) > 2
    assert augment(clean, "u0", AugmentOptions()) is clean  # nothing enabled: untouched


def test_noise_files_and_babble_sources(tmp_path):
    short = tmp_path / "hum.wav"
    write_audio(short, tone(0.25, 8000, freq=120.0), 8000)  # shorter than the utterance: looped
    bank = load_bank([str(short)])
    noise = make_noise(str(short), 16000, utterance_rng(0, "a"), bank)
    assert noise.shape == (16000,) and noise.abs().max() > 0.2
    assert np.argmax(np.abs(np.fft.rfft(noise.numpy()))) == pytest.approx(120, abs=2)
    rows = read_manifest(_clips(tmp_path, n=6, speakers=3))
    bank = load_bank(["babble"], rows, babble_pool=64)
    assert len(bank.babble) == 6
    # Utterance i is a tone at 220 + 40 i Hz, speaker spk{i % 3}: babble for spk0's u0 must hold
    # none of spk0's tones (220, 340 Hz) and all four others (260, 300, 380, 420 Hz).
    for i in range(5):
        mixed = make_noise("babble", 16000, utterance_rng(0, f"p{i}"), bank, exclude_id="spk0/u0",
                           exclude_speaker="spk0").numpy()
        spectrum = np.abs(np.fft.rfft(mixed))  # 1 Hz bins
        level = lambda hz: spectrum[hz - 3:hz + 4].max()  # noqa: E731
        assert min(level(f) for f in (260, 300, 380, 420)) > 20 * max(level(220), level(340))
    only_speaker = NoiseBank({}, tuple(v for v in bank.babble if v[1] == "spk0"))  # no other speaker: its other utterance
    mixed = make_noise("babble", 16000, utterance_rng(0, "q"), only_speaker, exclude_id="spk0/u0", exclude_speaker="spk0")
    spectrum = np.abs(np.fft.rfft(mixed.numpy()))
    assert spectrum[337:344].max() > 20 * spectrum[217:224].max()
    only_self = NoiseBank({}, bank.babble[:1])
    with pytest.raises(Exception, match="babble needs other utterances"):
        make_noise("babble", 100, utterance_rng(0, "x"), only_self, exclude_id=bank.babble[0][0])


def test_augment_with_babble_from_a_manifest(tmp_path):
    manifest = _clips(tmp_path, n=4)
    options = AugmentOptions(noise=("babble",), noise_prob=1.0, snr_db=(10.0, 10.0), babble_manifest=str(manifest))
    clean = _speech_like(1.0)
    out = augment(clean, "spk0/u0", options)
    assert measure_snr(clean, out) == pytest.approx(10.0, abs=0.01)


def test_option_errors():
    for kwargs, message in [({"noise_prob": 1.5}, "noise_prob must be in"), ({"snr_db": (10.0, 5.0)}, "low <= high"),
                            ({"speeds": (3.0,)}, "speeds must be factors"), ({"noise": ("babble",)}, "babble_manifest is empty")]:
        with pytest.raises(OptionError, match=message):
            AugmentOptions(**kwargs)


@pytest.mark.parametrize("noise", ["white", "babble"])
def test_noisy_test_sets_measured_from_the_files(tmp_path, noise):
    manifest = _clips(tmp_path)
    clean_rows = read_manifest(manifest)
    sets = make_noisy_sets(manifest, [20, 10, 5, 0], [noise], tmp_path / "noisy", seed=3)
    assert [s.manifest.name for s in sets] == [f"{noise}_snr{n}dB.jsonl" for n in (20, 10, 5, 0)]
    noise_at = {}
    for s in sets:
        rows = read_manifest(s.manifest)  # a valid manifest, audio present
        assert [r["id"] for r in rows] == [r["id"] for r in clean_rows]  # pairs with the clean set by id
        for clean_row, row in zip(clean_rows, rows):
            assert (row["text"], row["speaker"], row["accent"], row["sampling_rate"]) == (
                clean_row["text"], clean_row["speaker"], clean_row["accent"], 16000)
            assert row["custom"]["condition"] == f"{noise}@{s.snr_db:g}dB" and row["custom"]["snr_db"] == s.snr_db
            clean, noisy = load_audio(clean_row["audio_filepath"]), load_audio(row["audio_filepath"])
            assert noisy.shape == clean.shape
            assert measure_snr(clean, noisy, row["custom"]["gain"]) == pytest.approx(s.snr_db, abs=0.5)
            noise_at.setdefault(row["id"], []).append(noisy / row["custom"]["gain"] - clean)
        assert s.mean_measured_snr_db == pytest.approx(s.snr_db, abs=0.01)
    for series in noise_at.values():  # one noise stretch per utterance, only its level changes
        assert np.corrcoef(series[0].numpy(), series[-1].numpy())[0, 1] > 0.99
    summary = json.loads((tmp_path / "noisy" / "noisy_summary.json").read_text())
    assert [s["snr_db"] for s in summary["sets"]] == [20, 10, 5, 0]


def test_noisy_is_reproducible_and_cli(tmp_path, capsys):
    manifest = _clips(tmp_path)
    assert main(["noisy", "--manifest", str(manifest), "--snrs", "10,0", "--noise", "pink",
                 "--out", str(tmp_path / "a"), "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "pink_snr10dB.jsonl" in printed and "pink_snr0dB.jsonl" in printed
    make_noisy_sets(manifest, [10, 0], ["pink"], tmp_path / "b", seed=2)
    first, second = read_manifest(tmp_path / "a" / "pink_snr0dB.jsonl"), read_manifest(tmp_path / "b" / "pink_snr0dB.jsonl")
    for x, y in zip(first, second):
        assert torch.equal(load_audio(x["audio_filepath"]), load_audio(y["audio_filepath"]))
    assert main(["noisy", "--manifest", str(manifest), "--snrs", "ten", "--noise", "white", "--out", str(tmp_path)]) == 2
    assert main(["noisy", "--manifest", str(manifest), "--snrs", "10", "--noise", "white,pink", "--out", str(tmp_path)]) == 2


def test_a_slow_down_past_the_model_window_keeps_the_original_speed():
    wave = torch.randn(16000 * 2)
    options = AugmentOptions(speeds=(0.5,))
    assert augment(wave, "u", options).shape[0] == 16000 * 4
    assert augment(wave, "u", options, max_seconds=3.0).shape[0] == 16000 * 2  # 4 s would not fit
    assert augment(wave, "u", options, max_seconds=4.0).shape[0] == 16000 * 4
