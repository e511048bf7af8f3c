"""GPU benchmark of the pipeline in one command: environment, (a) wav2vec2-base CTC training,
(b) whisper-small training, (c) decoding RTFx vs transformers' pipeline, (d) log-mel features.

    PYTHONPATH=. python bench/gpu.py --out bench/results/gpu     # CUDA machine: < 8 min on one H200
    PYTHONPATH=. python bench/gpu.py --smoke                     # CPU, tiny shapes, < 1 min: proves it runs

Writes OUT/gpu.json (every figure, the plan, errors with tracebacks) and OUT/gpu.md (tables),
after every part, so a run cut short still leaves what it measured; the Markdown is printed last.
Each part has a time cap (checked between steps) and the whole stays under ~7 minutes of parts;
a part that fails is recorded with its error and the rest still run. Inputs are generated (no
audio files, no hub); models are randomly initialised at their real shapes. Needs only torch,
torchaudio, transformers, accelerate and numpy (not soundfile, librosa, jiwer or rapidfuzz).
See bench/gpu_bench/*.py for what each part measures and how.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
for path in (BENCH, BENCH.parent):  # gpu_bench, and asr_sft when PYTHONPATH does not name the repo
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
import transformers  # noqa: E402

from gpu_bench import decode, env, features, report, train  # noqa: E402
from gpu_bench.common import make_plan, run_part  # noqa: E402

PARTS = {
    "wav2vec2_train": train.wav2vec2_part,
    "whisper_train": train.whisper_part,
    "decode": decode.decode_part,
    "features": features.features_part,
}
MIN_PART_SECONDS = 5.0  # a part with less than this left of the whole run's budget is skipped


def run(plan, out_dir: Path, parts: list[str], command: str) -> dict:
    started = time.perf_counter()
    record = {"schema": report.SCHEMA, "mode": "smoke" if plan.smoke else "gpu", "command": command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "plan": asdict(plan), "parts": {}}
    deadline = time.monotonic() + sum(plan.caps.values())

    def step(name, fn):
        left = deadline - time.monotonic()
        print(f"[gpu-bench] {name} (cap {min(plan.caps[name], left):.0f} s) ...", flush=True)
        if left < MIN_PART_SECONDS:
            part = {"status": "skipped", "cap_seconds": 0.0, "seconds": 0.0,
                    "error": f"skipped: the run's time budget is spent ({left:.0f} s left)"}
        else:
            part = run_part(name, fn, min(plan.caps[name], left))
        record["parts"][name] = part
        print(f"[gpu-bench] {name}: {part['status']} in {part['seconds']:.1f} s"
              + (f" ({part['error']})" if part["status"] != "ok" else ""), flush=True)
        record["wall_seconds"] = time.perf_counter() - started
        report.write(record, out_dir)
        return part

    fingerprint = step("environment", lambda budget: env.fingerprint(plan.device, plan.matmul_size))
    environment = fingerprint.get("results", {})
    for name in parts:
        step(name, lambda budget, fn=PARTS[name]: fn(plan, environment, budget))
    if plan.device == "cuda":
        record["nvidia_smi_end"] = env.nvidia_smi()
    record["wall_seconds"] = time.perf_counter() - started
    record["targets"] = report.targets(record)
    report.write(record, out_dir)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (a check, not speeds)")
    parser.add_argument("--out", type=Path, help="folder for gpu.json and gpu.md "
                        "(default bench/results/gpu, or bench/results/gpu-smoke with --smoke)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU machine, or pass --smoke for the CPU check")
    out_dir = args.out or BENCH / "results" / ("gpu-smoke" if args.smoke else "gpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    transformers.utils.logging.set_verbosity_error()  # generation-config notices would bury the output
    transformers.utils.logging.disable_progress_bar()
    command = shlex.join(["python", "bench/gpu.py", *sys.argv[1:]])
    record = run(make_plan(args.smoke), out_dir, parts, command)
    print(report.markdown(report.clean(record)), flush=True)
    print(f"[gpu-bench] wrote {out_dir / 'gpu.json'} and {out_dir / 'gpu.md'} "
          f"({record['wall_seconds']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
