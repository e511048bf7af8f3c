"""Environment fingerprint: the GPU (name, driver, memory, clocks), software versions, the bf16
dense peak looked up by GPU name, and a measured bf16 matrix-product rate (the ceiling MFU is also
given against)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys

import torch

# Datasheet dense bf16 tensor-core peaks (no sparsity), TFLOP/s, matched in order against the
# upper-cased GPU name (torch.cuda.get_device_name: "NVIDIA H100 80GB HBM3" is the SXM part).
BF16_DENSE_PEAK_TFLOPS = (
    (r"H200 NVL", 835.0),
    (r"H200", 989.0),  # SXM; the same chip and rates as the H100 SXM, more memory
    (r"H100 NVL", 835.0),
    (r"H100 PCIE", 756.0),
    (r"H100", 989.0),  # SXM
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
)
PACKAGES = ("torch", "torchaudio", "transformers", "accelerate", "peft", "tokenizers", "numpy",
            "sentencepiece", "safetensors", "tqdm")
# Packages the GPU machine lacks: the benchmark must not need them (a test runs it with them blocked).
ABSENT_THERE = ("soundfile", "librosa", "jiwer", "rapidfuzz", "ctranslate2", "faster_whisper")
NVIDIA_SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.max.sm", "clocks.mem",
                     "clocks.max.mem", "power.draw", "power.limit", "temperature.gpu", "memory.total")


def peak_tflops(gpu_name: str | None) -> float | None:
    """Dense bf16 datasheet peak of a GPU by name; None for one not in the table."""
    name = (gpu_name or "").upper()
    for pattern, tflops in BF16_DENSE_PEAK_TFLOPS:
        if re.search(pattern, name):
            return tflops
    return None


def nvidia_smi() -> dict | str:
    """Clocks, power and driver as nvidia-smi reports them, or why they could not be read."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi not readable: {err}"
    if out.returncode != 0:
        return f"nvidia-smi exit {out.returncode}: {out.stderr.strip()[:300]}"
    values = [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(NVIDIA_SMI_FIELDS, values))


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def matmul_tflops(device: str, n: int, repeats: int = 10) -> float:
    """Measured bf16 n x n x n matrix-product rate on random data (3 warm-ups, mean of `repeats`)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    if device == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            a @ b
        stop.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(stop) / 1000
    else:
        import time

        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = time.perf_counter() - t0
    return 2 * n**3 * repeats / seconds / 1e12


def fingerprint(device: str, matmul_size: int) -> dict:
    info = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "packages": versions(),
        "absent_packages_importable": {name: importable(name) for name in ABSENT_THERE},
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "device": device,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count, memory_gib=props.total_memory / 2**30,
                    nvidia_smi=nvidia_smi())
    else:
        info.update(gpu=None, cpu=platform.processor() or platform.machine())
    info["bf16_peak_tflops"] = peak_tflops(info["gpu"])
    info["bf16_peak_source"] = ("datasheet dense bf16 by GPU name" if info["bf16_peak_tflops"]
                                else "GPU not in the peak table: MFU only against the measured matmul rate")
    info["matmul_size"] = matmul_size
    info["matmul_bf16_tflops"] = matmul_tflops(device, matmul_size)
    return info


def mfu(flop_per_second: float, env: dict) -> dict:
    """Model-FLOP utilisation against the datasheet peak (None when unknown) and the measured matmul."""
    peak = env.get("bf16_peak_tflops")
    measured = env.get("matmul_bf16_tflops")
    return {"mfu": flop_per_second / (peak * 1e12) if peak else None,
            "mfu_vs_measured_matmul": flop_per_second / (measured * 1e12) if measured else None}
