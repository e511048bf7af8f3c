"""Accent-labelled corpus importers (Common Voice, L2-ARCTIC, EdAcc, Speech Accent Archive) on tiny
fixtures written in each corpus's real layout and file formats (Common Voice and the Speech Accent
Archive as real MP3 files, which libsndfile >= 1.1 writes and reads)."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from asr_sft.cli import main
from asr_sft.corpora.commonvoice import prepare_commonvoice
from asr_sft.corpora.edacc import prepare_edacc, read_background
from asr_sft.corpora.l2arctic import SPEAKERS, prepare_l2arctic
from asr_sft.corpora.speech_accent_archive import PARAGRAPH, prepare_speech_accent_archive
from asr_sft.data.audio import audio_info, load_audio, write_audio
from asr_sft.data.manifest import read_manifest
from asr_sft.errors import ManifestError
from conftest import tone


def _mp3(path, seconds, rate, freq=440.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32"), rate,
             format="MP3", subtype="MPEG_LAYER_III")


# --- Common Voice -----------------------------------------------------------------------------------
CV_HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\t"
             "accents\tvariant\tlocale\tsegment")
CV_OLD_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\tlocale\tsegment"


def _commonvoice(root):
    for n, (seconds, rate) in enumerate([(0.6, 48000), (0.9, 48000), (0.5, 32000), (0.4, 48000)]):
        _mp3(root / "clips" / f"common_voice_en_{n}.mp3", seconds, rate, freq=300 + 100 * n)
    (root / "clips" / "common_voice_en_9.mp3").write_bytes(b"ID3 this is not an mp3")
    (root / "train.tsv").write_text(
        CV_HEADER + "\n"
        "c1\tcommon_voice_en_0.mp3\ts0\t\"Quoted\" words here.\t\t2\t0\ttwenties\tmale_masculine\t"
        "England English\t\ten\t\n"  # line 2
        "c2\tcommon_voice_en_1.mp3\ts1\tSecond clip.\t\t3\t1\t\tfemale_feminine\t"
        "India and South Asia (India, Pakistan, Sri Lanka)|Kenyan English\ten-IN\ten\t\n"  # 3
        "c2\tcommon_voice_en_missing.mp3\ts2\tNo clip.\t\t2\t0\t\t\t\t\ten\t\n"  # 4: missing file
        "c3\tcommon_voice_en_3.mp3\ts3\t   \t\t2\t0\t\t\t\t\ten\t\n"  # 5: empty sentence
        "c3\tcommon_voice_en_9.mp3\ts4\tBroken audio.\t\t2\t0\t\t\t\t\ten\t\n"  # 6: not audio
        "c3\tcommon_voice_en_3.mp3\ttoo few fields\n"  # 7
    )
    (root / "test.tsv").write_text(CV_HEADER + "\n"
                                   "c4\tcommon_voice_en_2.mp3\ts5\tThird clip!\t\t2\t0\tthirties\tother\t\t\ten\t\n")
    (root / "dev.tsv").write_text(CV_HEADER + "\n")


def test_commonvoice_release(tmp_path):
    root = tmp_path / "cv-corpus-17.0" / "en"
    _commonvoice(root)
    result = prepare_commonvoice(root, tmp_path / "out")
    assert sorted(result.manifests) == ["test", "train"]  # dev.tsv has no rows: noted, not written
    assert any("split 'dev'" in n for n in result.notes)
    train = read_manifest(result.manifests["train"])
    assert [r["id"] for r in train] == ["common_voice_en_0", "common_voice_en_1"]
    first, second = train
    assert (first["text"], first["speaker"], first["accent"], first["gender"], first["language"]) == (
        '"Quoted" words here.', "c1", "England English", "male", "en")
    assert (first["sampling_rate"], first["split"], first["corpus"]) == (48000, "train", "commonvoice")
    assert first["duration"] == pytest.approx(0.6, abs=0.03)
    assert first["custom"] == {"age": "twenties", "up_votes": "2", "down_votes": "0", "sentence_id": "s0"}
    assert second["accent"] == "India and South Asia (India, Pakistan, Sri Lanka)|Kenyan English"
    assert (second["gender"], second["custom"]["dialect"]) == ("female", "en-IN")
    (third,) = read_manifest(result.manifests["test"])
    assert (third["sampling_rate"], third["accent"], third["gender"]) == (32000, None, "other")
    # every bad row is reported with its TSV line, and listed in full beside the manifests
    tsv = root / "train.tsv"
    assert [s.split(": ", 1)[0] for s in result.skipped] == [f"{tsv}:{n}" for n in (4, 5, 6, 7)]
    assert "audio file not found" in result.skipped[0] and "empty sentence" in result.skipped[1]
    assert "cannot read audio header" in result.skipped[2] and "expected 13 fields, got 3" in result.skipped[3]
    assert result.skipped_file.read_text().splitlines() == list(result.skipped)
    # the MP3 decodes through the pipeline's loader
    wave = load_audio(first["audio_filepath"])
    assert wave.shape[0] == pytest.approx(0.6 * 16000, abs=500) and wave.abs().max() > 0.2


def test_commonvoice_older_release_uses_accent_column(tmp_path):
    root = tmp_path / "en"
    _mp3(root / "clips" / "a.mp3", 0.5, 48000)
    (root / "validated.tsv").write_text(CV_OLD_HEADER + "\nc9\ta.mp3\tOld release.\t2\t0\tfourties\tmale\tscotland\ten\t\n")
    result = prepare_commonvoice(root, tmp_path / "out", tsvs=("validated",))
    (row,) = read_manifest(result.manifests["validated"])
    assert (row["accent"], row["gender"], row["split"]) == ("scotland", "male", "validated")
    assert result.skipped == () and result.skipped_file is None
    with pytest.raises(ManifestError, match=r"no train\.tsv"):
        prepare_commonvoice(root, tmp_path / "out")


def test_cli_prepare_commonvoice(tmp_path, capsys):
    root = tmp_path / "en"
    _commonvoice(root)
    assert main(["prepare", "commonvoice", "--root", str(root), "--out", str(tmp_path / "m"),
                 "--tsvs", "train"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'm' / 'commonvoice_train.jsonl'}: 2 utterances" in out
    assert "4 row(s) skipped (all listed in" in out and f"{root / 'train.tsv'}:7:" in out
    assert main(["prepare", "commonvoice", "--root", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "no clips/ folder" in capsys.readouterr().err


# --- L2-ARCTIC --------------------------------------------------------------------------------------
def _l2arctic(root):
    prompts = {"arctic_a0001": "Author of the danger trail, Philip Steels, etc.",
               "arctic_a0002": "Not at this particular case, Tom, apologized Whittemore."}
    for speaker in ("ABA", "LXC"):
        for stem, text in prompts.items():
            write_audio(root / speaker / "wav" / f"{stem}.wav", tone(0.3, 44100), 44100)
            (root / speaker / "transcript").mkdir(parents=True, exist_ok=True)
            (root / speaker / "transcript" / f"{stem}.txt").write_text(text)  # one line, no newline
    write_audio(root / "ABA" / "wav" / "arctic_b0001.wav", tone(0.2, 44100), 44100)  # no transcript
    (root / "LXC" / "transcript" / "arctic_b0002.txt").write_text("No audio for this one.")
    write_audio(root / "LXC" / "wav" / "arctic_b0003.wav", tone(0.2, 44100), 44100)
    (root / "LXC" / "transcript" / "arctic_b0003.txt").write_text("  \n")  # empty
    write_audio(root / "suitcase_corpus" / "wav" / "aba.wav", tone(0.2, 44100), 44100)
    write_audio(root / "QQQ" / "wav" / "arctic_a0001.wav", tone(0.2, 44100), 44100)
    (root / "QQQ" / "transcript").mkdir(parents=True)
    (root / "QQQ" / "transcript" / "arctic_a0001.txt").write_text(prompts["arctic_a0001"])


def test_l2arctic_release_layout(tmp_path):
    root = tmp_path / "l2arctic_release_v5.0"
    _l2arctic(root)
    result = prepare_l2arctic(root, tmp_path / "out")
    rows = read_manifest(result.manifests["all"])
    assert result.manifests["all"].name == "l2arctic.jsonl"
    assert [r["id"] for r in rows] == ["ABA_arctic_a0001", "ABA_arctic_a0002", "LXC_arctic_a0001",
                                       "LXC_arctic_a0002", "QQQ_arctic_a0001"]
    aba, lxc, unknown = rows[0], rows[2], rows[4]
    assert (aba["accent"], aba["gender"], aba["custom"]) == ("Arabic", "male", {"prompt": "arctic_a0001", "l1": "Arabic"})
    assert (lxc["accent"], lxc["gender"], lxc["speaker"]) == ("Mandarin", "female", "LXC")
    assert aba["text"] == "Author of the danger trail, Philip Steels, etc."
    assert (aba["sampling_rate"], aba["split"]) == (44100, None)
    assert aba["duration"] == pytest.approx(0.3)
    assert (unknown["accent"], unknown.get("gender")) == (None, None)
    assert [s.split(": ")[1] for s in result.skipped] == [
        f"no transcript {root / 'ABA' / 'transcript' / 'arctic_b0001.txt'}",
        f"no audio {root / 'LXC' / 'wav' / 'arctic_b0002.wav'}", "empty transcript"]
    assert any("suitcase_corpus" in n for n in result.notes) and any("QQQ" in n for n in result.notes)
    only = prepare_l2arctic(root, tmp_path / "out2", speakers=("LXC",))
    assert {r["speaker"] for r in read_manifest(only.manifests["all"])} == {"LXC"}
    with pytest.raises(ManifestError, match=r"speaker folder\(s\) \['NOPE'\] not found"):
        prepare_l2arctic(root, tmp_path / "out3", speakers=("NOPE",))


def test_l2arctic_speaker_table():
    assert len(SPEAKERS) == 24
    l1s = [l1 for l1, _ in SPEAKERS.values()]
    assert sorted(set(l1s)) == ["Arabic", "Hindi", "Korean", "Mandarin", "Spanish", "Vietnamese"]
    assert all(l1s.count(l1) == 4 for l1 in set(l1s))
    assert sum(g == "female" for _, g in SPEAKERS.values()) == 12


def test_cli_prepare_l2arctic(tmp_path, capsys):
    _l2arctic(tmp_path / "l2")
    assert main(["prepare", "l2arctic", "--root", str(tmp_path / "l2"), "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'm' / 'l2arctic.jsonl'}: 5 utterances, 0.000 h, 3 speakers" in out
    assert "note: " in out and "3 row(s) skipped" in out


# --- EdAcc ------------------------------------------------------------------------------------------
ACCENT_Q = "How would you describe your accent in English? (e.g. Italian, Glaswegian)"
BACKGROUND_HEADER = ["PARTICIPANT_ID", "What is your gender?", "What’s your year of birth? (e.g., 1992)", ACCENT_Q,
                     "Do you speak any second languages? separate them with commas  (e.g., Mandarin,Catalan,French )"]


def _edacc(root, background=True):
    # conversation C06 is 3 s at 32 kHz: 1 s of 200 Hz, 1 s of 400 Hz, 1 s of 800 Hz
    t = np.arange(32000) / 32000
    wave = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) for f in (200, 400, 800)]).astype("float32")
    write_audio(root / "data" / "EDACC-C06.wav", wave, 32000)
    write_audio(root / "data" / "EDACC-C07.wav", tone(1.0, 32000), 32000)
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "stm").write_text(
        ";; CATEGORY \"0\" \"\" \"\"\n"  # 1: comment
        "EDACC-C06 1 EDACC-C06-A 0.00 1.00 <male,l1> C ELEVEN DASH P ONE\n"  # 2
        "EDACC-C06 1 EDACC-C06-B 1.00 2.00 <female,l2> yeah <laugh> okay\n"  # 3
        "EDACC-C06 1 EDACC-C06-A 2.00 2.50 <male,l1> IGNORE_TIME_SEGMENT_IN_SCORING\n"  # 4
        "EDACC-C06 1 EDACC-C06-B 2.50 3.50 <female,l2> runs past the end\n"  # 5
        "EDACC-C99 1 EDACC-C99-A 0.00 1.00 <male,l1> no such recording\n"  # 6
        "EDACC-C06 1 EDACC-C06-A 2.50 2.00 <male,l1> backwards\n"  # 7
        "EDACC-C06 1 EDACC-C06-A 0.5\n"  # 8
    )
    (root / "test").mkdir()
    (root / "test" / "stm").write_text("EDACC-C07 1 EDACC-C07-A 0.10 0.90 <female,l2> test words\n")
    (root / "test" / "segments").write_text("EDACC-C07-A-0000010-0000090 EDACC-C07 0.10 0.90\n")
    if background:
        with open(root / "linguistic_background.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(BACKGROUND_HEADER)
            writer.writerow(["EDACC-C06-A", "Male", "1992", "Scottish ", "French"])
            writer.writerow(["EDACC-C06-B", "Female", "1990", "Nigerian English", ""])
            writer.writerow(["EDACC-C07-A", "Female", "1995", "Vietnamese", "Vietnamese"])


def test_edacc_release_layout(tmp_path):
    root = tmp_path / "edacc" / "edacc_v1.0"
    _edacc(root)
    result = prepare_edacc(root.parent, tmp_path / "out")  # the parent of edacc_v1.0 works too
    dev = read_manifest(result.manifests["dev"])
    assert [r["id"] for r in dev] == ["EDACC-C06-A-0000000-0000100", "EDACC-C06-B-0000100-0000200"]
    a, b = dev
    assert (a["text"], a["speaker"], a["accent"], a["gender"], a["offset"], a["duration"]) == (
        "C ELEVEN DASH P ONE", "EDACC-C06-A", "Scottish", "male", 0.0, 1.0)
    assert a["custom"] == {"recording": "EDACC-C06", "channel": "1", "english": "l1"}
    assert (b["accent"], b["gender"], b["custom"]["english"], b["offset"]) == ("Nigerian English", "female", "l2", 1.0)
    assert (a["sampling_rate"], a["split"], a["corpus"]) == (32000, "dev", "edacc")
    # the row's slice is the right second of the conversation: 400 Hz for B
    wave = load_audio(b["audio_filepath"], offset=b["offset"], duration=b["duration"])
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert wave.shape[0] == 16000 and np.argmax(spectrum) == pytest.approx(400, abs=2)
    stm = root / "dev" / "stm"
    reasons = {int(s.split(":")[1]): s for s in result.skipped}
    assert sorted(reasons) == [4, 5, 6, 7, 8] and all(s.startswith(f"{stm}:") for s in result.skipped)
    assert "IGNORE_TIME_SEGMENT_IN_SCORING segment" in reasons[4]
    assert "runs past the end" in reasons[5] and "audio file not found" in reasons[6]
    assert "empty or negative" in reasons[7] and "got 4 field(s)" in reasons[8]
    (test_row,) = read_manifest(result.manifests["test"])
    assert (test_row["accent"], test_row["offset"], test_row["duration"]) == ("Vietnamese", 0.1, 0.8)
    assert any("no l1 column" in n for n in result.notes)  # the real survey columns we know have no L1 question


def test_edacc_without_background_and_l1_column_detection(tmp_path):
    _edacc(tmp_path, background=False)
    result = prepare_edacc(tmp_path, tmp_path / "out", splits=("test",))
    (row,) = read_manifest(result.manifests["test"])
    assert (row["accent"], row["gender"]) == (None, "female")
    assert any("linguistic_background.csv: not found" in n for n in result.notes)
    # The L1 column's name is not in any source we could check; a header naming it is picked up.
    path = tmp_path / "bg.csv"
    path.write_text(f'PARTICIPANT_ID,"{ACCENT_Q}",What is your first language?\nEDACC-C07-A,Vietnamese,Vietnamese\n')
    background, notes = read_background(path)
    assert background == {"EDACC-C07-A": {"accent": "Vietnamese", "l1": "Vietnamese"}}
    assert notes == [f"{path}: no gender column"]
    with pytest.raises(ManifestError, match="unknown EdAcc split"):
        prepare_edacc(tmp_path, tmp_path / "out", splits=("train",))


# --- Speech Accent Archive --------------------------------------------------------------------------
SAA_HEADER = "age,age_onset,birthplace,filename,native_language,sex,speakerid,country,file_missing?,,,"


def _saa(root, passage=True):
    for name, seconds in (("afrikaans1", 0.5), ("english12", 0.7), ("mandarin3", 0.4)):
        _mp3(root / "recordings" / f"{name}.mp3", seconds, 44100)
    (root / "speakers_all.csv").write_text(
        SAA_HEADER + "\n"
        "27.0,9.0,\"virginia, south africa\",afrikaans1,afrikaans,female,1,south africa,FALSE,,,\n"  # 2
        "38.0,0.0,\"pittsburgh, pennsylvania, usa\",english12,english,famale,93,usa,FALSE,,,\n"  # 3
        "26.0,12.0,\"shanghai, china\",mandarin3,mandarin,male,700,china,TRUE,,,\n"  # 4: flagged missing
        "30.0,10.0,\"lima, peru\",spanish9,spanish,male,801,peru,FALSE,,,\n"  # 5: no file
    )
    if passage:
        (root / "reading-passage.txt").write_text(PARAGRAPH.replace(". ", ".  ") + "\n")


def test_speech_accent_archive_kaggle_layout(tmp_path):
    _saa(tmp_path / "saa")
    result = prepare_speech_accent_archive(tmp_path / "saa", tmp_path / "out")
    rows = read_manifest(result.manifests["all"])
    assert result.manifests["all"].name == "saa.jsonl"
    assert [r["id"] for r in rows] == ["afrikaans1", "english12"]
    af, en = rows
    assert (af["speaker"], af["accent"], af["gender"], af["text"]) == ("1", "afrikaans", "female", PARAGRAPH)
    assert af["custom"] == {"country": "south africa", "birthplace": "virginia, south africa", "age": "27.0",
                            "age_onset": "9.0", "l1": "afrikaans"}
    assert (en["gender"], en["sampling_rate"]) == ("female", 44100)  # "famale" read as female
    assert en["duration"] == pytest.approx(0.7, abs=0.03)
    csv_path = tmp_path / "saa" / "speakers_all.csv"
    assert [s.split(": ", 1)[0] for s in result.skipped] == [f"{csv_path}:4", f"{csv_path}:5"]
    assert "marked file_missing?" in result.skipped[0] and "spanish9: no .mp3" in result.skipped[1]


def test_speech_accent_archive_without_passage_file(tmp_path):
    _saa(tmp_path, passage=False)
    result = prepare_speech_accent_archive(tmp_path, tmp_path / "out")
    assert {r["text"] for r in read_manifest(result.manifests["all"])} == {PARAGRAPH}
    assert any("built-in elicitation paragraph" in n for n in result.notes)
    assert main(["prepare", "speech-accent-archive", "--root", str(tmp_path / "out"), "--out", str(tmp_path)]) == 2


# --- the corpora built in already carry accents -----------------------------------------------------
def test_any_manifest_with_accents_feeds_the_split(shared_data, tmp_path):
    """FSDD (real accented speakers) rows carry accent, and split groups by it."""
    from asr_sft.corpora.fsdd import prepare_fsdd

    manifest = prepare_fsdd(shared_data / "fsdd", tmp_path, split="test")["test"]
    rows = read_manifest(manifest)
    assert {r["accent"] for r in rows} == {"USA/neutral", "BEL/French", "DEU/German", "GRC/Greek"}
    assert audio_info(rows[0]["audio_filepath"]).sample_rate == 8000
    assert main(["split", str(manifest), "--out", str(tmp_path / "split"), "--fractions", "train=0.5,test=0.5",
                 "--text-overlap", "allow"]) == 0
    summary = json.loads((tmp_path / "split" / "split_summary.json").read_text())
    cells = {(c["group"], c["split"]): c["speakers"] for c in summary["cells"]}
    assert cells[("USA/neutral", "train")] == cells[("USA/neutral", "test")] == 1
    assert cells[("GRC/Greek", "train")] == 0  # one speaker: test only, reported
    assert any("'GRC/Greek': left out of train" in line for line in summary["left_out"])
