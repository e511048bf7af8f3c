import json
import logging
import math

import pytest

from asr_sft.cli import main
from asr_sft.errors import ManifestError
from asr_sft.data.manifest import (FilterOptions, check_manifest, filter_rows, make_row, read_manifest,
                              write_manifest)
from asr_sft.data.audio import write_audio
from conftest import tone


def _row(tmp_path, i, **over):
    audio = tmp_path / "audio" / f"u{i}.flac"
    if not audio.exists():
        write_audio(audio, tone(0.2), 16000)
    fields = dict(id=f"u{i}", audio_filepath=str(audio), duration=0.2, text=f"WORD {i}",
                  speaker="spk1", corpus="test", split="dev", sampling_rate=16000)
    fields.update(over)
    return make_row(**fields)


def test_roundtrip_relative_paths(tmp_path):
    rows = [_row(tmp_path, i) for i in range(3)]
    path = write_manifest(tmp_path / "m.jsonl", rows)
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["audio_filepath"] for r in stored] == [f"audio/u{i}.flac" for i in range(3)]
    assert list(stored[0]) == ["id", "audio_filepath", "duration", "text", "speaker", "accent",
                               "corpus", "split", "sampling_rate"]
    back = read_manifest(path)
    assert back == rows  # absolute again, same values
    # Moving the folder keeps the manifest valid: paths are relative.
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    tmp_path.rename(moved)
    assert read_manifest(moved / "m.jsonl")[0]["audio_filepath"] == str(moved / "audio" / "u0.flac")


def test_write_refuses_bad_rows_and_leaves_no_file(tmp_path):
    rows = [_row(tmp_path, 0), _row(tmp_path, 1, text="  ")]
    with pytest.raises(ManifestError, match=r"line 2 \(id u1\): empty text"):
        write_manifest(tmp_path / "m.jsonl", rows)
    assert not (tmp_path / "m.jsonl").exists()
    assert not list(tmp_path.glob(".m.jsonl*"))


def test_every_problem_reported_with_line_numbers(tmp_path):
    good = _row(tmp_path, 0)
    lines = [
        json.dumps(good),
        json.dumps({**good, "id": "u1", "audio_filepath": "nowhere.flac"}),
        json.dumps({**good, "id": "u2", "duration": 0}),
        json.dumps({**good, "id": "u3", "duration": -1.5}),
        json.dumps({**good, "id": "u4", "text": ""}),
        json.dumps(good),  # duplicate id
        json.dumps({**good, "id": "u6", "sampling_rate": 0}),
        json.dumps({"id": "u7"}),
        "not json",
        json.dumps({**good, "id": "u9", "extra": 1}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xff"}\n')
    check = check_manifest(path)
    found = {(p.line, p.message.split(" (")[0].split(":")[0]) for p in check.problems}
    assert (2, "audio file not found") in found
    assert (3, "duration must be a positive, finite number of seconds, got 0") in found
    assert (4, "duration must be a positive, finite number of seconds, got -1.5") in found
    assert (5, "empty text") in found
    assert (6, "duplicate id") in found
    assert (7, "sampling_rate must be a whole number of Hz in 1..768000, got 0") in found
    assert (8, "missing field 'audio_filepath'") in found
    assert (9, "not valid JSON") in found
    assert (10, "unknown field 'extra'") in found
    assert (11, "bad UTF-8 at byte 8") in found
    assert [r["id"] for r in check.rows] == ["u0"]
    assert check.lines == 11
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    assert "bad.jsonl" in str(err.value) and "line 9" in str(err.value)


def test_skip_invalid_reports(tmp_path, caplog):
    rows = [_row(tmp_path, i) for i in range(2)]
    path = write_manifest(tmp_path / "m.jsonl", rows)
    with path.open("a") as f:
        f.write(json.dumps({**rows[0], "id": "zz", "duration": 0}) + "\n")
    with caplog.at_level(logging.WARNING):
        kept = read_manifest(path, skip_invalid=True)
    assert [r["id"] for r in kept] == ["u0", "u1"]
    assert "skipped 1 invalid row" in caplog.text and "line 3 (id zz)" in caplog.text


def test_filters_give_reasons(tmp_path):
    rows = [_row(tmp_path, 0, duration=0.5, text="A" * 10), _row(tmp_path, 1, duration=30.0),
            _row(tmp_path, 2, duration=1.0, text="B" * 50), _row(tmp_path, 3, duration=5.0)]
    kept, dropped = filter_rows(rows, FilterOptions(min_duration=1.0, max_duration=20.0,
                                                    max_chars_per_second=25.0))
    assert [r["id"] for r in kept] == ["u3"]
    reasons = {row["id"]: reason for row, reason in dropped}
    assert reasons["u0"].startswith("duration 0.50s < min")
    assert reasons["u1"].startswith("duration 30.00s > max")
    assert reasons["u2"].startswith("50.0 chars/s > max")


def test_make_row_rejects_unknown_fields():
    with pytest.raises(ManifestError, match="unknown manifest field"):
        make_row(id="x", colour="red")


def test_validate_cli(tmp_path, capsys):
    rows = [_row(tmp_path, 0), _row(tmp_path, 1, duration=3.0)]
    path = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "clean.jsonl"
    assert main(["validate", str(path), "--max-duration", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 rows, 2 valid, 1 filtered, 1 kept" in captured.out
    assert "filtered u1: duration 3.00s > max 1.0s" in captured.err
    assert [r["id"] for r in read_manifest(out)] == ["u0"]
    with path.open("a") as f:
        f.write("{broken\n")
    assert main(["validate", str(path)]) == 2
    assert "line 3: not valid JSON" in capsys.readouterr().err
    assert main(["validate", str(path), "--skip-invalid"]) == 0


def test_validate_cli_merges_manifests(tmp_path, capsys):
    a = write_manifest(tmp_path / "a" / "m.jsonl", [_row(tmp_path, 0), _row(tmp_path, 1)])
    b = write_manifest(tmp_path / "b" / "m.jsonl", [_row(tmp_path, 2)])
    out = tmp_path / "mixed" / "m.jsonl"
    assert main(["validate", str(a), str(b), "--out", str(out)]) == 0
    assert [r["id"] for r in read_manifest(out)] == ["u0", "u1", "u2"]
    assert "wrote" in capsys.readouterr().out
    # The same utterance twice is refused, naming the duplicate, and nothing is written.
    assert main(["validate", str(a), str(a), "--out", str(tmp_path / "dup.jsonl")]) == 2
    assert "duplicate id" in capsys.readouterr().err and not (tmp_path / "dup.jsonl").exists()


# --- issue 11: bad audio is caught by validate --deep (and at the start of training) --------------
def _bad_audio_manifest(tmp_path):
    """A manifest with one good row and one row per kind of bad audio or bad number."""
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "audio"
    good = _row(tmp_path, 0)
    write_audio(audio / "long.flac", tone(3.0), 16000)
    data = (audio / "long.flac").read_bytes()
    (audio / "truncated.flac").write_bytes(data[: len(data) // 2])
    (audio / "empty.wav").write_bytes(b"")
    (audio / "text.flac").write_text("not audio at all\n" * 50)
    samples = np.full(3200, 0.1, dtype=np.float32)
    samples[1000] = np.nan
    sf.write(audio / "nan.wav", samples, 16000, subtype="FLOAT")
    lines = [good,
             {**good, "id": "truncated", "audio_filepath": str(audio / "truncated.flac"), "duration": 3.0},
             {**good, "id": "empty", "audio_filepath": str(audio / "empty.wav")},
             {**good, "id": "text", "audio_filepath": str(audio / "text.flac")},
             {**good, "id": "nan", "audio_filepath": str(audio / "nan.wav")},
             {**good, "id": "mismatch", "audio_filepath": str(audio / "long.flac"), "duration": 0.2},
             {**good, "id": "infinite", "duration": math.inf},
             {**good, "id": "nanoffset", "offset": math.nan}]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))  # json writes NaN and Infinity
    return path


def test_validate_deep_names_every_bad_row_and_skips_them(tmp_path, capsys):
    path = _bad_audio_manifest(tmp_path)
    shallow = {p.id for p in check_manifest(path).problems}
    assert shallow == {"empty", "infinite", "nanoffset"}  # the cheap checks need no decoding
    check = check_manifest(path, deep=True)
    messages = {p.id: p.message for p in check.problems}
    assert set(messages) == {"truncated", "empty", "text", "nan", "mismatch", "infinite", "nanoffset"}
    assert "cannot decode" in messages["truncated"] and "cannot read audio header" in messages["text"]
    assert "NaN or infinite samples" in messages["nan"] and "0 bytes" in messages["empty"]
    assert "the audio file holds 3.00 s" in messages["mismatch"]
    assert "finite" in messages["infinite"] and "finite" in messages["nanoffset"]
    assert [r["id"] for r in check.rows] == ["u0"]
    assert main(["validate", str(path), "--deep"]) == 2
    assert "(id mismatch): duration 0.2 s, but the audio file holds 3.00 s" in capsys.readouterr().err
    out = tmp_path / "clean.jsonl"
    assert main(["validate", str(path), "--deep", "--skip-invalid", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "7 problem(s)" in captured.err and "8 rows, 1 valid" in captured.out
    assert [r["id"] for r in read_manifest(out, deep=True)] == ["u0"]


def test_an_unusual_sample_rate_is_accepted_and_resampled(tmp_path):
    from asr_sft.data.features import load_row

    write_audio(tmp_path / "hi.flac", tone(0.5, sample_rate=192000), 192000)
    row = _row(tmp_path, 0, audio_filepath=str(tmp_path / "hi.flac"), duration=0.5, sampling_rate=192000)
    path = write_manifest(tmp_path / "m.jsonl", [row])
    [back] = read_manifest(path, deep=True)
    assert load_row(back).shape == (8000,)  # 0.5 s at 16 kHz
