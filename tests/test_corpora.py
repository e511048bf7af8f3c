"""Corpus importers: LibriSpeech layout, audio folder + table, Free Spoken Digit Dataset, and the
`asr-sft prepare` command."""

import csv
import json
import time

import pytest

from asr_sft.data.audio import write_audio
from asr_sft.cli import main
from asr_sft.corpora.folder import import_table
from asr_sft.corpora.fsdd import prepare_fsdd, read_metadata
from asr_sft.corpora.librispeech import prepare_librispeech, read_speakers
from asr_sft.errors import ManifestError
from asr_sft.data.manifest import read_manifest
from conftest import tone

REAL_LS_ROOT = "real-clips/kennethwang_librispeech"
REAL_LS_IDS = ["1089-134686-0000", "1089-134686-0001", "1089-134691-0000", "1089-134691-0001"]

SPEAKERS_STANDARD = """\
; Some pipe(|) separated metadata about all LibriVox readers, whose work was used
; in the corpus.
;ID  |SEX| SUBSET           |MINUTES| NAME
14   | F | train-clean-360  | 25.03 | Kristin LeMoine
60   | M | train-clean-100  | 20.18 | |CBW|Simon
"""
SPEAKERS_ACCENT = """\
; synthetic speakers
;ID |SEX| SUBSET |MINUTES| ACCENT | NAME
14 | F | train | 1.00 | en-gb-scotland | espeak en-gb-scotland+f2
60 | M | train | 1.00 | en-us | espeak|en-us
"""


def _build_librispeech(root, speakers_txt=None, seconds=0.25):
    """A tiny LibriSpeech tree: train/{14,60}/{100,200}/ with two utterances each, test/14/300/."""
    base = root / "LibriSpeech"
    layout = {"train": [("14", "100"), ("60", "200")], "test": [("14", "300")]}
    for split, chapters in layout.items():
        for speaker, chapter in chapters:
            folder = base / split / speaker / chapter
            lines = []
            for n in range(2):
                utt = f"{speaker}-{chapter}-{n:04d}"
                write_audio(folder / f"{utt}.flac", tone(seconds + 0.05 * n), 16000)
                lines.append(f"{utt} WORDS OF {utt.replace('-', ' ')}")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    if speakers_txt is not None:
        (base / "SPEAKERS.TXT").write_text(speakers_txt)
    return base


# --- LibriSpeech ------------------------------------------------------------------------------------
def test_real_test_clean_parses_exactly(shared_data, tmp_path):
    root = shared_data / REAL_LS_ROOT
    manifests = prepare_librispeech(root, tmp_path)
    assert list(manifests) == ["test-clean"]
    rows = read_manifest(manifests["test-clean"])
    assert [r["id"] for r in rows] == REAL_LS_IDS
    # Texts exactly as in the .trans.txt files (parsed here independently).
    expected_text = {}
    for trans in sorted((root / "LibriSpeech" / "test-clean").rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            utt, text = line.split(" ", 1)
            expected_text[utt] = text
    assert {r["id"]: r["text"] for r in rows} == expected_text
    # Durations and rates against transcripts.tsv (3 decimals there).
    with open(shared_data / "real-clips" / "transcripts.tsv", newline="") as f:
        table = {r["path"].rsplit("/", 1)[1][:-5]: r for r in csv.DictReader(f, delimiter="\t")
                 if r["path"].startswith("kennethwang_librispeech/")}
    assert sorted(table) == REAL_LS_IDS
    for row in rows:
        assert row["duration"] == pytest.approx(float(table[row["id"]]["duration_s"]), abs=5e-4)
        assert row["sampling_rate"] == int(table[row["id"]]["sample_rate"]) == 16000
        assert row["text"] == table[row["id"]]["text"]
        assert (row["speaker"], row["custom"], row["corpus"], row["split"]) == (
            "1089", {"chapter": row["id"].split("-")[1]}, "librispeech", "test-clean")
        assert "gender" not in row  # no SPEAKERS.TXT there, and unknown optional fields are left out
        assert row["accent"] is None
    assert rows[0]["duration"] == pytest.approx(10.435, abs=5e-4)


def test_synthetic_tree_with_standard_speakers(tmp_path):
    _build_librispeech(tmp_path / "corpus", SPEAKERS_STANDARD)
    manifests = prepare_librispeech(tmp_path / "corpus", tmp_path / "out")
    assert sorted(manifests) == ["test", "train"]
    train = read_manifest(manifests["train"])
    assert [r["id"] for r in train] == ["14-100-0000", "14-100-0001", "60-200-0000", "60-200-0001"]
    assert [r["gender"] for r in train] == ["female", "female", "male", "male"]
    assert all(r["accent"] is None for r in train)
    assert train[1]["text"] == "WORDS OF 14 100 0001"
    assert train[1]["duration"] == pytest.approx(0.30)
    assert train[2]["custom"] == {"chapter": "200"}
    assert [r["split"] for r in read_manifest(manifests["test"])] == ["test", "test"]


def test_synthetic_tree_with_accent_column(tmp_path):
    _build_librispeech(tmp_path, SPEAKERS_ACCENT)
    rows = read_manifest(prepare_librispeech(tmp_path, tmp_path / "out", splits=["train"])["train"])
    assert [r["accent"] for r in rows] == ["en-gb-scotland"] * 2 + ["en-us"] * 2
    assert [r["gender"] for r in rows] == ["female"] * 2 + ["male"] * 2
    assert not (tmp_path / "out" / "test.jsonl").exists()  # only the split asked for


def test_speakers_file_columns_and_pipes_in_names(tmp_path):
    standard, accent, bare = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    standard.write_text(SPEAKERS_STANDARD)
    accent.write_text(SPEAKERS_ACCENT)
    bare.write_text("7 | F | dev-clean | 8.0 | A | B\n")  # no header: 5 columns, name keeps its '|'
    s = read_speakers(standard)
    assert s["60"].name == "|CBW|Simon" and s["60"].gender == "male" and s["60"].accent is None
    assert s["14"].subset == "train-clean-360"
    a = read_speakers(accent)
    assert (a["60"].accent, a["60"].name, a["14"].accent) == ("en-us", "espeak|en-us", "en-gb-scotland")
    assert read_speakers(bare)["7"].name == "A | B"


def test_speakers_file_malformed_line(tmp_path):
    path = tmp_path / "SPEAKERS.TXT"
    path.write_text(SPEAKERS_ACCENT + "99 | M | train\n")
    with pytest.raises(ManifestError, match=rf"{path}:5: expected 6 '\|'-separated fields"):
        read_speakers(path)


def test_missing_audio_is_reported_with_file_and_line(tmp_path):
    base = _build_librispeech(tmp_path)
    (base / "train/60/200/60-200-0001.flac").unlink()
    with pytest.raises(ManifestError) as err:
        prepare_librispeech(tmp_path, tmp_path / "out")
    assert f"{base / 'train/60/200/60-200.trans.txt'}:2: audio for 60-200-0001 not found" in str(err.value)
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_orphan_audio_is_reported(tmp_path):
    base = _build_librispeech(tmp_path)
    orphan = base / "train/14/100/14-100-0007.flac"
    write_audio(orphan, tone(0.1), 16000)
    misplaced = base / "train/14/stray.flac"
    write_audio(misplaced, tone(0.1), 16000)
    with pytest.raises(ManifestError) as err:
        prepare_librispeech(tmp_path, tmp_path / "out", splits=["train"])
    message = str(err.value)
    assert f"{orphan}: no transcript line for this audio file" in message
    assert f"{misplaced}: misplaced" in message
    assert "2 problem(s)" in message


@pytest.mark.parametrize("bad_line, problem", [
    ("14-100-0002", ":3: malformed transcript line"),
    ("14-999-0002 TEXT", ":3: utterance id '14-999-0002' does not match its folder"),
    ("14-100-0000 AGAIN", ":3: utterance 14-100-0000 repeated (first on line 1)"),
])
def test_malformed_transcript_lines(tmp_path, bad_line, problem):
    base = _build_librispeech(tmp_path)
    trans = base / "train/14/100/14-100.trans.txt"
    trans.write_text(trans.read_text() + bad_line + "\n")
    with pytest.raises(ManifestError, match=str(trans).replace(".", r"\.") + problem.replace("(", r"\(")
                       .replace(")", r"\)")):
        prepare_librispeech(tmp_path, tmp_path / "out")


def test_unknown_split_and_missing_root(tmp_path):
    _build_librispeech(tmp_path)
    with pytest.raises(ManifestError, match=r"split\(s\) \['dev-clean'\] not found \(found: \['test', 'train'\]\)"):
        prepare_librispeech(tmp_path, tmp_path / "out", splits=["dev-clean"])
    with pytest.raises(ManifestError, match="no LibriSpeech/ folder"):
        prepare_librispeech(tmp_path / "out", tmp_path / "out")


# --- folder + table ---------------------------------------------------------------------------------
def _clips(root, names, seconds=0.2, rate=16000):
    for name in names:
        write_audio(root / name, tone(seconds, rate), rate)


def test_tsv_with_optional_and_custom_columns(tmp_path):
    _clips(tmp_path / "audio", ["a/one.wav", "two.flac"])
    table = tmp_path / "clips.tsv"
    table.write_text(
        "path\ttext\tspeaker\taccent\tgender\tlanguage\tsplit\tsnr\n"
        "a/one.wav\t\"quoted\" start\tS1\tscottish\tfemale\ten\ttrain\t12.5\n"
        "\n"  # blank lines are not rows
        "two.flac\tsecond clip\t\t\t\t\t\t\n"
    )
    result = import_table(table, tmp_path / "audio", tmp_path / "m.jsonl", corpus="mine")
    assert (result.rows, result.skipped) == (2, ())
    assert result.seconds == pytest.approx(0.4)
    one, two = read_manifest(result.manifest)
    assert one["id"] == "a/one" and two["id"] == "two"  # from the path when there is no id column
    assert one["text"] == '"quoted" start'  # TSV: quotes are text
    assert (one["speaker"], one["accent"], one["gender"], one["language"], one["split"]) == (
        "S1", "scottish", "female", "en", "train")
    assert one["custom"] == {"snr": "12.5"} and one["corpus"] == "mine"
    assert (two["speaker"], two["accent"], two["split"], two.get("gender")) == (None, None, None, None)
    assert one["audio_filepath"] == str(tmp_path / "audio" / "a" / "one.wav")


def test_csv_with_quoted_commas_and_ids(tmp_path):
    _clips(tmp_path, ["x.wav"], seconds=0.5, rate=22050)
    table = tmp_path / "t.csv"
    table.write_text('ID,Path,Text\nclip-1,x.wav,"hello, world"\n')
    (row,) = read_manifest(import_table(table, tmp_path, tmp_path / "m.jsonl").manifest)
    assert (row["id"], row["text"], row["sampling_rate"], row["corpus"]) == (
        "clip-1", "hello, world", 22050, "custom")
    assert row["duration"] == pytest.approx(0.5)
    assert "custom" not in row


def _bad_table(tmp_path):
    _clips(tmp_path, ["good.wav", "empty_text.wav"])
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all" * 10)
    table = tmp_path / "t.tsv"
    table.write_text("path\ttext\n"
                     "good.wav\tfine\n"  # line 2
                     "missing.wav\tno audio\n"  # 3
                     "empty_text.wav\t   \n"  # 4
                     "garbage.wav\tunreadable\n"  # 5
                     "good.wav\ttoo\tmany\n"  # 6
                     "good.wav\tsame id again\n")  # 7
    return table


def test_table_errors_name_file_and_line(tmp_path):
    table = _bad_table(tmp_path)
    with pytest.raises(ManifestError) as err:
        import_table(table, tmp_path, tmp_path / "out" / "m.jsonl")
    message = str(err.value)
    assert "5 bad row(s)" in message
    for line, reason in [(3, "audio file not found"), (4, "empty text for empty_text.wav"),
                         (5, "cannot read audio header"), (6, "expected 2 fields, got 3"),
                         (7, "id 'good' repeated (first on line 2)")]:
        assert f"{table}:{line}: " in message and reason in message
    assert f"{table}:2:" not in message
    assert not (tmp_path / "out" / "m.jsonl").exists()


def test_table_skip_invalid_reports_skipped_rows(tmp_path):
    table = _bad_table(tmp_path)
    result = import_table(table, tmp_path, tmp_path / "m.jsonl", skip_invalid=True)
    assert result.rows == 1
    assert [s.split(": ", 1)[0] for s in result.skipped] == [f"{table}:{n}" for n in (3, 4, 5, 6, 7)]
    assert [r["id"] for r in read_manifest(result.manifest)] == ["good"]


def test_table_structural_errors(tmp_path):
    _clips(tmp_path, ["a.wav"])
    no_text = tmp_path / "t.tsv"
    no_text.write_text("path\tspeaker\na.wav\ts\n")
    with pytest.raises(ManifestError, match=r"t\.tsv:1: header .* lacks required column\(s\) \['text'\]"):
        import_table(no_text, tmp_path, tmp_path / "m.jsonl")
    txt = tmp_path / "t.txt"
    txt.write_text("path\ttext\n")
    with pytest.raises(ManifestError, match="unknown table type '.txt'"):
        import_table(txt, tmp_path, tmp_path / "m.jsonl")
    odd_rate = tmp_path / "odd.csv"
    _clips(tmp_path, ["odd.wav"], rate=12345)
    odd_rate.write_text("path,text\nodd.wav,hi\n")
    # an unusual sample rate is accepted (audio is resampled to 16 kHz when it is loaded)
    result = import_table(odd_rate, tmp_path, tmp_path / "m.jsonl")
    assert [r["sampling_rate"] for r in read_manifest(result.manifest)] == [12345]


def test_real_clips_table(shared_data, tmp_path):
    clips = shared_data / "real-clips"
    result = import_table(clips / "transcripts.tsv", clips, tmp_path / "real.jsonl", corpus="real")
    rows = read_manifest(result.manifest)
    assert result.rows == len(rows) == 21 and result.skipped == ()
    for row in rows:  # the table's own duration/rate columns are kept in custom: they must agree
        assert row["duration"] == pytest.approx(float(row["custom"]["duration_s"]), abs=5e-4)
        assert row["sampling_rate"] == int(row["custom"]["sample_rate"])
    jfk = next(r for r in rows if r["id"] == "openai_whisper/tests/jfk")
    assert (jfk["sampling_rate"], jfk["custom"]["channels"]) == (44100, "2")


# --- FSDD -------------------------------------------------------------------------------------------
def test_fsdd_full_dataset(shared_data, tmp_path):
    start = time.perf_counter()
    manifests = prepare_fsdd(shared_data / "fsdd", tmp_path)
    elapsed = time.perf_counter() - start
    train, test = read_manifest(manifests["train"]), read_manifest(manifests["test"])
    assert (len(train), len(test)) == (2700, 300)
    assert manifests["test"].name == "fsdd_test.jsonl"
    assert sum(r["duration"] for r in train + test) / 3600 == pytest.approx(0.365, abs=0.001)
    accents = {r["speaker"]: r["accent"] for r in train + test}
    assert accents == {"jackson": "USA/neutral", "theo": "USA/neutral", "nicolas": "BEL/French",
                       "yweweler": "DEU/German", "lucas": "DEU/German", "george": "GRC/Greek"}
    assert {r["gender"] for r in train + test} == {"male"}
    assert {r["sampling_rate"] for r in train + test} == {8000}
    assert all(r["custom"]["index"] < 5 for r in test) and all(r["custom"]["index"] >= 5 for r in train)
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert all(r["text"] == words[int(r["id"][0])] for r in train + test)
    assert {r["language"] for r in test} == {"en"}
    assert elapsed < 5, f"FSDD import took {elapsed:.1f}s"


def test_fsdd_split_and_limit(shared_data, tmp_path):
    manifests = prepare_fsdd(shared_data / "fsdd", tmp_path, split="test", limit=60)
    assert list(manifests) == ["test"] and not (tmp_path / "fsdd_train.jsonl").exists()
    rows = read_manifest(manifests["test"])
    # first 60 in (digit, speaker, index) order: 0_george_0..49, 0_jackson_0..9; test = index 0-4
    assert [r["id"] for r in rows] == [f"0_george_{i}" for i in range(5)] + [f"0_jackson_{i}" for i in range(5)]


def _fake_fsdd(root, metadata_source, names):
    (root / "metadata.py").write_text(metadata_source)
    for name in names:
        write_audio(root / "recordings" / name, tone(0.1, 8000), 8000)


def test_fsdd_metadata_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    _fake_fsdd(tmp_path, f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                         "metadata = {'ann': {'gender': 'female', 'accent': 'X', 'language': 'english'}}\n",
               ["3_ann_7.wav", "3_ann_2.wav"])
    manifests = prepare_fsdd(tmp_path, tmp_path / "out")
    assert not marker.exists()
    (row,) = read_manifest(manifests["train"])
    assert (row["text"], row["speaker"], row["accent"], row["gender"]) == ("three", "ann", "X", "female")
    with pytest.raises(ManifestError, match="no FSDD recordings for split 'train'"):
        prepare_fsdd(tmp_path, tmp_path / "out", limit=1)  # 3_ann_2 (test) sorts first, 3_ann_7 is cut


def test_fsdd_errors(tmp_path):
    _fake_fsdd(tmp_path, "metadata = {'ann': {'accent': 'X'}}\n", ["1_ann_0.wav", "1_bob_0.wav", "one.wav"])
    with pytest.raises(ManifestError) as err:
        prepare_fsdd(tmp_path, tmp_path / "out")
    assert "speaker 'bob' not in" in str(err.value) and "one.wav: name is not" in str(err.value)
    (tmp_path / "metadata.py").write_text("metadata = dict(ann={})\n")
    with pytest.raises(ManifestError, match=r"metadata\.py:1: 'metadata' is not a literal dict"):
        read_metadata(tmp_path / "metadata.py")
    with pytest.raises(ManifestError, match="unknown FSDD split 'dev'"):
        prepare_fsdd(tmp_path, tmp_path / "out", split="dev")


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_prepare_librispeech(shared_data, tmp_path, capsys):
    assert main(["prepare", "librispeech", "--root", str(shared_data / REAL_LS_ROOT),
                 "--out", str(tmp_path), "--splits", "test-clean"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'test-clean.jsonl'}: 4 utterances, 0.006 h, 1 speakers" in out
    assert [json.loads(l)["id"] for l in (tmp_path / "test-clean.jsonl").read_text().splitlines()] == REAL_LS_IDS


def test_cli_prepare_folder_skip_invalid(tmp_path, capsys):
    table = _bad_table(tmp_path)
    out_path = tmp_path / "m.jsonl"
    assert main(["prepare", "folder", "--table", str(table), "--audio-root", str(tmp_path),
                 "--out", str(out_path)]) == 2
    assert f"{table}:3:" in capsys.readouterr().err and not out_path.exists()
    assert main(["prepare", "folder", "--table", str(table), "--audio-root", str(tmp_path),
                 "--out", str(out_path), "--corpus", "mine", "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert f"{out_path}: 1 utterances, 0.000 h, speakers unknown" in out
    assert "skipped 5 invalid row(s):" in out and f"{table}:7: id 'good' repeated" in out
    assert read_manifest(out_path)[0]["corpus"] == "mine"


def test_cli_prepare_fsdd(shared_data, tmp_path, capsys):
    assert main(["prepare", "fsdd", "--root", str(shared_data / "fsdd"), "--out", str(tmp_path),
                 "--split", "test"]) == 0
    assert f"{tmp_path / 'fsdd_test.jsonl'}: 300 utterances, 0.036 h, 6 speakers" in capsys.readouterr().out


def test_fsdd_balanced_subset(shared_data, tmp_path):
    from asr_sft.corpora.fsdd import prepare_fsdd
    from asr_sft.data.manifest import read_manifest

    path = prepare_fsdd(shared_data / "fsdd", tmp_path, split="test", per_speaker_digit=2)["test"]
    rows = read_manifest(path, check_audio=False)
    pairs = {(r["speaker"], r["text"]) for r in rows}
    assert len(pairs) == 6 * 10 and len(rows) == 2 * len(pairs)  # 6 speakers x 10 digits, 2 each
    assert {r["custom"]["index"] for r in rows} == {0, 1}
