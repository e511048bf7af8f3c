"""Corpus importers: each turns a corpus layout on disk into manifests (see asr_sft.manifest)."""
