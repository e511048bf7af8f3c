"""Scoring: alignments, corpus rates, groups, bootstrap, writers, and agreement with NIST sclite."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asr_sft.evaluation import alignment
from asr_sft.evaluation.alignment import align_batch, align_chars, align_words
from asr_sft.errors import ScoringError
from asr_sft.evaluation.hypotheses import trn_id
from asr_sft.evaluation.report import write_errs, write_recogs, write_trn, write_wer_summary
from asr_sft.evaluation.scoring import (bootstrap_wer, duration_bucket, group_breakdown, paired_bootstrap, score_rows,
                             score_texts)

SCTK = shutil.which("sctk")


def sclite_reference_ops(ref: list[str], hyp: list[str]) -> str:
    """A plain, cell-by-cell version of sclite's dynamic programme (SCTK net_dp.c, word.c costs):
    the oracle for the vectorised one."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [["I"] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0], back[i][0] = 3 * i, "D"
    for j in range(1, m + 1):
        cost[0][j] = 3 * j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            sub = cost[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 4)
            dele, ins = cost[i - 1][j] + 3, cost[i][j - 1] + 3
            if sub <= dele and sub <= ins:
                cost[i][j], back[i][j] = sub, "S"
            elif dele < ins:
                cost[i][j], back[i][j] = dele, "D"
            else:
                cost[i][j], back[i][j] = ins, "I"
    ops, i, j = [], n, m
    while i or j:
        step = back[i][j]
        if step == "S":
            ops.append("C" if ref[i - 1] == hyp[j - 1] else "S")
            i, j = i - 1, j - 1
        elif step == "D":
            ops.append("D")
            i -= 1
        else:
            ops.append("I")
            j -= 1
    return "".join(reversed(ops))


def random_pairs(seed: int, count: int, vocab: list[str], max_len: int = 12) -> tuple[list[str], list[str]]:
    """Reference/hypothesis texts with random edits; a small vocabulary makes many equal-cost ties."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(count):
        ref = [rng.choice(vocab) for _ in range(rng.randint(0, max_len))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 6)):
            roll = rng.random()
            if roll < 0.33 and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(vocab)
            elif roll < 0.66 and hyp:
                del hyp[rng.randrange(len(hyp))]
            else:
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(vocab))
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return refs, hyps


# ------------------------------------------------------------------------------------------ alignment

@pytest.mark.parametrize("ref, hyp, ops", [
    ("a b c", "a b c", "CCC"),
    ("", "", ""),
    ("", "a b", "II"),
    ("a b", "", "DD"),
    ("a b c", "a x c", "CSC"),
    ("a b c d", "a x c d e", "CSCCI"),
    ("the the the", "the the", "DCC"),  # as sclite: a tie goes to the diagonal, from the end
    # sclite's costs (substitution 4, insertion/deletion 3) prefer 3 insertions + 3 deletions
    # (cost 18) to 5 substitutions (cost 20): 6 errors where the minimum edit count is 5.
    ("a b c d e", "x y z a b", "IIICCDDD"),
])
def test_align_words_table(ref, hyp, ops):
    alignment = align_words(ref.split(), hyp.split())
    assert alignment.ops == ops
    assert alignment.errors == len(ops) - ops.count("C")


def test_alignment_pairs_show_both_sides():
    alignment = align_words("the cat sat".split(), "a cat sat down".split())
    assert alignment.pairs() == [("the", "a"), ("cat", "cat"), ("sat", "sat"), (None, "down")]
    assert align_words(["x"], []).pairs() == [("x", None)]


def test_vectorised_alignment_equals_cell_by_cell_oracle(monkeypatch):
    # Tiny chunks force many batches with padding of different widths.
    monkeypatch.setattr(alignment, "DP_CELLS_PER_CHUNK", 500)
    refs, hyps = random_pairs(seed=7, count=600, vocab=list("abcd"), max_len=15)
    ref_words, hyp_words = [r.split() for r in refs], [h.split() for h in hyps]
    ops, counts = align_batch(ref_words, hyp_words)
    expected = [sclite_reference_ops(r, h) for r, h in zip(ref_words, hyp_words)]
    assert ops == expected
    assert counts.tolist() == [[o.count(c) for c in "CSDI"] for o in expected]


def test_long_utterance_alignment_with_wide_costs():
    # 3,000 + 3,000 words overflow int16 costs, so this runs the int32 path.
    ref = [f"w{k}" for k in range(3000)]
    hyp = list(ref)
    hyp[100], hyp[2000] = "x", "y"  # substitutions
    del hyp[1500]  # deletion
    hyp.insert(2500, "z")  # insertion
    alignment = align_words(ref, hyp)
    assert [alignment.count(op) for op in "CSDI"] == [2997, 2, 1, 1]
    assert alignment.ops[1500] == "D" and alignment.ops.count("C") == 2997


def test_align_chars_is_unit_cost():
    alignment = align_chars("kitten", "sitting")
    assert alignment.ops == "SCCCSCI" and alignment.errors == 3


# ------------------------------------------------------------------------------------------ rates

def test_corpus_rates_are_sums_not_means():
    scores = score_texts(["the cat sat on the mat", "hello"], ["the hat sat on the mat", "goodbye"],
                         normalizer="none")
    s = scores.summary()
    # 2 errors over 7 reference words (a mean of utterance WERs would say (1/6 + 1) / 2).
    assert (s.errors, s.ref_words, s.substitutions) == (2, 7, 2)
    assert s.wer == pytest.approx(2 / 7)
    assert s.ser == 1.0 and s.sentence_errors == 2
    assert s.normalizer == "none/v1"


def test_to_dict_is_json_ready_with_optional_utterances():
    import json

    scores = score_texts(["a b"], ["a c d"], ids=["u1"], normalizer="none", fields={"speaker": ["s"]})
    d = json.loads(json.dumps(scores.to_dict(utterances=True)))
    assert d["wer"] == 1.0 and d["normalizer"] == "none/v1"
    assert d["utterances"] == 1
    assert d["per_utterance"] == [{"id": "u1", "ref": "a b", "hyp": "a c d", "ops": "CIS", "correct": 1,
                                   "substitutions": 1, "deletions": 0, "insertions": 1, "char_errors": 3,
                                   "ref_chars": 3, "speaker": "s"}]
    assert "per_utterance" not in scores.to_dict()


def test_cer_counts_spaces_between_words():
    s = score_texts(["ab cd"], ["ab ce"], normalizer="none").summary()
    assert (s.char_errors, s.ref_chars) == (1, 5)
    assert s.cer == pytest.approx(0.2)


def test_normalizer_applies_to_both_sides_before_alignment():
    scores = score_texts(["The colour is twenty five."], ["the color is 25"], normalizer="whisper_en")
    assert scores.summary().errors == 0 and scores.refs[0] == ["the", "color", "is", "25"]
    raw = score_texts(["The colour is twenty five."], ["the color is 25"], normalizer="none")
    assert raw.summary().errors == 4


def test_empty_reference_rates_are_undefined_not_zero():
    s = score_texts([""], ["extra words"], normalizer="none").summary()
    assert s.insertions == 2 and np.isnan(s.wer)
    assert s.to_dict()["wer"] is None  # JSON has no NaN


def test_score_rows_joins_by_id_and_reports_every_problem():
    rows = [{"id": "a", "text": "one two", "speaker": "s1", "duration": 3.0, "custom": {"room": "big"}},
            {"id": "b", "text": "three", "speaker": "s2", "duration": 12.0}]
    scores = score_rows(rows, {"b": "three", "a": "one"}, normalizer="none",
                        fields=("speaker", "duration_bucket", "room"))
    assert scores.ids == ("a", "b") and scores.counts[:, 2].tolist() == [1, 0]
    assert scores.fields == {"speaker": ("s1", "s2"), "duration_bucket": ("0-5s", "10-20s"),
                             "room": ("big", None)}
    with pytest.raises(ScoringError, match="no hypothesis for id.*: b"):
        score_rows(rows, {"a": "x"}, normalizer="none")
    with pytest.raises(ScoringError, match="unknown id.*: c"):
        score_rows(rows, {"a": "x", "b": "y", "c": "z"}, normalizer="none")
    with pytest.raises(ScoringError, match="duplicate reference id.*: a"):
        score_rows(rows + rows[:1], {"a": "x", "b": "y"}, normalizer="none")


def test_duration_buckets():
    assert [duration_bucket(s) for s in (0.5, 5.0, 19.9, 29.0, 45.0, None)] == [
        "0-5s", "5-10s", "10-20s", "20-30s", "30s+", None]


# ------------------------------------------------------------------------------------------ bootstrap

def speaker_scores(per_speaker_error_rates, utterances_per_speaker=20, words=10, seed=0):
    """Utterances of `words` words; speaker k gets each word wrong with the k-th error rate."""
    rng = random.Random(seed)
    refs, hyps, speakers = [], [], []
    for k, rate in enumerate(per_speaker_error_rates):
        for _ in range(utterances_per_speaker):
            ref = [f"w{rng.randrange(50)}" for _ in range(words)]
            refs.append(" ".join(ref))
            hyps.append(" ".join("ERR" if rng.random() < rate else w for w in ref))
            speakers.append(f"spk{k}")
    return refs, hyps, speakers


def test_bootstrap_is_seeded_and_covers_the_estimate():
    refs, hyps, speakers = speaker_scores([0.05, 0.1, 0.2, 0.3, 0.1, 0.15])
    scores = score_texts(refs, hyps, normalizer="none", fields={"speaker": speakers})
    first = bootstrap_wer(scores, resamples=500, seed=3)
    assert first == bootstrap_wer(scores, resamples=500, seed=3)
    assert first != bootstrap_wer(scores, resamples=500, seed=4)
    assert first.low < first.estimate < first.high and first.clusters == 6
    assert set(first.to_dict()) >= {"estimate", "low", "high", "confidence", "resamples", "clusters"}


def test_speaker_bootstrap_is_wider_than_utterance_bootstrap_when_speakers_differ():
    # Speakers differ a lot: resampling utterances as if independent would understate uncertainty.
    refs, hyps, speakers = speaker_scores([0.02, 0.05, 0.4, 0.6, 0.1, 0.3])
    by_speaker = bootstrap_wer(score_texts(refs, hyps, normalizer="none", fields={"speaker": speakers}),
                               resamples=1000, seed=0)
    by_utterance = bootstrap_wer(score_texts(refs, hyps, normalizer="none"), resamples=1000, seed=0)
    assert by_utterance.clusters == len(refs)
    assert by_speaker.high - by_speaker.low > 2 * (by_utterance.high - by_utterance.low)


def test_group_breakdown_finds_worst_group_and_flags_few_speakers():
    refs, hyps, speakers = speaker_scores([0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.5, 0.5])
    accents = ["us"] * 120 + ["scottish"] * 40  # 6 speakers vs 2 speakers
    scores = score_texts(refs, hyps, normalizer="none", fields={"speaker": speakers, "accent": accents})
    breakdown = group_breakdown(scores, "accent", resamples=300, seed=0)
    by_name = {g.name: g for g in breakdown.groups}
    assert breakdown.worst == "scottish" and breakdown.best == "us"
    assert by_name["scottish"].speakers == 2 and by_name["scottish"].few_speakers
    assert not by_name["us"].few_speakers and by_name["us"].utterances == 120
    assert breakdown.gap == pytest.approx(by_name["scottish"].wer - by_name["us"].wer)
    assert breakdown.gap_low <= breakdown.gap <= breakdown.gap_high and breakdown.gap_low > 0.2
    assert len(breakdown.warnings) == 1 and "accent=scottish" in breakdown.warnings[0]
    assert breakdown.to_dict()["groups"][0]["name"] == "scottish"
    with pytest.raises(ScoringError, match="no field 'gender'"):
        group_breakdown(scores, "gender")


def test_group_breakdown_names_missing_values_unknown():
    scores = score_texts(["a", "b"], ["a", "c"], normalizer="none",
                         fields={"speaker": ["s1", "s2"], "gender": ["f", None]})
    breakdown = group_breakdown(scores, "gender", resamples=50)
    assert [g.name for g in breakdown.groups] == ["f", "unknown"]
    assert breakdown.worst == "unknown"
    with pytest.raises(ScoringError, match="no utterances"):
        group_breakdown(score_texts([], [], normalizer="none", fields={"gender": []}), "gender")


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    refs, hyps_a, speakers = speaker_scores([0.2] * 10, seed=1)
    _, hyps_b, _ = speaker_scores([0.1] * 10, seed=1)  # same references, half the errors
    fields = {"speaker": speakers}
    a = score_texts(refs, hyps_a, normalizer="none", fields=fields)
    b = score_texts(refs, hyps_b, normalizer="none", fields=fields)
    test = paired_bootstrap(a, b, resamples=1000, seed=0)
    assert test.delta == pytest.approx(b.summary().wer - a.summary().wer) and test.delta < 0
    assert test.high < 0 and test.p_value < 0.01
    same = paired_bootstrap(a, a, resamples=200, seed=0)
    assert same.delta == 0 and same.p_value == 1.0
    # The pairing is by id, not by position.
    order = list(reversed(range(len(refs))))
    b_shuffled = score_texts([refs[k] for k in order], [hyps_b[k] for k in order], normalizer="none",
                             ids=[b.ids[k] for k in order], fields={"speaker": [speakers[k] for k in order]})
    assert paired_bootstrap(a, b_shuffled, resamples=1000, seed=0).delta == pytest.approx(test.delta)


def test_paired_bootstrap_refuses_different_utterances_or_normalisers():
    a = score_texts(["a b"], ["a b"], normalizer="none")
    with pytest.raises(ScoringError, match="same utterance ids"):
        paired_bootstrap(a, score_texts(["a b"], ["a"], ids=["x"], normalizer="none"))
    with pytest.raises(ScoringError, match="normalised differently"):
        paired_bootstrap(a, score_texts(["a b"], ["a b"], normalizer="librispeech"))
    with pytest.raises(ScoringError, match="references differ"):
        paired_bootstrap(a, score_texts(["a c"], ["a b"], normalizer="none"))


# ------------------------------------------------------------------------------------------ writers

@pytest.fixture()
def small_scores():
    return score_texts(["the cat sat", "hello world"], ["the hat sat down", "world"],
                       ids=["1089-2", "1089-1"], normalizer="none", fields={"speaker": ["1089", "1089"]})


def test_write_recogs_and_errs_in_icefall_style(tmp_path, small_scores):
    recogs = write_recogs(tmp_path / "recogs-test.txt", small_scores).read_text(encoding="utf-8")
    assert recogs.splitlines() == ["1089-1:\tref=hello world", "1089-1:\thyp=world",
                                   "1089-2:\tref=the cat sat", "1089-2:\thyp=the hat sat down"]
    errs = write_errs(tmp_path / "errs-test.txt", small_scores).read_text(encoding="utf-8").splitlines()
    assert errs[0] == "%WER = 60.00"
    assert errs[1] == "Errors: 1 insertions, 1 deletions, 1 substitutions, over 5 reference words (3 correct)"
    assert "1089-1:\t(hello->*) world" in errs and "1089-2:\tthe (cat->hat) sat (*->down)" in errs
    section = errs.index("SUBSTITUTIONS: count ref -> hyp")
    assert errs[section + 1] == "1   cat -> hat"
    assert errs[errs.index("DELETIONS: count ref") + 1] == "1   hello"
    assert errs[errs.index("INSERTIONS: count hyp") + 1] == "1   down"
    assert "sat   1 0 1 1" in errs  # word, correct, errors, count in ref, count in hyp
    assert not list(tmp_path.glob("*.part"))  # atomic writes leave no temp files behind


def test_write_wer_summary(tmp_path, small_scores):
    path = write_wer_summary(tmp_path / "wer-summary-test.txt", small_scores, "greedy")
    lines = path.read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["settings", "WER", "CER", "SER"]
    assert lines[1].split("\t")[:2] == ["greedy", "60.00"] and lines[1].endswith("none/v1")


def test_write_trn_uses_sclite_speaker_convention(tmp_path, small_scores):
    lines = write_trn(tmp_path / "sub" / "hyp.trn", small_scores, "hyp").read_text().splitlines()
    assert lines == ["the hat sat down (1089-2)", "world (1089-1)"]
    assert trn_id("utt1", "spk-a b") == "spk_a_b-utt1"  # sclite splits the speaker at the first '-'
    assert trn_id("x(1)", None) == "unknown-x_1_"
    with pytest.raises(ScoringError):
        write_trn(tmp_path / "x.trn", small_scores, "both")
    odd = score_texts(["a (b)"], ["a"], ids=["u"], normalizer="none")
    with pytest.raises(ScoringError, match="utterance u has words sclite would misread"):
        write_trn(tmp_path / "odd.trn", odd, "ref")
    assert not (tmp_path / "odd.trn").exists()


# ------------------------------------------------------------------------------------------ sclite

def run_sclite(scores, tmp_path: Path) -> tuple[dict[str, tuple], tuple[int, ...]]:
    """sclite's per-utterance ((C, S, D, I), ops) by trn id and its total (N, C, S, D, I, errors)."""
    ref, hyp = write_trn(tmp_path / "ref.trn", scores, "ref"), write_trn(tmp_path / "hyp.trn", scores, "hyp")
    command = [SCTK, "sclite", "-r", str(ref), "trn", "-h", str(hyp), "trn", "-i", "rm", "-s",
               "-e", "utf-8", "-o", "rsum", "pralign", "-O", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True)
    per_utt = {}
    for block in (tmp_path / "hyp.trn.pra").read_text(encoding="utf-8").split("id: (")[1:]:
        counts = re.search(r"Scores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)", block).groups()
        # Long alignments wrap onto ">> REF:" / ">> HYP:" lines.
        ref = [w for line in re.findall(r"^(?:>> )?REF:(.*)$", block, re.M) for w in line.split()]
        hyp = [w for line in re.findall(r"^(?:>> )?HYP:(.*)$", block, re.M) for w in line.split()]
        assert len(ref) == len(hyp), block
        ops = "".join("I" if set(r) == {"*"} else "D" if set(h) == {"*"} else "C" if r == h else "S"
                      for r, h in zip(ref, hyp))
        per_utt[block[:block.index(")")]] = (tuple(int(x) for x in counts), ops)
    total = re.search(r"\|\s*Sum\s*\|\s*\d+\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)",
                      (tmp_path / "hyp.trn.raw").read_text(encoding="utf-8"))
    return per_utt, tuple(int(x) for x in total.groups())


def assert_agrees_with_sclite(scores, tmp_path: Path) -> None:
    per_utt, total = run_sclite(scores, tmp_path)
    speakers = scores.fields.get("speaker", (None,) * len(scores))
    ours = {trn_id(k, spk): (tuple(int(x) for x in c), ops)
            for k, spk, c, ops in zip(scores.ids, speakers, scores.counts, scores.ops)}
    assert ours == per_utt  # C, S, D, I counts and the alignment itself, utterance by utterance
    s = scores.summary()
    assert total == (s.ref_words, s.correct, s.substitutions, s.deletions, s.insertions, s.errors)


needs_sclite = pytest.mark.skipif(SCTK is None, reason="sctk (NIST sclite) is not installed; "
                                  "apt-get install sctk")


@needs_sclite
def test_sclite_agrees_on_tricky_cases(tmp_path):
    rng = random.Random(5)
    long_ref = [rng.choice(["the", "a", "cat", "sat", "on", "mat"]) for _ in range(500)]
    long_hyp = [w if rng.random() > 0.15 else rng.choice(["the", "hat", "mat", "x"]) for w in long_ref]
    del long_hyp[100:110]
    cases = [
        ("", "words only in the hypothesis"),
        ("words only in the reference", ""),
        ("", ""),
        ("the the the the", "the the"),
        ("a b a b a b", "b a b a b a"),
        ("a b c d e", "x y z a b"),  # sclite's costs give 6 errors where 5 edits would do
        ("café naïve straße 日本語 ÉCOLE", "cafe naïve strasse 日本 école"),
        ("x", "x y z w v"),
        (" ".join(long_ref), " ".join(long_hyp)),
    ]
    scores = score_texts([r for r, _ in cases], [h for _, h in cases], normalizer="none",
                         ids=[f"case{k}" for k in range(len(cases))],
                         fields={"speaker": ["spk"] * len(cases)})
    assert_agrees_with_sclite(scores, tmp_path)


@needs_sclite
def test_sclite_agrees_on_random_cases(tmp_path):
    refs, hyps = random_pairs(seed=11, count=1500, vocab=["a", "b", "c", "the", "ab"], max_len=15)
    speakers = [f"s{k % 9}" for k in range(len(refs))]
    scores = score_texts(refs, hyps, normalizer="none", fields={"speaker": speakers},
                         ids=[f"u{k}" for k in range(len(refs))])
    assert_agrees_with_sclite(scores, tmp_path)


@needs_sclite
def test_sclite_agrees_after_whisper_normalisation(tmp_path):
    refs = ["Mr. Smith paid $20 for the colour TV.", "Uh, I can't hear you!", "It's twenty five past one."]
    hyps = ["mister smith paid twenty dollars for the color tv", "i cannot hear you", "its 25 past 1"]
    scores = score_texts(refs, hyps, normalizer="whisper_en", ids=["a-1", "a-2", "b-1"],
                         fields={"speaker": ["a", "a", "b"]})
    assert scores.summary().errors > 0
    assert_agrees_with_sclite(scores, tmp_path)


@needs_sclite
def test_sclite_agrees_with_s_flag_only_default_sclite_folds_ascii_case(tmp_path):
    """What README claims, exactly: our counts are `sclite -s`'s (case-sensitive). Plain sclite
    folds ASCII case ("Hello" = "hello") but not other letters ("café" != "CAFÉ")."""
    scores = score_texts(["Hello World café"], ["hello world CAFÉ"], normalizer="none", ids=["1"],
                         fields={"speaker": ["s"]})
    assert scores.summary().errors == 3
    assert_agrees_with_sclite(scores, tmp_path)  # with -s
    ref, hyp = write_trn(tmp_path / "r.trn", scores, "ref"), write_trn(tmp_path / "h.trn", scores, "hyp")
    out = subprocess.run([SCTK, "sclite", "-r", str(ref), "trn", "-h", str(hyp), "trn", "-i", "rm", "-e", "utf-8",
                          "-o", "rsum", "stdout"], check=True, capture_output=True, text=True).stdout
    total = re.search(r"\|\s*Sum\s*\|\s*\d+\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out).groups()
    assert tuple(map(int, total)) == (3, 2, 1, 0, 0, 1)  # without -s: only the non-ASCII word differs
