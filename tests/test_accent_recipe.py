"""Per-accent adaptation: adapter routing at decode time (each group's utterances through its own
LoRA adapter, the others through a fallback or the base, recorded per row), the pseudo-label
filter, and a tiny end-to-end run of recipes/accent_adaptation/run.sh --smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asr_sft.cli import main
from asr_sft.data.audio import audio_info
from asr_sft.data.manifest import make_row, read_manifest, write_manifest
from asr_sft.errors import ModelError, OptionError
from asr_sft.evaluation import pseudo_label as pl
from asr_sft.evaluation.decode import DecodeOptions, decode_manifest
from asr_sft.evaluation.routing import RoutingOptions, decode_routed
from asr_sft.evaluation.scoring import score_texts
from asr_sft.models import lora, whisper as wh
from asr_sft.models.options import Transcript
from asr_sft.training.config import load_config

from _fixtures_models import WHISPER_TOKENIZER
from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
CONTEXT = 16  # decoder positions of the test models: an untrained model's runaway output stops early
# One utterance per batch: a row's hypothesis is then the same whichever rows it is decoded with, so a
# routed decode can be compared exactly with each model's decode of the whole manifest.
DECODE = DecodeOptions(device="cpu", progress=False, max_new_tokens=8, batch_size=1, fallback=False)
# (FSDD file, accent): two utterances per routed group, two of a group without an adapter, one with none
CLIPS = [("0_jackson_0", "a"), ("1_theo_0", "a"), ("2_lucas_0", "b"), ("3_yweweler_0", "b"),
         ("4_george_0", "c"), ("5_nicolas_0", "c"), ("6_jackson_1", None)]
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a loaded 2-core machine the threads'
    hand-offs cost several times the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_whisper(out: Path, seed: int, context: int = CONTEXT) -> Path:
    """A tiny random Whisper with a short decoder context that takes short encoder windows (the
    choice saved in its config, as training with model.variable_length saves it): a 0.5-s digit costs
    25 encoder frames, not 1,500, which keeps these tests fast."""
    folder = wh.init_whisper_model(out, "tiny", tokenizer_dir=WHISPER_TOKENIZER, seed=seed,
                                   max_target_positions=context)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, wh.VARIABLE_LENGTH: True}, indent=2))
    return folder


def _adapter(base: Path, out: Path, seed: int) -> Path:
    """A rank-4 LoRA adapter on `base` with random (not zero) updates, saved as training saves one."""
    options = load_config(None, ["model.type=whisper", f"model.name_or_path={base}", "model.lora_rank=4",
                                 "model.variable_length=true"]).model
    model, processor = wh.load(options, [])
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # LoRA B starts at zero: an update of nothing
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    lora.save_trained(model, out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("accent_models")
    base, other = _tiny_whisper(root / "base", 0), _tiny_whisper(root / "other", 1)
    return {"base": base, "other": other, "a": _adapter(base, root / "adapter_a", 1),
            "b": _adapter(base, root / "adapter_b", 2), "pooled": _adapter(base, root / "adapter_pooled", 3),
            "on_other": _adapter(other, root / "adapter_on_other", 4)}


def _rows(clips=CLIPS) -> list[dict]:
    rows = []
    for name, accent in clips:
        path = SHARED_DATA / "fsdd" / "recordings" / f"{name}.wav"
        info = audio_info(path)
        rows.append(make_row(id=name, audio_filepath=str(path), duration=info.duration,
                             text=DIGITS[int(name[0])], speaker=name.split("_")[1], accent=accent, corpus="fsdd",
                             split="test", sampling_rate=info.sample_rate))
    return rows


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, shared_data):
    return write_manifest(tmp_path_factory.mktemp("accent_manifest") / "mixed.jsonl", _rows())


def _hyps(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def alone(models, manifest, tmp_path_factory) -> dict[str, dict[str, str]]:
    """Each model's hypotheses of every row, decoded without routing: {model: {id: hyp}}."""
    out = tmp_path_factory.mktemp("alone")
    return {name: {h["id"]: h["hyp"] for h in _hyps(decode_manifest(models[name], manifest, out / name, DECODE))}
            for name in ("a", "b", "pooled", "base")}


# --- routing --------------------------------------------------------------------------------------
def test_each_group_decodes_with_its_adapter_and_others_fall_back(models, manifest, alone, tmp_path):
    rows = read_manifest(manifest)
    # The models really differ: on the same audio each says something else, so the hypotheses below
    # tell which one decoded each utterance.
    assert len({tuple(h.values()) for h in alone.values()}) == 4
    out = decode_routed(manifest, tmp_path / "routed",
                        RoutingOptions(adapters=(("a", str(models["a"])), ("b", str(models["b"]))),
                                       fallback=str(models["pooled"])), DECODE)
    routed = _hyps(out)
    assert [r["id"] for r in routed] == [r["id"] for r in rows]  # manifest order, every row
    expected = {"a": "a", "b": "b", "c": "pooled", None: "pooled"}  # group c and no group: the fallback
    for row, h in zip(rows, routed):
        model = expected[row["accent"]]
        assert h["hyp"] == alone[model][row["id"]]
        assert h["route"] == ("fallback" if model == "pooled" else model) and h["route_model"] == str(models[model])
    summary = json.loads((tmp_path / "routed" / "decode.json").read_text())
    assert {k: v["utterances"] for k, v in summary["routes"].items()} == {"a": 2, "b": 2, "fallback": 3}
    assert summary["routing"]["groups_without_adapter"] == ["c", "unknown"]
    assert summary["utterances"] == len(rows) and not summary["errors"]


def test_without_a_fallback_other_groups_get_the_base(models, manifest, alone, tmp_path):
    rows = read_manifest(manifest)
    routed = _hyps(decode_routed(manifest, tmp_path / "routed",
                                 RoutingOptions(adapters=(("a", str(models["a"])),)), DECODE))
    assert [h["route"] for h in routed] == ["a" if r["accent"] == "a" else "base" for r in rows]
    assert [h["hyp"] for h in routed] == [alone["a" if r["accent"] == "a" else "base"][r["id"]] for r in rows]
    # The base is the one the adapter names (an absolute folder here).
    assert {h["route_model"] for h in routed if h["route"] == "base"} == {str(models["base"].resolve())}


def test_cli_routes_and_records_the_adapter_per_utterance(models, manifest, alone, tmp_path, capsys):
    out = tmp_path / "cli"
    flags = ["--device", "cpu", "--max-new-tokens", "8", "--no-fallback", "--batch-size", "1"]
    assert main(["decode", "--adapters", f"a={models['a']},b={models['b']}", "--route-by", "accent",
                 "--manifest", str(manifest), "--out", str(out), *flags]) == 0
    printed = capsys.readouterr().out
    assert "a 2" in printed and "b 2" in printed and "base 3" in printed and "c, unknown" in printed
    assert [h["route"] for h in _hyps(out / "hyps.jsonl")] == ["a", "a", "b", "b", "base", "base", "base"]
    # --accent X: every utterance through one group's adapter
    assert main(["decode", "--adapters", f"a={models['a']},b={models['b']}", "--accent", "b", "--manifest",
                 str(manifest), "--out", str(tmp_path / "forced"), *flags]) == 0
    forced = _hyps(tmp_path / "forced" / "hyps.jsonl")
    assert {h["route"] for h in forced} == {"b"} and {h["id"]: h["hyp"] for h in forced} == alone["b"]


def test_routing_errors_are_clear(models, manifest, tmp_path, capsys):
    def routed(**kw):
        return decode_routed(manifest, tmp_path / "err", RoutingOptions(**kw), DECODE)

    with pytest.raises(ModelError, match="different base"):  # rows of group c need the base: which one?
        routed(adapters=(("a", str(models["a"])), ("b", str(models["on_other"]))))
    with pytest.raises(ModelError, match="a: a whole model, no base"):
        routed(adapters=(("a", str(models["base"])),))
    with pytest.raises(ModelError, match="is not a folder"):
        routed(adapters=(("a", str(tmp_path / "missing")),))
    with pytest.raises(OptionError, match="group 'z' has no adapter"):
        RoutingOptions(adapters=(("a", "x"),), group="z")
    with pytest.raises(OptionError, match="two adapters"):
        RoutingOptions(adapters=(("a", "x"), ("a", "y")))
    # A whole model per group works with a fallback (a full fine-tune per group, routed).
    hyps = _hyps(routed(adapters=(("a", str(models["base"])),), fallback=str(models["pooled"])))
    assert [h["route"] for h in hyps][:2] == ["a", "a"]
    assert main(["decode", "--model", str(models["base"]), "--fallback", str(models["a"]), "--manifest",
                 str(manifest), "--out", str(tmp_path / "x")]) == 2
    assert "give --adapters" in capsys.readouterr().err


# --- the pseudo-label filter ----------------------------------------------------------------------
REPEAT = " ".join(["the end of the"] * 20)
OPTIONS = pl.PseudoLabelOptions()  # -0.5 log-prob, 2.4 compression ratio, 5 words/s


@pytest.mark.parametrize("text, logprob, ratio, seconds, agreement, reasons", [
    ("the cat sat on the mat", -0.2, 1.1, 2.0, None, ()),
    ("the cat sat on the mat", -0.2, 1.1, 2.0, 0.9, ()),
    ("the cat sat on the mat", -0.9, 1.1, 2.0, None, ("low_logprob",)),
    ("", -0.1, 0.0, 2.0, None, ("empty",)),
    ("Uh, um. [music]", -0.1, 1.0, 2.0, None, ("empty",)),  # no words once normalised
    (REPEAT, -0.1, None, 30.0, None, ("repetitive",)),  # ratio measured here when the family has none
    ("the cat sat on a mat by the red door near the sea", -0.1, 1.2, 1.0, None, ("too_fast",)),
    ("the cat sat on the mat", -0.3, 1.1, 2.0, 0.5, ("disagreement",)),
    (REPEAT, -2.0, None, 1.0, 0.0, ("low_logprob", "repetitive", "too_fast", "disagreement")),
])
def test_filter_drops_for_each_reason(text, logprob, ratio, seconds, agreement, reasons):
    c = pl.judge({"id": "u", "duration": seconds}, Transcript(text, avg_logprob=logprob, compression_ratio=ratio),
                 OPTIONS, agreement)
    assert c.reasons == reasons and c.kept == (not reasons)


def test_filter_checks_can_be_switched_off_and_need_log_probabilities():
    off = pl.PseudoLabelOptions(min_avg_logprob=None, max_compression_ratio=None, max_words_per_second=None)
    assert pl.judge({"id": "u", "duration": 1.0}, Transcript(REPEAT, avg_logprob=None), off).kept
    with pytest.raises(ModelError, match="no token log-probabilities"):  # a CTC teacher
        pl.judge({"id": "u", "duration": 1.0}, Transcript("the cat"), OPTIONS)
    for bad in (dict(min_words=0), dict(min_agreement=1.5), dict(max_compression_ratio=0.0),
                dict(normalizer="nope")):
        with pytest.raises(Exception, match="min_words|min_agreement|max_compression_ratio|nope"):
            pl.PseudoLabelOptions(**bad)


@pytest.mark.parametrize("first, second, agreement", [
    ("a b c d", "a b c d", 1.0), ("a b c d", "a x c d", 0.75), ("A, b. C d!", "a b c d", 1.0),
    ("", "", 1.0), ("", "x", 0.0), ("a", "b c d e", 0.0),
])
def test_agreement_is_one_minus_wer_clipped(first, second, agreement):
    assert pl.agreement_scores([first], [second]) == [pytest.approx(agreement)]


def test_pseudo_label_keeps_what_passes_and_reports_its_effect(models, manifest, tmp_path):
    rows = read_manifest(manifest)
    loose = pl.PseudoLabelOptions(min_avg_logprob=None, max_compression_ratio=None, max_words_per_second=None)
    report = pl.pseudo_label(str(models["a"]), manifest, tmp_path / "loose", loose, DECODE)
    candidates = _hyps(tmp_path / "loose" / pl.CANDIDATES_NAME)
    assert [c["id"] for c in candidates] == [r["id"] for r in rows]
    logprobs = sorted(c["avg_logprob"] for c in candidates)
    assert all(lp is not None and lp < 0 for lp in logprobs)  # measured although nothing is re-decoded
    threshold = logprobs[len(logprobs) // 2]
    strict = pl.PseudoLabelOptions(min_avg_logprob=threshold, max_compression_ratio=None, max_words_per_second=None)
    report = pl.pseudo_label(str(models["a"]), manifest, tmp_path / "strict", strict, DECODE)
    cands = _hyps(tmp_path / "strict" / pl.CANDIDATES_NAME)
    kept = [c for c in cands if c["kept"]]
    assert {c["id"] for c in kept} == {c["id"] for c in cands if c["avg_logprob"] >= threshold and c["words"]}
    assert report.kept == len(kept) and 0 < report.kept < report.utterances
    assert report.dropped_by["low_logprob"] == sum(1 for c in cands if c["avg_logprob"] < threshold and c["words"])
    # The teacher's WER on the kept rows is scored against the true transcripts, which training never sees.
    truth = {r["id"]: r["text"] for r in rows}
    expected = score_texts([truth[c["id"]] for c in kept], [c["hyp"] for c in kept]).summary().wer
    assert report.wer_kept == pytest.approx(expected)
    assert report.wer_all == pytest.approx(score_texts(list(truth.values()), [c["hyp"] for c in cands]).summary().wer)
    pseudo = read_manifest(tmp_path / "strict" / pl.PSEUDO_NAME)
    assert [p["text"] for p in pseudo] == [c["hyp"] for c in kept]
    assert all(p["custom"]["pseudo_label"]["teacher"] == str(models["a"]) for p in pseudo)
    assert pl.read_report(tmp_path / "strict") == report
    assert {g.name: (g.utterances, g.kept) for g in report.groups}["a"][0] == 2


def test_agreement_model_and_no_references(models, manifest, tmp_path):
    same = pl.PseudoLabelOptions(min_avg_logprob=None, max_compression_ratio=None, max_words_per_second=None,
                                 agreement_model=str(models["a"]), references=False)
    report = pl.pseudo_label(str(models["a"]), manifest, tmp_path / "same", same, DECODE)
    assert report.dropped_by["disagreement"] == 0 and report.wer_all is None and report.wer_kept is None
    cands = _hyps(tmp_path / "same" / pl.CANDIDATES_NAME)
    assert all(c["agreement"] == 1.0 and "ref" not in c for c in cands)
    other = pl.PseudoLabelOptions(min_avg_logprob=None, max_compression_ratio=None, max_words_per_second=None,
                                  agreement_model=str(models["b"]), min_agreement=0.5)
    report = pl.pseudo_label(str(models["a"]), manifest, tmp_path / "other", other, DECODE)
    cands = _hyps(tmp_path / "other" / pl.CANDIDATES_NAME)
    assert any(c["agreement"] < 1.0 for c in cands)
    assert report.dropped_by["disagreement"] == sum(1 for c in cands if c["agreement"] < 0.5)
    for c in cands:
        assert c["agreement"] == pytest.approx(pl.agreement_scores([c["hyp"]], [c["second_hyp"]])[0])


def test_pseudo_label_cli(models, manifest, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["pseudo-label", "--teacher", str(models["a"]), "--manifest", str(manifest), "--out", str(out),
                 "--min-avg-logprob", "none", "--max-compression-ratio", "none", "--max-words-per-second", "none",
                 "--device", "cpu", "--max-new-tokens", "8", "--no-fallback"]) == 0
    printed = capsys.readouterr().out
    report = pl.read_report(out)
    assert f"kept {report.kept} of 7 utterances" in printed and "teacher WER against the true transcripts" in printed


# --- the recipe, end to end -----------------------------------------------------------------------
def test_recipe_smoke_end_to_end(tmp_path, shared_data):
    """run.sh --smoke: one synthetic accent + FSDD's German speakers (2 speakers each), LoRA per group,
    pooled fine-tune, pseudo-labelling, a 5 s training cap and a 10 dB noisy general set with tiny
    random models, 2 steps each, to the report."""
    student = _tiny_whisper(tmp_path / "student", 0, context=40)  # a synthetic sentence's tokens fit
    exp = tmp_path / "exp"
    env = {**os.environ, "DATA": str(tmp_path / "data"), "EXP": str(exp), "MODEL": str(student),
           "TEACHER": str(student), "SHARED_DATA": str(shared_data), "DEVICE": "cpu", "OMP_NUM_THREADS": "1",
           "CAPS": "5s", "NOISE_SNRS": "10", "NOISE": "white",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    run = subprocess.run(["bash", "recipes/accent_adaptation/run.sh", "--smoke"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seconds = time.perf_counter() - started
    report = json.loads((exp / "report" / "report.json").read_text())
    assert set(report["strategies"]) == {"lora", "pooled", "pseudo"}
    assert set(report["baseline"]) == {"en-gb-scotland", "fsdd-deu", "general"}
    lora_entry, pooled = report["strategies"]["lora"], report["strategies"]["pooled"]
    assert lora_entry["system"] == "lora-routed" and set(lora_entry["groups"]) == {"en-gb-scotland", "fsdd-deu"}
    assert all(m["kind"] == "LoRA adapter" for m in lora_entry["models"].values())
    assert pooled["models"]["pooled"]["kind"] == "whole model"
    assert 0 < lora_entry["size_mb"] < pooled["size_mb"]  # two adapters are smaller than one model
    assert all(m["train_seconds"] is not None for e in report["strategies"].values() for m in e["models"].values())
    assert report["strategies"]["pseudo"]["models"]["fsdd-deu"]["pseudo_label"]["utterances"] == 3
    # The data-efficiency curve: the base, the 5 s cap, all of train, per group.
    assert set(report["caps"]) == {"en-gb-scotland", "fsdd-deu"}
    assert all([p["label"] for p in points][1:] == ["5s", "all"] for points in report["caps"].values())
    # Noise: the base and the pooled model on the general set, clean and at 10 dB, paired by utterance.
    assert {s: [c["testset"] for c in cells] for s, cells in report["noise"].items()} == {
        "base": ["general", "general-10dB"], "pooled": ["general", "general-10dB"]}
    assert all(c["paired"] is not None for c in report["noise"]["pooled"])
    assert "## Robustness to noise" in (exp / "report" / "report.md").read_text()
    for name in ("report.md", "wer_by_group.png", "data_efficiency.png"):
        assert (exp / "report" / name).stat().st_size > 0
    # The routed decode says which adapter decoded each utterance: its group's, or the base for the
    # general set.
    routed = _hyps(exp / "decode" / "lora" / "hyps.jsonl")
    assert {h["route"] for h in routed if h["accent"] != "general"} == {"en-gb-scotland", "fsdd-deu"}
    assert all(h["route"] == h["accent"] for h in routed if h["accent"] != "general")
    assert {h["route"] for h in routed if h["accent"] == "general"} == {"base"}
    # Speaker-disjoint groups.
    groups = json.loads((tmp_path / "data" / "groups" / "groups.json").read_text())["groups"]
    for g in groups.values():
        train = {r["speaker"] for r in read_manifest(g["train"])}
        assert train and not train & {r["speaker"] for r in read_manifest(g["test"])}
    # Idempotent: a second run finds every stage done.
    again = subprocess.run(["bash", "recipes/accent_adaptation/run.sh", "--smoke"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "=== stage" not in again.stdout and "done already" in again.stdout
    print(f"smoke recipe: {seconds:.0f} s")
