"""Training configuration: every default in one typed place.

A config is five frozen sections ([data], [model], [optim], [train], [augment]); [model] is the
chosen model family's own options dataclass (`type = "ctc"` by default, `"whisper"` or
`"whisper_ctc"`), so its defaults live in one place, beside the family. Recipes keep theirs in
TOML (`recipes/<name>/conf/*.toml`) and the command line overrides single keys as
`section.key=value`; values are type-checked and unknown sections or keys are rejected, so a typo
never silently trains with a default. The resolved config is written beside every checkpoint and
report.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from asr_sft.errors import AsrSftError
from asr_sft.models import get_family
from asr_sft.data.augment import AugmentOptions
from asr_sft.models.ctc import CTCModelOptions
from asr_sft.models.whisper import WhisperOptions
from asr_sft.models.whisper_ctc import WhisperCTCOptions


class ConfigError(AsrSftError):
    """A config file or override is malformed, mistyped or names an unknown key."""


@dataclass(frozen=True)
class DataConfig:
    train_manifest: str = ""  # JSONL manifest (see asr_sft.manifest)
    dev_manifest: str = ""  # evaluated every train.eval_every steps; the best checkpoint is chosen on it
    min_duration: float = 0.5  # seconds; shorter utterances are filtered (and reported)
    max_duration: float = 20.0  # seconds; longer utterances are filtered (and reported)
    max_batch_seconds: float = 60.0  # padded audio seconds per micro-batch (memory budget)
    max_batch_size: int = 32  # utterances per micro-batch
    num_buckets: int = 30  # duration buckets (equal utterance counts); 30 pads ~2% on LibriSpeech-like data
    dev_max_utterances: int = 0  # 0 = the whole dev set
    loader_threads: int = 2  # batches read and collated ahead in background threads; 0 = inline
    # Start-up audio check of the train and dev manifests: "deep" decodes every file once (it must
    # decode to the end, hold finite samples and last as long as its row says); "exists" only
    # checks that each file is there and not empty.
    audio_check: str = "deep"
    skip_invalid: bool = False  # skip (and report) rows failing the checks instead of refusing to start
    # Refuse to train when more than this share of the training text's characters is outside the
    # model's vocabulary (each trains as <unk>); 1 disables the check.
    max_oov_rate: float = 0.01

    def __post_init__(self):
        _check_range("data.min_duration", self.min_duration, low=0.0)
        _check_range("data.max_duration", self.max_duration, low=self.min_duration, low_open=True,
                     what=f"> data.min_duration ({self.min_duration})")
        _check_range("data.max_batch_seconds", self.max_batch_seconds, low=0.0, low_open=True)
        for name in ("max_batch_size", "num_buckets"):
            _check_range(f"data.{name}", getattr(self, name), low=1)
        for name in ("dev_max_utterances", "loader_threads"):
            _check_range(f"data.{name}", getattr(self, name), low=0)
        _check_choice("data.audio_check", self.audio_check, ("deep", "exists"))
        _check_range("data.max_oov_rate", self.max_oov_rate, low=0.0, high=1.0)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-5  # peak learning rate (AdamW)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_steps: int = 500  # linear warm-up from 0 to lr
    schedule: str = "linear"  # decay after warm-up: "linear" to 0, "cosine" to 0, or "constant"
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    grad_accum: int = 1  # micro-batches per optimizer step

    def __post_init__(self):
        _check_choice("optim.schedule", self.schedule, ("linear", "cosine", "constant"))
        _check_range("optim.lr", self.lr, low=0.0, low_open=True)
        _check_range("optim.weight_decay", self.weight_decay, low=0.0)
        for i, beta in enumerate(self.betas):
            _check_range(f"optim.betas[{i}]", beta, low=0.0, high=1.0, high_open=True)
        _check_range("optim.eps", self.eps, low=0.0, low_open=True)
        _check_range("optim.warmup_steps", self.warmup_steps, low=0)
        _check_range("optim.max_grad_norm", self.max_grad_norm, low=0.0)
        _check_range("optim.grad_accum", self.grad_accum, low=1)


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "exp/run"
    max_steps: int = 1000  # optimizer steps (the learning-rate schedule spans these)
    max_minutes: float = 0.0  # wall-clock budget: evaluate, save and stop once spent; 0 = none
    seed: int = 0
    precision: str = "no"  # "no" (fp32), "bf16" or "fp16" (mixed precision; GPU)
    device: str = "auto"  # "auto" (GPU when present), "cpu" or "cuda"
    log_every: int = 10  # steps
    eval_every: int = 200  # steps; also at the last step
    eval_normalizer: str = "librispeech"  # text normaliser for dev WER (see asr_sft.text)
    save_every: int = 200  # steps; also at the last step
    keep_last: int = 2  # checkpoints kept besides the best one
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    tensorboard: bool = True
    # Continue the run in output_dir even though its data or settings changed (asr_sft.training.guard
    # lists what may change without it).
    resume_changed: bool = False

    def __post_init__(self):
        _check_choice("train.precision", self.precision, ("no", "bf16", "fp16"))
        _check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _check_range("train.max_steps", self.max_steps, low=1)
        _check_range("train.max_minutes", self.max_minutes, low=0.0)
        for name in ("log_every", "eval_every", "save_every"):
            _check_range(f"train.{name}", getattr(self, name), low=1)
        for name in ("keep_last", "num_threads"):
            _check_range(f"train.{name}", getattr(self, name), low=0)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    # The model family's own options (asr_sft.models): [model] type = "ctc" | "whisper" |
    # "whisper_ctc" picks them.
    model: CTCModelOptions | WhisperOptions | WhisperCTCOptions = field(default_factory=CTCModelOptions)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Noise and speed perturbation of training utterances (asr_sft.data.augment); off by default.
    augment: AugmentOptions = field(default_factory=AugmentOptions)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_range(name: str, value, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 what: str | None = None) -> None:
    """Raise ConfigError naming the option and its allowed range unless low <= value <= high (strict
    where open); NaN is never in range."""
    ok = value == value  # NaN != NaN
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        if what is None:
            left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            what = " and ".join(part for part in (left, right) if part)
        raise ConfigError(f"{name} must be {what}, got {value!r}")


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Config from a TOML (or saved JSON) file, then `section.key=value` overrides, type-checked."""
    raw: dict = {}
    if path is not None:
        raw = _read_file(Path(path))
    for item in overrides:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})[key] = value
    return build_config(raw, source=str(path or "overrides"))


def build_config(raw: dict, source: str = "config") -> Config:
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    sections = {}
    for name, cls in _section_classes().items():
        values = raw.get(name, {})
        if name == "model":
            cls = _model_options_class(values, f"{source}: [model]")
        sections[name] = _build_section(cls, values, f"{source}: [{name}]")
    return Config(**sections)


def _model_options_class(values, where: str) -> type:
    """The family options dataclass that [model] type names (default "ctc")."""
    family = values.get("type", "ctc") if isinstance(values, dict) else "ctc"
    try:
        return get_family(family).Options
    except AsrSftError as err:
        raise ConfigError(f"{where} type: {err}") from err


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as JSON (loadable again with load_config)."""
    from asr_sft.atomic import write_text_atomic

    write_text_atomic(Path(path), json.dumps(config_to_dict(config), indent=2) + "\n")


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from err
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({err})") from err


def _parse_override(item: str) -> tuple[str, str, object]:
    name, sep, text = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:  # TOML syntax for the value: 1e-4, true, "text", [0.9, 0.98]; bare words are strings
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return section, key, value


def _build_section(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table of keys")
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(hints)}")
    kwargs = {key: _coerce(values[key], hints[key], f"{where} {key}") for key in values}
    try:
        return cls(**kwargs)
    except ValueError as err:  # a range check in the section's __post_init__
        raise ConfigError(f"{where}: {err}") from err


def _coerce(value, hint, where: str):
    """Check a value against a field's type; ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any number of X
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
    elif isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
