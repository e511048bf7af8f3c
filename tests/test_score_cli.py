"""`asr-sft score`: the files it writes, its one-line summary, and parity with the training loop."""

from __future__ import annotations

import json
import re

import pytest

from asr_sft.cli import main
from asr_sft.training.config import Config, TrainConfig
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest, load_model
from asr_sft.data.manifest import read_manifest
from asr_sft.evaluation.scoring import score_texts
from asr_sft.training.loop import evaluate

from _fixtures_models import clips_manifest, tiny_ctc_dir  # noqa: F401 (fixtures are used by name)

LINE = re.compile(r"^(\S+): WER (\d+\.\d\d)% \[S (\d+), D (\d+), I (\d+) / N (\d+)\], "
                  r"CER (\d+\.\d\d)% \((\S+/v\d+)\)$")

# (reference, hypothesis): hand-counted under the librispeech normaliser
PAIRS = [
    ("HE COULD WAIT NO LONGER", "he could wait longer now"),  # D 1 (NO), I 1 (NOW)
    ("in being comparatively modern.", "In being comparatively modern"),  # correct after normalising
    ("She had your dark suit.", "she had her dark suit in"),  # S 1 (YOUR->HER), I 1 (IN)
    ("has never been surpassed", ""),  # D 4
]
EXPECTED = dict(substitutions=1, deletions=5, insertions=2, ref_words=18, errors=8)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def hand_rows():
    return [{"id": f"u{k}", "ref": ref, "hyp": hyp, "speaker": f"s{k % 2}", "duration": 1.0}
            for k, (ref, hyp) in enumerate(PAIRS)]


def run_score(capsys, *argv):
    code = main(["score", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err


def test_score_hand_counted(tmp_path, capsys):
    (tmp_path / "dec" / "test-clean").mkdir(parents=True)
    hyps = write_jsonl(tmp_path / "dec" / "test-clean" / "hyps.jsonl", hand_rows())
    code, line, _ = run_score(capsys, "--hyps", hyps, "--out", tmp_path / "score")
    assert code == 0
    m = LINE.match(line)
    assert m, line
    name, wer, s, d, i, n, _, tag = m.groups()
    assert name == "test-clean"  # the folder of hyps.jsonl
    assert (int(s), int(d), int(i), int(n)) == (1, 5, 2, 18) and wer == "44.44" and tag == "librispeech/v1"
    record = json.loads((tmp_path / "score" / "wer.json").read_text())
    assert {k: record[k] for k in EXPECTED} == EXPECTED
    assert record["wer"] == 8 / 18 and record["normalizer"] == "librispeech/v1"
    assert record["sentence_errors"] == 3 and record["ser"] == 0.75
    assert record["utterances"] == 4 and 0 < record["cer"] < 1
    errs = (tmp_path / "score" / "errs-test-clean.txt").read_text()
    assert "u0:\tHE COULD WAIT (NO->*) LONGER (*->NOW)" in errs
    assert "u2:\tSHE HAD (YOUR->HER) DARK SUIT (*->IN)" in errs
    assert "u3:\t(HAS->*) (NEVER->*) (BEEN->*) (SURPASSED->*)" in errs
    recogs = (tmp_path / "score" / "recogs-test-clean.txt").read_text()
    assert "u1:\tref=IN BEING COMPARATIVELY MODERN\nu1:\thyp=IN BEING COMPARATIVELY MODERN\n" in recogs
    summary = (tmp_path / "score" / "wer-summary-test-clean.txt").read_text().splitlines()
    assert summary[1].split("\t")[:2] == ["test-clean", "44.44"]


@pytest.mark.parametrize("normalizer", ["librispeech", "whisper_en", "none"])
def test_score_equals_score_texts(tmp_path, capsys, normalizer):
    hyps = write_jsonl(tmp_path / "h.jsonl", hand_rows())
    code, line, _ = run_score(capsys, "--hyps", hyps, "--out", tmp_path, "--name", "x",
                              "--normalizer", normalizer)
    assert code == 0 and line.startswith("x: WER ")
    expected = score_texts([r for r, _ in PAIRS], [h for _, h in PAIRS], normalizer=normalizer).summary()
    record = json.loads((tmp_path / "wer.json").read_text())
    assert {k: record[k] for k in expected.to_dict()} == expected.to_dict()
    assert record["normalizer_info"]["name"] == normalizer


def test_score_with_manifest_and_kaldi_text(tmp_path, capsys, clips_manifest):
    rows = read_manifest(clips_manifest)
    kaldi = tmp_path / "text"
    kaldi.write_text("".join(f"{r['id']} {r['text'].lower()}\n" for r in reversed(rows)), encoding="utf-8")
    code, line, _ = run_score(capsys, "--hyps", kaldi, "--manifest", clips_manifest, "--out", tmp_path / "o")
    assert code == 0 and LINE.match(line).group(2) == "0.00"
    assert line.startswith("text: ")
    record = json.loads((tmp_path / "o" / "wer.json").read_text())
    assert record["utterances"] == len(rows) and record["manifest"] == str(clips_manifest)


def test_score_errors_name_the_file(tmp_path, capsys, clips_manifest):
    rows = read_manifest(clips_manifest)
    no_refs = write_jsonl(tmp_path / "norefs.jsonl", [{"id": r["id"], "hyp": "x"} for r in rows])
    code, _, err = run_score(capsys, "--hyps", no_refs, "--out", tmp_path / "o")
    assert code == 2 and "norefs.jsonl: line 1" in err and "--manifest" in err
    short = write_jsonl(tmp_path / "short.jsonl", [{"id": r["id"], "hyp": "x"} for r in rows[1:]])
    code, _, err = run_score(capsys, "--hyps", short, "--manifest", clips_manifest, "--out", tmp_path / "o")
    assert code == 2 and "short.jsonl" in err and rows[0]["id"] in err and "no hypothesis for 1" in err
    assert not (tmp_path / "o").exists()  # nothing written for a failed score
    code, _, err = run_score(capsys, "--hyps", no_refs, "--manifest", clips_manifest, "--out", tmp_path / "o",
                             "--normalizer", "nope")
    assert code == 2 and "unknown text normaliser 'nope'" in err


def test_score_matches_training_evaluation(tmp_path, capsys, clips_manifest, tiny_ctc_dir):
    """The WER `asr-sft score` prints for a decode output is the training loop's dev WER."""
    options = DecodeOptions(batch_size=2, device="cpu", progress=False)
    hyps = decode_manifest(tiny_ctc_dir, clips_manifest, tmp_path / "dec", options)
    rows = read_manifest(clips_manifest)
    model, processor = load_model(tiny_ctc_dir, options)
    for normalizer in ("librispeech", "whisper_en"):
        config = Config(train=TrainConfig(eval_normalizer=normalizer, device="cpu"))
        dev = evaluate(model, processor, rows, config)
        code, line, _ = run_score(capsys, "--hyps", hyps, "--out", tmp_path / normalizer,
                                  "--normalizer", normalizer)
        record = json.loads((tmp_path / normalizer / "wer.json").read_text())
        assert code == 0 and record["wer"] == dev["dev_wer"] and record["cer"] == dev["dev_cer"]
        assert record["normalizer"] == dev["normalizer"]
        assert LINE.match(line).group(2) == f"{100 * dev['dev_wer']:.2f}"
    assert dev["dev_wer"] > 0  # a random model: the parity is not between two zeros



def test_score_trn_references_without_a_manifest(tmp_path, capsys):
    """`asr-sft score --refs ref.trn --hyps hyp.trn`: no manifest, no audio; speakers from trn ids."""
    ref, hyp = tmp_path / "ref.trn", tmp_path / "hyp.trn"
    ref.write_text("HE COULD WAIT NO LONGER (s1-u0)\nShe had your dark suit. (s2-u1)\n(s2-u2)\n", encoding="utf-8")
    hyp.write_text("she had her dark suit in (s2-u1)\nhe could wait longer now (s1-u0)\nuh (s2-u2)\n",
                   encoding="utf-8")
    code, line, _ = run_score(capsys, "--refs", ref, "--hyps", hyp, "--out", tmp_path / "o")
    assert code == 0 and line.startswith("hyp: WER 50.00% [S 1, D 1, I 3 / N 10]"), line
    record = json.loads((tmp_path / "o" / "wer.json").read_text())
    assert record["format"] == "asr_sft.score/v2" and record["refs"] == str(ref) and record["manifest"] is None
    assert "s1-u0:\tHE COULD WAIT (NO->*) LONGER (*->NOW)" in (tmp_path / "o" / "errs-hyp.txt").read_text()
    from asr_sft.evaluation.hypotheses import read_references

    assert [(r["id"], r["speaker"]) for r in read_references(ref)] == [("s1-u0", "s1"), ("s2-u1", "s2"),
                                                                        ("s2-u2", "s2")]
    kaldi = tmp_path / "text"  # Kaldi text hypotheses against trn references, by the same ids
    kaldi.write_text("s1-u0 he could wait no longer\ns2-u1 she had your dark suit\ns2-u2\n", encoding="utf-8")
    code, line, _ = run_score(capsys, "--refs", ref, "--hyps", kaldi, "--out", tmp_path / "k")
    assert code == 0 and "WER 0.00%" in line
    missing = tmp_path / "short.trn"
    missing.write_text("he could wait no longer (s1-u0)\n", encoding="utf-8")
    code, _, err = run_score(capsys, "--refs", ref, "--hyps", missing, "--out", tmp_path / "m")
    assert code == 2 and "short.trn: no hypothesis for 2 utterance(s)" in err
    with pytest.raises(SystemExit):  # references from one place only
        main(["score", "--refs", str(ref), "--manifest", str(ref), "--hyps", str(hyp), "--out", str(tmp_path)])
