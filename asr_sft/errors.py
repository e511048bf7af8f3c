"""Errors the pipeline raises on bad input; the CLI prints them without a traceback."""


class AsrSftError(Exception):
    """Base class: a problem with the user's input or environment, stated in plain words."""


class ManifestError(AsrSftError):
    """A manifest is malformed or points at unusable data."""


class AudioError(AsrSftError):
    """An audio file cannot be read or is empty."""


class DownloadError(AsrSftError):
    """A download failed, was refused, or did not verify."""


class ArchiveError(AsrSftError):
    """An archive is unsafe or corrupt."""


class SynthesisError(AsrSftError):
    """Speech synthesis failed (espeak-ng missing or erroring)."""


class ScoringError(AsrSftError):
    """References and hypotheses cannot be scored together (missing ids, unknown normaliser...)."""


class ModelError(AsrSftError):
    """A model checkpoint, its processor or a model's input limits are unusable as given."""


class OptionError(AsrSftError, ValueError):
    """An option (command line or config) is outside its allowed range; the message names it."""
