"""`asr-sft bench`: several systems (a decoded model, hypothesis files in three formats) on two test
sets of real clips, the full report, the hypothesis-file parsers and their errors."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from asr_sft.evaluation.benchmark import ALL_TESTSETS, BenchOptions, System, run_benchmark
from asr_sft.cli import main
from asr_sft.evaluation.decode import DecodeOptions
from asr_sft.errors import ScoringError
from asr_sft.evaluation.hypotheses import assign_hypotheses, detect_format, read_hypotheses
from asr_sft.evaluation.report import render_markdown
from asr_sft.evaluation.results import BenchmarkResults
from asr_sft.evaluation.scoring import score_texts

from _fixtures_benchmark import bench_inputs  # noqa: F401 (fixtures are used by name)
from _fixtures_models import tiny_ctc_dir, tiny_whisper_dir  # noqa: F401

SCTK = shutil.which("sctk")
SYSTEMS = ("ctc", "kaldi", "trn", "ref")
TESTSETS = ("clean", "accented")
GROUP_BY = ("speaker", "accent", "gender", "duration_bucket")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def bench(bench_inputs, tiny_ctc_dir, tmp_path_factory):
    """One `asr-sft bench` run: a model and hypothesis files in all three formats, two test sets."""
    out = tmp_path_factory.mktemp("bench") / "out"
    argv = ["bench", "--system", f"ctc={tiny_ctc_dir}", "--system", f"kaldi={bench_inputs['kaldi']}"]
    argv += [f"--system=trn@{t}={p}" for t, p in bench_inputs["trn"].items()]
    argv += [f"--system=ref@{t}={p}" for t, p in bench_inputs["jsonl"].items()]
    argv += [f"--testset={t}={p}" for t, p in bench_inputs["manifests"].items()]
    argv += ["--out", str(out), "--device", "cpu", "--batch-size", "4", "--group-by", ",".join(GROUP_BY),
             "--normalizer", "whisper_en"]
    assert main(argv) == 0
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_results_have_every_system_and_test_set(bench, bench_inputs):
    out, results = bench
    assert results["format"] == "asr_sft.benchmark/v2"
    assert [(r["testset"], r["system"]) for r in results["results"]] == \
           [(t, s) for t in TESTSETS for s in SYSTEMS]
    kinds = {s["name"]: s["kind"] for s in results["systems"]}
    assert kinds == {"ctc": "model", "kaldi": "hypotheses", "trn": "hypotheses", "ref": "hypotheses"}
    o = results["options"]
    assert o["normalizer"] == "whisper_en" and o["normalizer_info"]["tag"] == "whisper_en/v1"
    assert o["raw_normalizer_info"]["tag"] == "none/v1" and o["group_by"] == list(GROUP_BY)
    assert o["decode"]["warmup"] is True and o["decode"]["batch_size"] == 4 and o["resamples"] == 1000
    for t in results["testsets"]:
        rows = bench_inputs["rows"][t["name"]]
        assert t["utterances"] == len(rows) and t["speakers"] == len({r["speaker"] for r in rows})


def test_counts_agree_with_score_texts(bench, bench_inputs):
    """Every summary (normalised and raw) is score_texts on the hypotheses that were scored, and
    the hypotheses scored are exactly what each input file (or the decoder) gave."""
    out, results = bench
    files = {"kaldi": {t: bench_inputs["kaldi"] for t in TESTSETS}, "trn": bench_inputs["trn"],
             "ref": bench_inputs["jsonl"]}
    for r in results["results"]:
        rows = bench_inputs["rows"][r["testset"]]
        scored = read_jsonl(out / "systems" / r["system"] / f"hyps-{r['testset']}.jsonl")
        assert [h["id"] for h in scored] == [row["id"] for row in rows]
        assert [h["ref"] for h in scored] == [row["text"] for row in rows]
        hyps = [h["hyp"] for h in scored]
        if r["system"] in files:
            given = read_hypotheses(files[r["system"]][r["testset"]])
            assert hyps == [given.get(row["id"], given.get(f"{row['speaker']}-{row['id']}")) for row in rows]
        refs = [row["text"] for row in rows]
        for key, normalizer in (("summary", "whisper_en"), ("raw", "none")):
            expected = score_texts(refs, hyps, normalizer=normalizer).summary().to_dict()
            assert r[key] == expected, (r["testset"], r["system"], key)
        per_utt = r["per_utterance"]
        assert [u["id"] for u in per_utt] == [row["id"] for row in rows]
        assert sum(u["substitutions"] for u in per_utt) == r["summary"]["substitutions"]
        assert all(len(u["ops"]) == u["correct"] + u["substitutions"] + u["deletions"] + u["insertions"]
                   for u in per_utt)
    wer = {(r["testset"], r["system"]): r["summary"]["wer"] for r in results["results"]}
    assert all(wer[t, "ref"] == 0 for t in TESTSETS) and all(wer[t, "kaldi"] > 0 for t in TESTSETS)
    raw = {(r["testset"], r["system"]): r["raw"]["wer"] for r in results["results"]}
    assert all(raw[t, "kaldi"] > wer[t, "kaldi"] for t in TESTSETS)  # lower case only counts raw


def test_intervals_contain_estimates(bench):
    _, results = bench
    for r in results["results"]:
        i = r["interval"]
        assert i["low"] <= r["summary"]["wer"] <= i["high"] and i["estimate"] == r["summary"]["wer"]
        # Both test sets have fewer than 5 speakers (2 and 4): their intervals resample utterances.
        assert len({u["speaker"] for u in r["per_utterance"]}) < 5
        assert i["resampling"] == "utterance" and i["clusters"] == len(r["per_utterance"])
        assert set(r["groups"]) == set(GROUP_BY)
        for field, b in r["groups"].items():
            for g in b["groups"]:
                if g["utterances"] < 2:  # one utterance: nothing to resample, no interval
                    assert g["low"] is None and g["high"] is None and g["resampling"] == "utterance", (field, g)
                    continue
                assert g["low"] - 1e-12 <= g["wer"] <= g["high"] + 1e-12, (field, g)
            worst = next(g for g in b["groups"] if g["name"] == b["worst"])
            best = next(g for g in b["groups"] if g["name"] == b["best"])
            assert worst["wer"] == max(g["wer"] for g in b["groups"])
            assert b["gap"] == pytest.approx(worst["wer"] - best["wer"])
            if worst["low"] is None or best["low"] is None:  # a one-utterance group: no gap interval either
                assert b["gap_low"] is None and b["gap_high"] is None
            else:
                assert b["gap_low"] <= b["gap"] + 1e-12
    accents = next(r for r in results["results"] if r["testset"] == "accented")["groups"]["accent"]
    assert {g["name"]: (g["speakers"], g["few_speakers"]) for g in accents["groups"]} == \
           {"scottish": (1, True), "us": (3, True)}
    assert {g["name"]: g["resampling"] for g in accents["groups"]} == {"scottish": "utterance", "us": "utterance"}
    assert any("accent=scottish: only 1 speaker (< 5)" in w for w in results["warnings"])
    assert not any("speaker=" in w for w in results["warnings"])  # one speaker per speaker group is no news


def test_paired_tests_for_every_pair(bench):
    _, results = bench
    pairs = {(p["testset"], p["system_a"], p["system_b"]): p for p in results["paired"]}
    assert set(pairs) == {(t, a, b) for t in TESTSETS for a, b in combinations(SYSTEMS, 2)}
    wer = {(r["testset"], r["system"]): r["summary"]["wer"] for r in results["results"]}
    for (t, a, b), p in pairs.items():
        assert (p["wer_a"], p["wer_b"]) == pytest.approx((wer[t, a], wer[t, b]))
        assert p["delta"] == pytest.approx(p["wer_b"] - p["wer_a"])
        assert p["low"] <= p["delta"] <= p["high"] and 0 < p["p_value"] <= 1
    for t in TESTSETS:  # the random model against the references: a real difference
        assert pairs[t, "ctc", "ref"]["high"] < 0
        assert pairs[t, "ctc", "ref"]["verdict"].startswith("ref is better by")
        assert "weak evidence" in pairs[t, "ctc", "ref"]["verdict"]  # fewer than 5 speakers
        assert pairs[t, "ctc", "ref"]["resampling"] == "utterance"


def test_speed_and_environment(bench):
    _, results = bench
    for r in results["results"]:
        if r["system"] != "ctc":
            assert r["speed"] is None
            continue
        s = r["speed"]
        assert s["warmup"] is True and s["device"] == "cpu" and s["dtype"] == "float32" and s["batch_size"] == 4
        assert s["rtfx"] == pytest.approx(s["audio_seconds"] / s["decode_seconds"])
        assert s["load_seconds"] > 0 and s["audio_seconds"] == pytest.approx(
            next(t for t in results["testsets"] if t["name"] == r["testset"])["audio_seconds"], abs=0.01)
    env = results["environment"]
    for key in ("python", "torch", "transformers", "asr_sft", "device", "dtype", "batch_size", "cpu_threads"):
        assert env[key] not in (None, ""), key


def test_report_markdown_and_csv(bench):
    out, results = bench
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("# ASR benchmark", "## Test set `clean`", "## Test set `accented`", "### WER by accent",
                    "### WER by speaker", "### Paired tests", "## Speed", "## Environment", "## Warnings",
                    "## Files"):
        assert f"\n{heading}\n" in f"\n{report}", heading
    assert "| system | WER [95% CI] | raw WER | sub | del | ins | ref words | CER | SER | RTFx |" in report
    assert "`whisper_en/v1`" in report and "`none/v1`" in report
    ref_row = next(line for line in report.splitlines() if line.startswith("| ref | 0.00 [0.00, 0.00]† |"))
    assert ref_row.endswith("| 0.00 | 0.00 | - |")  # CER, SER, no RTFx for a hypothesis file
    assert "- `plots/wer-by-system.png`" in report
    # A report can be rebuilt from results.json alone, through the typed results.
    assert render_markdown(BenchmarkResults.from_dict(results)) == report
    table = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
    assert [(row["testset"], row["system"]) for row in table] == [(t, s) for t in TESTSETS for s in SYSTEMS]
    for row, r in zip(table, results["results"]):
        assert float(row["wer_pct"]) == pytest.approx(100 * r["summary"]["wer"], abs=1e-4)
        assert int(row["errors"]) == r["summary"]["errors"] and row["normalizer"] == "whisper_en/v1"
        assert (row["rtfx"] == "") == (r["speed"] is None)


def test_files_per_system_and_test_set(bench):
    out, results = bench
    for r in results["results"]:
        folder = out / "systems" / r["system"]
        t = r["testset"]
        for name in (f"recogs-{t}.txt", f"errs-{t}.txt", f"wer-summary-{t}.txt", f"{t}.ref.trn", f"{t}.hyp.trn",
                     f"hyps-{t}.jsonl"):
            assert (folder / name).is_file(), folder / name
        assert set(r["files"]) == {"recogs", "errs", "wer_summary", "ref_trn", "hyp_trn"}
        errs = (folder / f"errs-{t}.txt").read_text(encoding="utf-8")
        assert errs.startswith(f"%WER = {100 * r['summary']['wer']:.2f}\n")
        trn = (folder / f"{t}.hyp.trn").read_text(encoding="utf-8").splitlines()
        assert len(trn) == r["summary"]["utterances"] and all(re.search(r"\(\S+-\S+\)$", line) for line in trn)
    assert not list(out.rglob("*.part"))


def test_plots_are_png_images(bench):
    from matplotlib.image import imread

    out, results = bench
    expected = {"plots/wer-by-system.png"} | {f"plots/{t}-by-{f}.png" for t in TESTSETS for f in GROUP_BY}
    assert set(results["plots"]) == expected
    for rel in expected:
        assert (out / rel).read_bytes()[:8] == PNG_MAGIC
        image = imread(out / rel)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert np.ptp(image[..., :3]) > 0  # something is drawn


@pytest.mark.skipif(SCTK is None, reason="sctk (NIST sclite) is not installed")
def test_trn_files_agree_with_sclite(bench, tmp_path):
    out, results = bench
    for r in results["results"]:
        folder, t = out / "systems" / r["system"], r["testset"]
        shutil.copy(folder / f"{t}.hyp.trn", tmp_path / "hyp.trn")
        subprocess.run([SCTK, "sclite", "-r", str(folder / f"{t}.ref.trn"), "trn", "-h", str(tmp_path / "hyp.trn"),
                        "trn", "-i", "rm", "-s", "-e", "utf-8", "-o", "rsum", "-O", str(tmp_path)],
                       check=True, capture_output=True)
        total = re.search(r"\|\s*Sum\s*\|\s*\d+\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)",
                          (tmp_path / "hyp.trn.raw").read_text(encoding="utf-8"))
        s = r["summary"]
        assert tuple(map(int, total.groups())) == (s["ref_words"], s["correct"], s["substitutions"],
                                                   s["deletions"], s["insertions"], s["errors"])


# ------------------------------------------------------------------------------- hypothesis files

@pytest.mark.parametrize("name, text, fmt, expected", [
    ("hyps.jsonl", '{"id": "a", "ref": "X", "hyp": "x y"}\n\n{"id": 7, "hyp": ""}\n', "jsonl",
     {"a": "x y", "7": ""}),
    ("text", "utt1 hello  world\nutt2\nutt3\tbye\n", "kaldi", {"utt1": "hello world", "utt2": "", "utt3": "bye"}),
    ("hyp.trn", "hello world (spk-utt1)\n(spk-utt2)\n", "trn", {"spk-utt1": "hello world", "spk-utt2": ""}),
    ("hyps.txt", "hello there (spk1-u1)\n", "trn", {"spk1-u1": "hello there"}),  # sniffed
    ("hyps.txt", '{"id": "u", "hyp": "h"}\n', "jsonl", {"u": "h"}),  # sniffed
])
def test_read_hypotheses_formats(tmp_path, name, text, fmt, expected):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert detect_format(path) == fmt
    assert read_hypotheses(path) == expected


@pytest.mark.parametrize("name, text, message", [
    ("text", "u1 a\nu2 b\nu1 c\n", r"text: line 3: id 'u1' already on line 1"),
    ("h.trn", "a b (s-u1)\nno id here\n", r"h.trn: line 2: not a trn line"),
    ("h.jsonl", '{"id": "u1", "text": "a"}\n', r"h.jsonl: line 1: needs an \"id\" and a string \"hyp\""),
    ("h.jsonl", '{"id": "u1", "hyp": "a"}\n{oops\n', r"h.jsonl: line 2: not valid JSON"),
    ("h.jsonl", '["u1", "a"]\n', r"h.jsonl: line 1: not a JSON object"),
])
def test_read_hypotheses_errors_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScoringError, match=message):
        read_hypotheses(path)


def test_assign_hypotheses_by_id_and_trn_alias():
    testsets = {"a": [{"id": "u1", "speaker": "s1"}, {"id": "s2-u2", "speaker": "s2"}],
                "b": [{"id": "u3", "speaker": None}]}
    hyps = {"s1-u1": "one", "s2-u2": "two", "u3": "three"}
    assert assign_hypotheses("f.trn", hyps, testsets) == {"a": {"u1": "one", "s2-u2": "two"}, "b": {"u3": "three"}}
    with pytest.raises(ScoringError, match=r"^f\.trn: no hypothesis for 1 utterance\(s\) of test set 'b': u3$"):
        assign_hypotheses("f.trn", {"u1": "x", "s2-u2": "y"}, testsets)
    with pytest.raises(ScoringError, match=r"^f\.trn: 2 hypothesis id\(s\) match no utterance of test set\(s\) "
                                           r"'a', 'b': zz, s9-u1$"):
        assign_hypotheses("f.trn", {**hyps, "zz": "x", "s9-u1": "y"}, testsets)
    with pytest.raises(ScoringError, match="two hypotheses for utterance 'u1'"):
        assign_hypotheses("f.trn", {"u1": "x", "s1-u1": "y", "s2-u2": "", "u3": ""}, testsets)


def test_bench_errors_name_the_file_and_leave_no_results(bench_inputs, tmp_path, capsys):
    manifests, rows = bench_inputs["manifests"], bench_inputs["rows"]
    testsets = [f"--testset={t}={p}" for t, p in manifests.items()]
    out = tmp_path / "out"
    decoded = tmp_path / "decode" / "accented"  # an `asr-sft decode` folder stands for its hyps.jsonl
    decoded.mkdir(parents=True)
    shutil.copy(bench_inputs["jsonl"]["accented"], decoded / "hyps.jsonl")
    assert main(["bench", "--system", f"ref@clean={bench_inputs['jsonl']['clean']}",
                 "--system", f"ref@accented={decoded}", *testsets, "--out", str(out),
                 "--resamples", "50", "--no-plots"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["systems"][0]["hyp_files"][1]["path"] == str(decoded / "hyps.jsonl")
    assert results["options"]["resamples"] == 50 and not (out / "plots").exists()
    short = tmp_path / "short.txt"
    short.write_text("".join(f"{r['id']} x\n" for r in rows["clean"][1:]), encoding="utf-8")
    capsys.readouterr()
    assert main(["bench", "--system", f"k@clean={short}", "--system", f"k@accented={bench_inputs['kaldi']}",
                 *testsets, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{short}: no hypothesis for 1 utterance(s) of test set 'clean': {rows['clean'][0]['id']}" in err
    assert not (out / "results.json").exists()  # the old results no longer describe the folder
    for argv, message in [
        ([f"--system=k@nope={short}"], "hypotheses for unknown test set(s) nope"),
        ([f"--system=k@clean={short}"], "no hypothesis file for test set(s) accented"),
        ([f"--system=k={bench_inputs['kaldi']}", f"--system=k@clean={short}"], "one file for all test sets"),
        ([f"--system=a/b={bench_inputs['kaldi']}"], "system name 'a/b'"),
        ([f"--system=k={bench_inputs['kaldi']}", f"--system=j={bench_inputs['kaldi']}", "--normalizer=nope"],
         "unknown text normaliser 'nope'"),
        ([f"--system=k={bench_inputs['trn']['clean']}"], "no hypothesis for 6 utterance(s) of test set 'accented'"),
    ]:
        assert main(["bench", *argv, *testsets, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err, message


def test_whisper_model_system(bench_inputs, tiny_whisper_dir, tmp_path):
    """A Whisper checkpoint is decoded and timed like a CTC one (library call, a few tokens)."""
    systems = [System("whisper", model=str(tiny_whisper_dir)),
               System("ref", hyp_files=((ALL_TESTSETS, str(bench_inputs["jsonl"]["accented"])),))]
    options = DecodeOptions(batch_size=6, device="cpu", max_new_tokens=4, progress=False, warmup=True)
    results = run_benchmark(systems, {"accented": bench_inputs["manifests"]["accented"]}, tmp_path,
                            BenchOptions(normalizer="whisper_basic", group_by=("accent",), resamples=100, plots=False),
                            options)
    whisper = results.results[0]
    assert whisper.system == "whisper" and whisper.speed.rtfx > 0
    assert whisper.summary.normalizer == "whisper_basic/v1"
    assert results.decode["max_new_tokens"] == 4 and results.plots is None
    assert len(results.paired) == 1 and (tmp_path / "report.md").is_file()
    assert whisper.decode.utterances == 6 and results.results[1].decode is None
    assert sum(b.utterances for b in whisper.speed.by_duration) == 6
