"""The CPU benchmark scripts under bench/ still run against the current library (a tiny setting of
each: the figures are not checked, only that every setup ran and printed its comparison)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1",
                                                      "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_bench_train_runs_both_setups():
    out = run_bench("bench_train.py", "--device", "cpu", "--size", "tiny", "--minutes", "0.5", "--steps", "2",
                    "--warmup", "0", "--max-batch-seconds", "20")
    lines = out.splitlines()
    assert any(x.startswith("ours ") for x in lines) and any(x.startswith("naive ") for x in lines)
    assert "throughput ours / naive:" in out
