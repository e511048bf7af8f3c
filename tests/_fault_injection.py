"""Kill a training run at a chosen point, in a subprocess, so a test can check what survives.

    proc = run_training(overrides, fault="between-pointers@4")   # SIGKILLed there: rc -9
    proc = start_training(overrides); wait_for_step(out, 2); proc.send_signal(SIGTERM)

`fault` sets ASR_SFT_FAULT=<point>[@<step>], a test-only hook in asr_sft.training.checkpoint that
makes the process SIGKILL itself at that point of a checkpoint save (points:
checkpoint.FAULT_POINTS): as a power cut, an OOM kill or a pre-empted job would, with no chance to
clean up. `fake_wer` replaces the dev evaluation by the given WERs, one per evaluation in order, so
a test can decide which checkpoint is the best.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in the child: optionally fake the dev WERs, then train from the overrides given as argv.
_CHILD = """
import json, os, sys
from asr_sft.training import loop
from asr_sft.training.config import load_config

wers = json.loads(os.environ.get("FAKE_WER") or "null")
if wers is not None:
    def evaluate(model, processor, rows, config):
        wer = wers.pop(0)
        return {"dev_wer": wer, "dev_cer": wer, "dev_utterances": len(rows), "normalizer": "fake"}
    loop.evaluate = evaluate
result = loop.train(load_config(None, sys.argv[1:]))
print(json.dumps({"steps": result.steps, "stopped_by": result.stopped_by}))
sys.exit(128 + result.stopped_by if result.stopped_by else 0)
"""


def _env(fault: str | None, fake_wer: list[float] | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env.pop("ASR_SFT_FAULT", None)
    if fault:
        env["ASR_SFT_FAULT"] = fault
    if fake_wer is not None:
        env["FAKE_WER"] = json.dumps(fake_wer)
    return env


def start_training(overrides: list[str], fault: str | None = None,
                   fake_wer: list[float] | None = None) -> subprocess.Popen:
    """A training subprocess (asr_sft.training.loop.train of these overrides), stdout/stderr piped."""
    return subprocess.Popen([sys.executable, "-c", _CHILD, *overrides], env=_env(fault, fake_wer),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_training(overrides: list[str], fault: str | None = None, fake_wer: list[float] | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a training subprocess to its end (or its fault) and return what it did."""
    proc = start_training(overrides, fault, fake_wer)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    """The run died by SIGKILL (the fault fired), not by an error of its own."""
    assert proc.returncode == -signal.SIGKILL, f"rc {proc.returncode}\n{proc.stderr[-3000:]}"


def wait_for_step(output_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until train_log.jsonl records `step` (the run is past it), or fail."""
    log = Path(output_dir) / "train_log.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before step {step}:\n"
                                 f"{proc.stderr.read()[-3000:]}")
        if log.is_file():
            steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.strip()]
            if steps and max(steps) >= step:
                return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {log} after {timeout} s")
