"""Issue 13, "honest numbers": intervals with few speakers, runaway Whisper decoding and its guard,
special token ids checked at load time, digit-aware normalisation, quiet decoding logs, RTFx per
duration, and the typed, versioned results (issue 8, point 3)."""

from __future__ import annotations

import copy
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_sft.cli import main
from asr_sft.data.manifest import make_row, read_manifest, write_manifest
from asr_sft.errors import ModelError, ScoringError
from asr_sft.evaluation.benchmark import ALL_TESTSETS, BenchOptions, System, run_benchmark
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest, load_model, transcribe_batch
from asr_sft.evaluation.report import render_markdown
from asr_sft.evaluation.results import (RESULTS_FORMAT, SCORE_FORMAT, BenchmarkResults, BucketSpeed,
                                        DecodeCounts, ScoreResult)
from asr_sft.evaluation.scoring import (bootstrap_wer, group_breakdown, hallucination_signals, loop_repeats,
                                        normalizer_effect, paired_bootstrap, score_texts)
from asr_sft.models import whisper as wh
from asr_sft.models import whisper_decoding as wd
from asr_sft.models.options import Transcript

from _fixtures_models import clips_manifest, tiny_whisper_dir  # noqa: F401 (fixtures are used by name)

ROOT = Path(__file__).resolve().parents[1]
CPU = dict(device="cpu", progress=False)


# ------------------------------------------------------------------ 1. bootstrap with few speakers

def two_systems(speakers: int, utterances: int = 240, words: int = 11):
    """Systems A and B on the same `utterances` (words each, spread over `speakers` speakers): A errs
    once on utterances 0-29, B once on 15-45, so B makes one error more in 2,640 words."""
    refs = [" ".join(f"w{(k * 7 + j) % 97}" for j in range(words)) for k in range(utterances)]

    def hyp(k: int, wrong: range) -> str:
        return refs[k] if k not in wrong else "ERR " + refs[k].split(" ", 1)[1]

    spk = {"speaker": [f"s{k % speakers}" for k in range(utterances)]}
    a = score_texts(refs, [hyp(k, range(0, 30)) for k in range(utterances)], normalizer="none", fields=spk)
    b = score_texts(refs, [hyp(k, range(15, 46)) for k in range(utterances)], normalizer="none", fields=spk)
    return a, b


@pytest.mark.parametrize("speakers, resampling", [(1, "utterance"), (2, "utterance"), (8, "speaker")])
def test_paired_test_never_claims_significance_it_cannot_support(speakers, resampling):
    a, b = two_systems(speakers)
    test = paired_bootstrap(a, b, resamples=1000, seed=0)
    assert test.delta == pytest.approx(1 / 2640)
    assert test.resampling == resampling
    assert test.low <= 0 <= test.high  # resampling one speaker gave [delta, delta] and p = 0.002
    assert test.high - test.low > 1e-3 and test.p_value > 0.3
    assert test.clusters == (240 if resampling == "utterance" else speakers)
    interval = bootstrap_wer(a, resamples=500)
    assert interval.resampling == resampling and interval.high - interval.low > 1e-3


def test_too_few_units_give_no_interval_and_no_p_value():
    a = score_texts(["a b c"], ["a x c"], normalizer="none", fields={"speaker": ["s"]})
    b = score_texts(["a b c"], ["a b c"], normalizer="none", fields={"speaker": ["s"]})
    interval = bootstrap_wer(a)
    assert interval.estimate == pytest.approx(1 / 3) and math.isnan(interval.low) and math.isnan(interval.high)
    assert interval.to_dict()["low"] is None
    test = paired_bootstrap(a, b)
    assert math.isnan(test.low) and math.isnan(test.p_value) and test.to_dict()["p_value"] is None
    from asr_sft.evaluation.report import verdict

    assert verdict("a", "b", test).startswith("cannot tell: 1 utterance to resample")


def test_group_with_one_speaker_resamples_its_utterances():
    a, _ = two_systems(8)
    accents = ["solo" if s == "s0" else "many" for s in a.fields["speaker"]]
    scores = score_texts([" ".join(r) for r in a.refs], [" ".join(h) for h in a.hyps], normalizer="none",
                         fields={**a.fields, "accent": accents})
    groups = {g.name: g for g in group_breakdown(scores, "accent", resamples=300).groups}
    assert groups["solo"].resampling == "utterance" and groups["solo"].few_speakers
    assert groups["solo"].high > groups["solo"].low  # one speaker resampled: a zero-width interval
    assert groups["many"].resampling == "speaker" and not groups["many"].few_speakers


def test_benchmark_report_on_one_speaker(tmp_path):
    """A one-speaker test set: no p = 0.002, '1 speaker' in words, utterances resampled and marked."""
    a, b = two_systems(1)
    rows = [make_row(id=f"u{k}", audio_filepath=str(tmp_path / f"u{k}.wav"), duration=1.0 + k % 7,
                     text=" ".join(a.refs[k]), speaker="s0", accent="us", sampling_rate=16000)
            for k in range(len(a))]
    manifest = write_manifest(tmp_path / "m.jsonl", rows, check_audio=False)
    files = {}
    for name, scores in (("a", a), ("b", b)):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("".join(f"u{k} {' '.join(h)}\n" for k, h in enumerate(scores.hyps)))
    systems = [System(n, hyp_files=((ALL_TESTSETS, str(p)),)) for n, p in files.items()]
    results = run_benchmark(systems, {"solo": manifest}, tmp_path / "out",
                            BenchOptions(group_by=("accent",), resamples=500, plots=False))
    pair = results.paired[0]
    assert pair.test.resampling == "utterance" and pair.test.p_value > 0.3
    assert pair.verdict.startswith("no reliable difference") and "weak evidence" in pair.verdict
    report = (tmp_path / "out" / "report.md").read_text()
    assert "240 utterances, 1 speaker, " in report and "1 speakers" not in report
    assert any("accent=us: only 1 speaker (< 5)" in w for w in results.warnings)
    line = next(x for x in report.splitlines() if x.startswith("| a | b |"))
    assert "]† |" in line and "| 0.002 |" not in line


# ------------------------------------------------------------------ 2. runaway decoding

@pytest.mark.parametrize("text, repeats", [
    ("the end of the end of the end of the end of", 4),
    ("no no no no", 4),
    ("the cat sat on the mat", 1),
    ("a b a b a", 2),
    ("", 1),
])
def test_loop_repeats(text, repeats):
    assert loop_repeats(text.split()) == repeats


def test_compression_ratio_flags_repetition():
    loop = " ".join(["the end of"] * 30)
    assert wd.compression_ratio(loop) > 2.4
    assert wd.compression_ratio("And so my fellow Americans ask not what your country can do for you") < 2.4
    assert wd.compression_ratio("") == 0


def test_hallucination_signals():
    refs = ["the story ends here", "one two three", "no no no no", "hello"]
    hyps = ["the end of the end of the end of the end of the end", "one two three", "no no no no", ""]
    s = hallucination_signals(score_texts(refs, hyps, normalizer="none", ids=["loop", "ok", "said", "gone"]))
    assert s.looping == 1 and s.looping_ids == ("loop",)  # "no no no no" is in the reference too
    assert s.empty == 1
    assert s.insertion_rate == pytest.approx(10 / 12)  # 14 hypothesis words for 4: at least 10 inserted
    assert s.repeated_ngram_rate > 0.5 and s.ref_repeated_ngram_rate == pytest.approx(1 / 5)  # "no no no" twice, of 5


def waves_of(manifest, n=3):
    from asr_sft.data.features import load_row

    return [load_row(r) for r in read_manifest(manifest)[:n]]


def test_fallback_redecodes_a_loop(tiny_whisper_dir, clips_manifest):
    """The random Whisper loops greedily ("Finland Finland ..."): the guard re-decodes it by
    sampling, keeps an attempt that does not repeat itself, and says so."""
    model, processor = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    waves = waves_of(clips_manifest, 2)
    greedy = transcribe_batch(model, processor, waves, DecodeOptions(max_new_tokens=10, fallback=False))
    assert all(t.compression_ratio > 2.4 and t.attempts == 1 and t.hit_max_tokens for t in greedy)
    assert all(t.avg_logprob is None for t in greedy)
    options = DecodeOptions(max_new_tokens=10, fallback_temperatures=(0.3, 0.6))
    guarded = transcribe_batch(model, processor, waves, options)
    for g, t in zip(greedy, guarded):
        assert t.attempts == 3 and t.failed  # a random model: every attempt is improbable
        assert t.text != g.text and t.compression_ratio <= 2.4 and t.temperature > 0
        assert t.avg_logprob < -1.0 and 0 < t.tokens <= 10
    # Each utterance's sampling is seeded by its own audio: alone or in a batch, the same text.
    alone = transcribe_batch(model, processor, waves[1:], options)[0]
    assert alone.text == guarded[1].text and alone.avg_logprob == pytest.approx(guarded[1].avg_logprob, abs=1e-4)
    other_seed = transcribe_batch(model, processor, waves[1:], DecodeOptions(
        max_new_tokens=10, fallback_temperatures=(0.3, 0.6), fallback_seed=1))[0]
    assert other_seed.text != guarded[1].text


def test_greedy_path_equals_whisper_generate(tiny_whisper_dir, clips_manifest):
    """With the guard off, decoding gives what WhisperForConditionalGeneration.generate gives."""
    model, processor = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    waves = waves_of(clips_manifest)
    ours = transcribe_batch(model, processor, waves, DecodeOptions(max_new_tokens=7, fallback=False))
    with torch.inference_mode():
        ids = model.generate(input_features=wh.input_features(model, waves), max_new_tokens=7)
    theirs = [t.strip() for t in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert [t.text for t in ours] == theirs


def test_avg_logprob_matches_generation_scores(tiny_whisper_dir, clips_manifest):
    """The teacher-forced log-probabilities are those of the scores greedy search chose by."""
    from transformers import GenerationMixin

    model, processor = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    waves = waves_of(clips_manifest, 2)
    with torch.inference_mode():
        features = wh.input_features(model, waves)
        hidden = model.get_encoder()(features).last_hidden_state
        prefix = torch.tensor([processor.tokenizer.prefix_tokens])
        gen = copy.deepcopy(model.generation_config)
        gen.max_length, gen.output_scores, gen.return_dict_in_generate = prefix.shape[1] + 5, True, True
        out = GenerationMixin.generate(model, input_features=features, decoder_input_ids=prefix.expand(2, -1),
                                       generation_config=gen)
        tokens = out.sequences[:, prefix.shape[1]:]
        scores = torch.stack(out.scores, dim=1).float().log_softmax(-1)
        expected = scores.gather(-1, tokens[..., None]).squeeze(-1).sum(1) / (tokens.shape[1] + 1)  # no end token
        ours = wd._avg_logprobs(model, hidden, prefix, tokens)
    assert ours == pytest.approx(expected.tolist(), abs=1e-4)


def test_greedy_search_records_the_same_logprobs_as_the_teacher_forced_pass(tiny_whisper_dir, clips_manifest):
    """The fallback's log-probability check takes greedy attempts' numbers from the search itself
    (_GreedyLogprobs); they equal the second pass that scores sampled attempts."""
    model, processor = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    waves = waves_of(clips_manifest, 3)
    with torch.inference_mode():
        hidden = model.get_encoder()(wh.input_features(model, waves)).last_hidden_state
        prefix = torch.tensor([processor.tokenizer.prefix_tokens])
        recorder = wd._GreedyLogprobs()
        tokens = wd._generate(model, hidden, prefix, 12, 1, 0.0, None, recorder)
        eot = wd._eos_ids(model.generation_config)[0]
        assert recorder.averages(tokens, eot) == pytest.approx(wd._avg_logprobs(model, hidden, prefix, tokens),
                                                               abs=1e-4)
        # A row that ends early counts its tokens up to and including the end token only.
        ended = tokens.clone()
        ended[0, 2:] = eot
        counted, text_tokens = wd._counted(ended, eot)
        assert counted[0].tolist() == [True, True, True] + [False] * (ended.shape[1] - 3) and text_tokens[0] == 2


def test_decode_json_counts_what_the_guard_caught(tiny_whisper_dir, clips_manifest, tmp_path):
    options = DecodeOptions(batch_size=2, max_new_tokens=4, fallback_temperatures=(0.5,), **CPU)
    decode_manifest(tiny_whisper_dir, clips_manifest, tmp_path, options)
    summary = json.loads((tmp_path / "decode.json").read_text())
    rows = read_manifest(clips_manifest)
    guard = DecodeCounts.from_dict(summary["guard"])
    assert guard.utterances == len(rows) and guard.redecoded == len(rows) and guard.still_failing == len(rows)
    assert guard.at_max_tokens == len(rows) and set(guard.redecoded_ids) == {r["id"] for r in rows}
    assert summary["options"]["fallback"] is True and summary["options"]["compression_ratio_threshold"] == 2.4
    buckets = summary["by_duration"]
    assert sum(b["utterances"] for b in buckets) == len(rows)
    assert sum(b["decode_seconds"] for b in buckets) == pytest.approx(summary["decode_seconds"])
    from asr_sft.evaluation.scoring import duration_bucket

    expected = sorted({duration_bucket(r["duration"]) for r in rows}, key=lambda b: float(b.split("-")[0].rstrip("s+")))
    assert [b["bucket"] for b in buckets] == expected and len(expected) > 1  # shortest first


def test_training_evaluation_uses_the_guard(tiny_whisper_dir, clips_manifest, monkeypatch):
    """evaluate() decodes through the same transcribe path (the guard is on by default)."""
    from asr_sft.training.config import Config, TrainConfig
    from asr_sft.training.loop import evaluate

    seen = []
    real = wd.transcribe

    def spy(model, processor, waves, features, options):
        seen.append(options.fallback)
        return real(model, processor, waves, features, DecodeOptions(max_new_tokens=3, fallback=options.fallback,
                                                                     fallback_temperatures=(0.5,)))

    monkeypatch.setattr(wd, "transcribe", spy)
    model, processor = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    evaluate(model, processor, read_manifest(clips_manifest)[:2], Config(train=TrainConfig(device="cpu")))
    assert seen and all(seen)


def test_bench_reports_signals_guard_and_rtfx_by_duration(tiny_whisper_dir, clips_manifest, tmp_path):
    options = DecodeOptions(batch_size=3, max_new_tokens=3, warmup=False, fallback_temperatures=(0.5,), **CPU)
    results = run_benchmark([System("w", model=str(tiny_whisper_dir))], {"clips": clips_manifest}, tmp_path,
                            BenchOptions(group_by=(), resamples=50, plots=False), options)
    r = results.results[0]
    assert r.decode.redecoded == 5 and r.decode.at_max_tokens == 5
    assert r.signals.repeated_ngram_rate >= 0 and r.signals.empty == 0
    assert sum(b.decode_seconds for b in r.speed.by_duration) == pytest.approx(r.speed.decode_seconds)
    report = (tmp_path / "report.md").read_text()
    assert "| system | ins % | repeated 3-grams % | looping | empty | at max tokens | re-decoded (still failing) |" \
        in report
    assert "| w | clips | 0-5s |" in report  # RTFx by duration
    assert any("5 utterance(s) re-decoded by temperature fallback" in w for w in results.warnings)


def test_bucket_speed_charges_batches_to_their_utterances():
    buckets = BucketSpeed.from_utterances([0.5, 0.4, 12.0, 3.0], [0.2, 0.2, 0.1, 0.2])
    assert [(b.bucket, b.utterances) for b in buckets] == [("0-5s", 3), ("10-20s", 1)]
    assert buckets[0].rtfx == pytest.approx(3.9 / 0.6) and buckets[1].rtfx == pytest.approx(120.0)


# ------------------------------------------------------------------ 3. special ids at load time

def broken_copy(src: Path, dst: Path, **generation) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "generation_config.json").read_text())
    config.update(generation)
    (dst / "generation_config.json").write_text(json.dumps(config))
    return dst


def test_wrong_end_and_start_ids_are_fixed_with_a_warning(tiny_whisper_dir, tmp_path, caplog):
    # 50256 is tiny.en's <|endoftext|>, not this (multilingual) tokenizer's 50257.
    folder = broken_copy(tiny_whisper_dir, tmp_path / "m", eos_token_id=50256, decoder_start_token_id=50257)
    with caplog.at_level("WARNING"):
        model, processor = wh.load_whisper_model(folder)
    assert model.generation_config.eos_token_id == 50257
    assert model.generation_config.decoder_start_token_id == 50258
    assert "generation_config.eos_token_id 50256 -> 50257" in caplog.text
    assert "generation_config.decoder_start_token_id 50257 -> 50258" in caplog.text
    texts = wh.transcribe_batch(model, processor, [torch.zeros(16000)], DecodeOptions(max_new_tokens=3))
    assert texts[0].tokens <= 3


def test_ambiguous_end_ids_are_refused(tiny_whisper_dir, tmp_path):
    folder = broken_copy(tiny_whisper_dir, tmp_path / "m", eos_token_id=[11, 12])
    with pytest.raises(ModelError, match=r"eos_token_id=\[11, 12\], none of them the tokenizer's <\|endoftext\|>"):
        wh.load_whisper_model(folder)


def test_consistent_ids_are_left_alone(tiny_whisper_dir, caplog):
    with caplog.at_level("WARNING"):
        wh.load_whisper_model(tiny_whisper_dir)
    assert "special token ids" not in caplog.text


# ------------------------------------------------------------------ 4. normaliser pitfalls

def test_digit_sequences_score_formatting_under_whisper_en_but_not_digits():
    refs, hyps = ["five five five oh one two three", "seven"], ["555-0123", "7."]
    assert score_texts(refs, hyps, normalizer="whisper_en").summary().errors > 0  # "5550123" vs "555 123"
    digits = score_texts(refs, hyps, normalizer="whisper_en_digits").summary()
    assert digits.errors == 0 and digits.ref_words == 8


def test_normalizer_effect_warns_on_spoken_digits():
    digits = ["zero", "seven", "three", "nine", "one"]
    effect = normalizer_effect(digits, "whisper_en")
    assert effect.word_change == 0 and effect.char_change > 0.5 and effect.digits and effect.large
    assert "consider --normalizer whisper_en_digits" in effect.warning("test set fsdd")
    assert normalizer_effect(digits, "whisper_en_digits").warning("x") is None
    sentences = ["The colour of the sea.", "He said hello to the children."]
    assert normalizer_effect(sentences, "whisper_en").warning("x") is None
    assert normalizer_effect(["one two three four"], "whisper_en").word_change == 0.75


def test_score_warns_about_the_normaliser(tmp_path, capsys):
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text("".join(json.dumps({"id": f"u{k}", "ref": w, "hyp": w}) + "\n"
                            for k, w in enumerate(["zero", "seven", "three"])))
    assert main(["score", "--hyps", str(hyps), "--normalizer", "whisper_en", "--out", str(tmp_path / "o")]) == 0
    assert "consider --normalizer whisper_en_digits" in capsys.readouterr().err
    record = ScoreResult.from_dict(json.loads((tmp_path / "o" / "wer.json").read_text()))
    assert record.normalizer_effect.char_change > 0.5 and record.warnings


# ------------------------------------------------------------------ 7. quiet decoding

def test_whisper_decoding_logs_no_generation_warnings(tiny_whisper_dir, clips_manifest, tmp_path, capfd, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # the deprecation warning is logged once per process
    with caplog.at_level("INFO"):
        decode_manifest(tiny_whisper_dir, clips_manifest, tmp_path,
                        DecodeOptions(batch_size=3, max_new_tokens=3, fallback_temperatures=(0.5,), **CPU))
    text = capfd.readouterr().err + caplog.text
    # transformers' messages: "Both `max_new_tokens` (=3) and `max_length`(=448) seem to have been set",
    # "Passing `generation_config` together with generation-related arguments ... is deprecated",
    # "The attention mask is not set ..."
    for phrase in ("seem to have been set", "deprecated", "attention mask", "`generation_config`"):
        assert phrase not in text, (phrase, text[-2000:])


# ------------------------------------------------------------------ A. typed, versioned results

def test_results_refuse_another_format():
    with pytest.raises(ScoringError, match=r"format 'asr_sft.benchmark/v1'; this asr_sft reads "
                                           r"'asr_sft.benchmark/v2' only"):
        BenchmarkResults.from_dict({"format": "asr_sft.benchmark/v1"}, where="old.json")
    with pytest.raises(ScoringError, match=r"w.json: no \"format\""):
        ScoreResult.from_dict({"wer": 0.1}, where="w.json")
    assert RESULTS_FORMAT == "asr_sft.benchmark/v2" and SCORE_FORMAT == "asr_sft.score/v2"


def test_results_round_trip_and_recipes_read_them(tmp_path):
    a, b = two_systems(8, utterances=40)
    rows = [make_row(id=f"u{k}", audio_filepath=str(tmp_path / f"u{k}.wav"), duration=2.0,
                     text=" ".join(a.refs[k]), speaker=f"s{k % 8}", sampling_rate=16000) for k in range(len(a))]
    manifest = write_manifest(tmp_path / "m.jsonl", rows, check_audio=False)
    systems = []
    for name, scores in (("base", a), ("adapted", b)):
        path = tmp_path / f"{name}.txt"
        path.write_text("".join(f"u{k} {' '.join(h)}\n" for k, h in enumerate(scores.hyps)))
        systems.append(System(name, hyp_files=(("tgt", str(path)), ("src", str(path)))))
    out = tmp_path / "bench"
    results = run_benchmark(systems, {"tgt": manifest, "src": manifest}, out,
                            BenchOptions(group_by=(), resamples=200, plots=False))
    data = json.loads((out / "results.json").read_text())
    assert BenchmarkResults.from_dict(data).to_dict() == data == json.loads(json.dumps(results.to_dict()))
    assert render_markdown(BenchmarkResults.from_dict(data)) == (out / "report.md").read_text()
    done = subprocess.run([sys.executable, str(ROOT / "recipes/demo/before_after.py"), str(out / "results.json"),
                           "--target", "tgt", "--source", "src"], capture_output=True, text=True, check=True)
    assert f"| target accent (tgt) | {30 / 440:.1%} | {25 / 440:.1%} [" in done.stdout and "p=" in done.stdout
    assert "target accent: WER fell by 17%" in done.stdout and "source accent: WER changed by -17%" in done.stdout

    import importlib.util

    spec = importlib.util.spec_from_file_location("ls_report", ROOT / "recipes/librispeech/report.py")
    ls_report = importlib.util.module_from_spec(spec)
    sys.modules["ls_report"] = ls_report  # its dataclasses look their module up there
    spec.loader.exec_module(ls_report)
    hyps = tmp_path / "h.jsonl"
    hyps.write_text("".join(json.dumps({"id": f"u{k}", "ref": " ".join(a.refs[k]), "hyp": " ".join(h)}) + "\n"
                            for k, h in enumerate(a.hyps)))
    assert main(["score", "--hyps", str(hyps), "--normalizer", "none", "--out", str(tmp_path / "s")]) == 0
    summary = ls_report.read_wer(tmp_path / "s" / "wer.json")
    assert summary.errors == 30 and summary.ref_words == 440
    (tmp_path / "old.json").write_text(json.dumps({"wer": 0.1}))
    with pytest.raises(SystemExit, match="no \"format\""):
        ls_report.read_wer(tmp_path / "old.json")


# ------------------------------------------------------------------ 8. short clips: variable-length windows

def test_decode_can_use_variable_length_windows(tiny_whisper_dir):
    """A 0.5 s clip need not be padded to 30 s: decode and bench can ask for the encoder's
    variable-length windows (a DecodeOptions flag; default: as the checkpoint was trained)."""
    from asr_sft.cli import build_parser
    from asr_sft.cli.common import decode_options

    short, _ = load_model(tiny_whisper_dir, DecodeOptions(variable_length=True, **CPU))
    default, _ = load_model(tiny_whisper_dir, DecodeOptions(**CPU))
    waves = [torch.zeros(8000)]
    assert wh.input_features(short, waves).shape[-1] == 50 and wh.input_features(default, waves).shape[-1] == 3000
    model, processor = short, load_model(tiny_whisper_dir, DecodeOptions(variable_length=True, **CPU))[1]
    assert len(transcribe_batch(model, processor, waves, DecodeOptions(max_new_tokens=2, fallback=False))) == 1
    for flag, expected in (("--variable-length", True), ("--no-variable-length", False), (None, None)):
        argv = ["decode", "--model", "m", "--manifest", "x.jsonl", "--out", "o"] + ([flag] if flag else [])
        args = build_parser().parse_args(argv)
        assert decode_options(args, warmup=False).variable_length is expected
        assert decode_options(args, warmup=False).fallback is True
