"""After `make setup`: import what the pipeline needs once, and name the package that is broken.

Exit status 0 when everything imports; otherwise one line per broken package and status 1. A
torchaudio built against another torch fails here (undefined symbol in libtorchaudio.so), not in
the middle of a test run.
"""

import importlib
import sys

# (module, what it is for); imported in this order, since torchaudio needs torch.
REQUIRED = [
    ("torch", "tensors and training"),
    ("torchaudio", "audio features (ABI-coupled to torch: pinned together in pyproject.toml)"),
    ("transformers", "models"),
    ("accelerate", "devices, precision, DDP"),
    ("peft", "LoRA adapters"),
    ("soundfile", "audio files"),
    ("librosa", "resampling"),
    ("jiwer", "WER cross-checks"),
    ("asr_sft.cli", "the asr-sft command line"),
]
OPTIONAL = [("ctranslate2", "CTranslate2 export and the faster-whisper yardstick (extra: whisper)"),
            ("faster_whisper", "the faster-whisper yardstick (extra: whisper)")]


def check(modules) -> list[str]:
    broken = []
    for name, purpose in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # an ImportError, or an OSError from a broken shared library
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            broken.append(f"{name} ({purpose}) does not import: {type(err).__name__}: {first[:300]}")
    return broken


def main() -> int:
    broken = check(REQUIRED)
    for line in broken:
        print(f"make setup: {line}", file=sys.stderr)
    for line in check(OPTIONAL):
        print(f"make setup: note: {line}", file=sys.stderr)
    if broken:
        print("make setup: reinstall with the lock file: make setup (or pip install -c constraints.txt "
              "-e '.[dev,whisper]')", file=sys.stderr)
        return 1
    import torch
    import torchaudio
    import transformers

    print(f"install ok: torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
          f"transformers {transformers.__version__}, python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
