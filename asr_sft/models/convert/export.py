"""Hugging Face Whisper folder -> CTranslate2 folder that faster-whisper serves.

The weights go through ctranslate2's own `TransformersConverter` (the format's one serializer);
this module adds what faster-whisper reads beside model.bin: `tokenizer.json` (its tokenizer) and
`preprocessor_config.json` (its mel front end: n_mels, hop, chunk length).
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import WhisperFeatureExtractor

from asr_sft.atomic import staged_dir
from asr_sft.errors import ModelError

log = logging.getLogger(__name__)

# ctranslate2's weight types (ctranslate2.specs.model_spec.ACCEPTED_MODEL_TYPES); None keeps the
# dtype the folder stores.
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
                 "bfloat16", "float32")
INSTALL_HINT = "pip install -e '.[whisper]' (or make setup)"
PREPROCESSOR_CONFIG = "preprocessor_config.json"  # the name faster-whisper looks for


def export_ct2(hf_model_dir: str | Path, out_dir: str | Path, *, quantization: str | None = None,
               overwrite: bool = False) -> Path:
    """Convert the Whisper folder `hf_model_dir` (save_pretrained output with its processor) into
    a CTranslate2 folder `out_dir` that `faster_whisper.WhisperModel(out_dir)` loads.

    quantization: one of QUANTIZATIONS, or None for the stored dtype. A local folder is read
    with from_pretrained, which touches no network. The write is staged: a failed export leaves
    nothing under out_dir's name.
    """
    hf_model_dir = Path(hf_model_dir)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    for name in ("config.json", "tokenizer.json"):
        if not (hf_model_dir / name).is_file():
            raise ModelError(f"{hf_model_dir}: not a Hugging Face Whisper folder with a fast tokenizer "
                             f"({name} is missing)")
    converters = _ctranslate2_converters()
    try:  # the feature extractor alone: transformers 5 keeps it inside processor_config.json
        features = WhisperFeatureExtractor.from_pretrained(str(hf_model_dir))
    except (OSError, ValueError) as err:
        raise ModelError(f"{hf_model_dir}: no Whisper feature extractor config ({err})") from err
    with staged_dir(out_dir, overwrite) as tmp:
        converter = converters.TransformersConverter(str(hf_model_dir), copy_files=["tokenizer.json"])
        try:
            converter.convert(str(tmp), quantization=quantization, force=True)  # tmp exists, empty
        except (ValueError, NotImplementedError, RuntimeError, OSError) as err:
            raise ModelError(f"{hf_model_dir}: ctranslate2 cannot convert it ({err})") from err
        features.to_json_file(str(tmp / PREPROCESSOR_CONFIG))
    log.info("exported %s to CTranslate2 (%s) at %s", hf_model_dir, quantization or "stored dtype", out_dir)
    return Path(out_dir)


def _ctranslate2_converters():
    # Imported here: ctranslate2 is an optional extra, needed only to export.
    try:
        import ctranslate2.converters
    except ImportError as err:
        raise ModelError(f"exporting to CTranslate2 needs the ctranslate2 package: {INSTALL_HINT}") from err
    return ctranslate2.converters
