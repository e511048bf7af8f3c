"""The run's record: JSON (everything) and a Markdown summary (one table per part, errors shown)."""

from __future__ import annotations

import json
import math

from asr_sft.atomic import write_text_atomic

SCHEMA = "asr_sft.bench.gpu/1"
TITLES = {
    "environment": "Environment",
    "wav2vec2_train": "(a) wav2vec2-base CTC training (LibriSpeech recipe config, bf16, CNN frozen)",
    "whisper_train": "(b) whisper-small seq2seq training (bf16, SDPA)",
    "decode": "(c) Decoding RTFx: asr-sft vs transformers pipeline (bf16, greedy)",
    "features": "(d) Whisper log-mel features (80 bins, 30-s windows)",
}
COLUMNS = {
    "wav2vec2_train": ("setup", "steps", "utterances_per_step", "padding", "step_seconds", "audio_h_per_gpu_h",
                       "mfu", "mfu_vs_measured_matmul", "peak_memory_gib", "collate_seconds_per_step"),
    "whisper_train": ("setup", "steps", "utterances_per_step", "mean_window_s", "padding", "samples_per_s",
                      "audio_h_per_gpu_h", "mfu", "mfu_vs_measured_matmul", "peak_memory_gib",
                      "collate_seconds_per_step"),
    "decode": ("model", "setup", "utterances", "audio_seconds", "seconds", "rtfx", "speedup_vs_pipeline",
               "decoder_calls_per_batch"),
    "features": ("setup", "device", "utterances", "repeats", "ms_per_utterance", "audio_s_per_s",
                 "speedup_vs_transformers_cpu", "max_abs_diff_vs_transformers"),
}
PERCENT = {"padding", "mfu", "mfu_vs_measured_matmul"}
ENVIRONMENT_KEYS = ("gpu", "capability", "multiprocessors", "memory_gib", "torch_cuda", "cudnn",
                    "bf16_peak_tflops", "matmul_size", "matmul_bf16_tflops", "python", "cpu_count", "torch_threads")
# (part, setup, model or None, figure, target, what): the goals, from REFERENCE.md.
TARGETS = (
    ("wav2vec2_train", "buckets", None, "audio_h_per_gpu_h", 2800.0,
     "wav2vec2-base >= 2,800 audio-h/GPU-h (NVIDIA's tuned A100 fine-tune: ~825)"),
    ("whisper_train", "30 s windows", None, "samples_per_s", 250.0, "whisper-small >= 250 samples/s at 30-s windows"),
    ("decode", "asr-sft default", "whisper", "speedup_vs_pipeline", 3.0,
     "Whisper: asr-sft (default decoding) RTFx >= 3x the pipeline's"),
    ("decode", "asr-sft", "wav2vec2", "speedup_vs_pipeline", 3.0, "wav2vec2: asr-sft RTFx >= 3x the pipeline's"),
)


def clean(value):
    """JSON-safe: non-finite floats become strings ("nan", "inf"), so they stay visible but never
    pass for figures."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def targets(report: dict) -> list[dict]:
    """Each target with the measured figure; met is None in smoke runs (not speeds) or when missing."""
    out = []
    for part, setup, model, figure, target, what in TARGETS:
        rows = report["parts"].get(part, {}).get("results", {}).get("rows", [])
        row = next((r for r in rows if r.get("setup") == setup and (model is None or model in r.get("model", ""))),
                   None)
        value = row.get(figure) if row else None
        met = None if report["mode"] == "smoke" or not isinstance(value, (int, float)) else value >= target
        out.append({"target": what, "figure": figure, "threshold": target, "value": value, "met": met})
    return out


def fmt(key: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if key in PERCENT:
            return f"{100 * value:.1f}%"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value).replace("|", "/")


def table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c, row.get(c)) for c in columns) + " |")
    return lines


def markdown(report: dict) -> str:
    lines = [f"# asr_sft GPU benchmark ({report['mode']})", ""]
    if report["mode"] == "smoke":
        lines += ["**SMOKE RUN on CPU with tiny models: these figures prove the code runs; they are NOT speeds.**",
                  ""]
    lines += [f"Command: `{report['command']}`; started {report['started']}; wall {report.get('wall_seconds', 0):.1f} s.", ""]
    for name, title in TITLES.items():
        part = report["parts"].get(name)
        lines += [f"## {title}", ""]
        if part is None:
            lines += ["not run", ""]
            continue
        lines.append(f"status: **{part['status']}** in {part.get('seconds', 0):.1f} s (cap {part['cap_seconds']:g} s)")
        if part["status"] != "ok":
            lines += ["", f"error: `{part.get('error', '')}`", ""]
            continue
        results = part["results"]
        lines.append("")
        if name == "environment":
            lines += table(("key", "value"), [{"key": k, "value": results.get(k)} for k in ENVIRONMENT_KEYS])
            smi = results.get("nvidia_smi")
            if smi is not None:
                lines += ["", f"nvidia-smi: {smi}"]
            lines += ["", f"packages: {results.get('packages')}"]
        else:
            lines += table(COLUMNS[name], results["rows"])
            for row in results["rows"]:
                if "error" in row:
                    lines += ["", f"{row.get('model', '')} {row['setup']} error: `{row['error']}`"]
            if "durations" in results:
                d = results["durations"]
                lines += ["", f"durations: {d['utterances']} utterances, mean {d['mean_s']:.2f} s, "
                              f"max {d['max_s']:.2f} s; config: {results.get('config')}"]
        lines.append("")
    lines += ["## Targets", ""]
    lines += table(("target", "value", "met"), [{"target": t["target"], "value": t["value"], "met": t["met"]}
                                                for t in report.get("targets", [])])
    return "\n".join(lines) + "\n"


def write(report: dict, out_dir) -> None:
    report = clean(report)
    write_text_atomic(out_dir / "gpu.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out_dir / "gpu.md", markdown(report))
