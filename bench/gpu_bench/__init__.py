"""The GPU benchmark's parts (run by bench/gpu.py): environment, training, decoding, features.

Only torch, torchaudio, transformers, accelerate and numpy are imported, beside asr_sft modules that
need nothing more (no soundfile, librosa, jiwer or rapidfuzz): the GPU machine has only those.
"""
