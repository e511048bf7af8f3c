"""bench/gpu.py: the GPU benchmark proves itself on CPU.

The smoke run (tiny shapes, CPU) runs once, in a subprocess that cannot import the packages the GPU
machine lacks (soundfile, librosa, jiwer, rapidfuzz, ...), from the repository root with
PYTHONPATH=. as the GPU machine runs it; its JSON and Markdown are then checked part by part.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from gpu_bench import env, models  # noqa: E402
from gpu_bench.common import Budget, librispeech_durations, make_plan, run_part  # noqa: E402

# Import names of packages the GPU machine does not have (KINDS.md's list against this venv's).
BLOCKED = ("soundfile", "librosa", "jiwer", "rapidfuzz", "ctranslate2", "faster_whisper", "av", "soxr",
           "audioread", "pooch", "pydantic")
BLOCKER = ("import runpy, sys\n"
           f"for name in {BLOCKED!r}:\n"
           "    sys.modules[name] = None  # 'import name' now raises ImportError\n"
           "sys.argv = ['bench/gpu.py', *sys.argv[1:]]\n"
           "runpy.run_path('bench/gpu.py', run_name='__main__')\n")
PARTS = ("environment", "wav2vec2_train", "whisper_train", "decode", "features")
KEY_FIGURES = {  # per part: figures every row must have, positive and finite
    "wav2vec2_train": ("audio_h_per_gpu_h", "step_seconds", "samples_per_s", "mfu_vs_measured_matmul"),
    "whisper_train": ("audio_h_per_gpu_h", "samples_per_s", "step_seconds"),
    "decode": ("rtfx", "seconds", "audio_seconds"),
    "features": ("audio_s_per_s", "ms_per_utterance"),
}


def blocked_python(*args, timeout: float) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-smoke")
    proc = blocked_python("--smoke", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text(), proc.stdout


def numbers(value):
    """Every number inside a JSON value (bools excluded)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_blocker_blocks():
    proc = subprocess.run([sys.executable, "-c", BLOCKER.split("sys.argv")[0] + "import soundfile\n"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "import of soundfile halted" in proc.stderr


def test_smoke_runs_every_part_without_the_missing_packages(smoke):
    record, _, stdout = smoke
    assert record["schema"] == "asr_sft.bench.gpu/1" and record["mode"] == "smoke"
    assert list(record["parts"]) == list(PARTS)
    for name, part in record["parts"].items():
        assert part["status"] == "ok", f"{name}: {part.get('error')}\n{part.get('traceback', '')}"
        assert part["seconds"] > 0
    environment = record["parts"]["environment"]["results"]
    assert not any(environment["absent_packages_importable"].values()), environment["absent_packages_importable"]
    assert environment["matmul_bf16_tflops"] > 0
    assert record["wall_seconds"] < 120  # aim: < 40 s on 2 idle cores
    assert "[gpu-bench] wrote" in stdout


@pytest.mark.parametrize("part", list(KEY_FIGURES))
def test_smoke_figures_are_positive_and_finite(smoke, part):
    record, _, _ = smoke
    rows = record["parts"][part]["results"]["rows"]
    assert rows
    for row in rows:
        assert "error" not in row, f"{part} {row['setup']}: {row['error']}\n{row.get('traceback', '')}"
        for figure in KEY_FIGURES[part]:
            assert isinstance(row[figure], (int, float)) and math.isfinite(row[figure]) and row[figure] > 0, \
                (part, row["setup"], figure, row[figure])
        assert all(math.isfinite(v) for v in numbers(row)), row  # "nan"/"inf" would be strings


def test_smoke_measures_what_it_says(smoke):
    record, _, _ = smoke
    plan = record["plan"]
    parts = {name: part["results"] for name, part in record["parts"].items()}
    buckets, random = parts["wav2vec2_train"]["rows"]
    assert (buckets["setup"], random["setup"]) == ("buckets", "random")
    assert buckets["padding"] < 0.1 < random["padding"]  # DurationBatchSampler vs random batches
    assert buckets["steps"] == random["steps"] == plan["train_steps"]
    fixed, variable = parts["whisper_train"]["rows"]
    assert fixed["mean_window_s"] == 30 and variable["mean_window_s"] < 10  # the variable_length option
    assert variable["padding"] < fixed["padding"]
    assert "mfu" in fixed and "mfu" not in variable  # the FLOP count is for 30-s windows only
    decode = {(r["model"].split("-")[0], r["setup"]): r for r in parts["decode"]["rows"]}
    tokens = plan["decode_tokens"]
    # Every decoder generates exactly the forced number of tokens (one decoder call each); our
    # default's fallback check adds no decoder pass (greedy log-probabilities come from the search).
    for setup, calls in (("asr-sft greedy", tokens), ("asr-sft default", tokens), ("pipeline", tokens)):
        assert decode["whisper", setup]["decoder_calls_per_batch"] == calls, setup
        assert decode["whisper", setup]["utterances"] >= plan["decode_batch"]  # at least one timed batch
    for model, setup in (("whisper", "asr-sft greedy"), ("whisper", "asr-sft default"), ("wav2vec2", "asr-sft")):
        assert decode[model, setup]["speedup_vs_pipeline"] == pytest.approx(
            decode[model, setup]["rtfx"] / decode[model, "pipeline"]["rtfx"])
    features = {r["setup"]: r for r in parts["features"]["rows"]}
    assert features["asr-sft cpu"]["max_abs_diff_vs_transformers"] < 1e-3  # same log-mel as transformers
    assert all(t["met"] is None for t in record["targets"])  # smoke figures are not speeds


def test_smoke_markdown_has_every_table(smoke):
    record, markdown, _ = smoke
    assert "SMOKE RUN on CPU" in markdown and "NOT speeds" in markdown
    for title in ("## Environment", "## (a) wav2vec2-base", "## (b) whisper-small", "## (c) Decoding",
                  "## (d) Whisper log-mel", "## Targets"):
        assert title in markdown
    assert markdown.count("status: **ok**") == len(PARTS)
    for part in KEY_FIGURES:
        for row in record["parts"][part]["results"]["rows"]:
            assert f"| {row['setup']} |" in markdown or f"| {row['model']} | {row['setup']} |" in markdown


def load_entry_point():
    spec = importlib.util.spec_from_file_location("gpu_bench_main", REPO / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failing_part_is_recorded_and_the_rest_run(tmp_path, monkeypatch):
    gpu = load_entry_point()

    def broken(plan, environment, budget):
        raise RuntimeError("CUDA out of memory (planted)")

    def fine(plan, environment, budget):
        return {"rows": [{"setup": "ours", "device": "cpu", "audio_s_per_s": 123.0}]}

    monkeypatch.setattr(gpu, "PARTS", {"decode": broken, "features": fine})
    record = gpu.run(make_plan(smoke=True), tmp_path, ["decode", "features"], "test")
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["parts"]["decode"]["status"] == "error"
    assert "CUDA out of memory (planted)" in saved["parts"]["decode"]["error"]
    assert "broken" in saved["parts"]["decode"]["traceback"]
    assert saved["parts"]["features"]["status"] == "ok" == record["parts"]["features"]["status"]
    markdown = (tmp_path / "gpu.md").read_text()
    assert "status: **error**" in markdown and "CUDA out of memory (planted)" in markdown
    assert "| ours | cpu |" in markdown


def test_gpu_plan_fits_the_window():
    plan = make_plan(smoke=False)
    assert sum(plan.caps.values()) <= 7 * 60  # parts' caps; start-up and imports come on top of 8 min
    assert set(plan.caps) == set(PARTS) and plan.device == "cuda" and plan.wav2vec2_size == "base"


def test_run_part_checks_its_cap():
    def until_cap(budget: Budget) -> dict:
        steps = 0
        while not budget.expired():
            steps += 1
        return {"steps": steps}

    record = run_part("loop", until_cap, cap_seconds=0.2)
    assert record["status"] == "ok" and record["results"]["steps"] > 0
    assert 0.2 <= record["seconds"] < 5.0  # stops at the cap (gc after it is slow on a loaded VM)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
    ("NVIDIA L40", None), ("Tesla T4", None), (None, None),
])
def test_peak_by_gpu_name(name, peak):
    assert env.peak_tflops(name) == peak


def test_durations_follow_librispeech_train_clean_100():
    from asr_sft.data.batching import BatchingOptions, DurationBatchSampler, batch_stats, pack_batches

    rng = np.random.default_rng(0)
    durations = librispeech_durations(28539, rng)
    assert 12.4 < durations.mean() < 13.0 and durations.min() >= 1.3 and 20 < durations.max() <= 24.5
    # The recipe's 400-s batches: REFERENCE.md says random ~29% padding, 30 buckets ~2%.
    buckets = DurationBatchSampler(durations, BatchingOptions(max_batch_seconds=400, max_batch_size=128)).batches()
    random = pack_batches(rng.permutation(len(durations)), durations, 400, 128)
    assert batch_stats(buckets, durations)["padding_fraction"] < 0.04
    assert 0.25 < batch_stats(random, durations)["padding_fraction"] < 0.35


def test_synthetic_tokenizer_has_the_real_id_layout():
    from transformers import WhisperTokenizer

    ours = models.synthetic_whisper_tokenizer()
    real = WhisperTokenizer.from_pretrained(str(SHARED_DATA / "whisper-assets" / "hf-tokenizer"))
    assert len(ours) == len(real) == models.VOCAB_SIZE
    for token in real.all_special_tokens:
        assert ours.convert_tokens_to_ids(token) == real.convert_tokens_to_ids(token), token
    for tokenizer in (ours, real):
        tokenizer.set_prefix_tokens(language="en", task="transcribe", predict_timestamps=False)
    assert ours.prefix_tokens == real.prefix_tokens
