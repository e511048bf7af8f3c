"""CTC models: any `AutoModelForCTC` checkpoint (wav2vec2, HuBERT, WavLM, data2vec-audio).

Text is a sequence of characters; a space between words is the word delimiter "|" (the wav2vec2
convention) and id 0, "<pad>", is the CTC blank. When the checkpoint has no tokenizer, or a new
vocabulary is asked for, the output layer (lm_head) is re-initialised to the vocabulary's size.
Vocabularies are case-sensitive: normalise transcripts (asr_sft.text) before building one, or let
training map them (model.text_case, model.drop_punctuation: e.g. sentence-case text with
punctuation onto an upper-case letter vocabulary, as the built-in model and LibriSpeech have).

Greedy decoding: argmax per frame, collapse repeats, drop blanks (and other special tokens),
"|" -> space. It is the same function for training-time evaluation and `asr-sft decode`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import (
    AutoFeatureExtractor,
    AutoModelForCTC,
    Wav2Vec2Config,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2Processor,
)
from transformers.utils import cached_file

from asr_sft.data.audio import SAMPLE_RATE
from asr_sft.errors import ManifestError, ModelError, OptionError
from asr_sft.data.features import normalize_waveforms, pad_batch, sample_mask
from asr_sft.atomic import staged_dir
from asr_sft.models import lora
from asr_sft.models.labels import change_case, check_text_case
from asr_sft.models.labels import drop_punctuation as without_punctuation
from asr_sft.models.options import DecodeOptions
from asr_sft.models.resolve import resolve_model

log = logging.getLogger(__name__)

NAME = "ctc"  # model.type of this family
TEXT_CASES = ("keep", "upper", "lower")  # model.text_case
MAX_INPUT_SECONDS = None  # no input limit: the encoder takes any length
PAD_TOKEN = "<pad>"  # id 0: the CTC blank, and the padding of label batches
UNK_TOKEN = "<unk>"  # characters not in the vocabulary
WORD_DELIMITER = "|"  # stands for the space between words
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, WORD_DELIMITER)  # ids 0, 1, 2 of a vocabulary we build

# Randomly initialised wav2vec2 shapes (`init_ctc_model`). Every front end downsamples 320x:
# 16,000 samples/s -> 50 frames/s, as wav2vec2 does. Layer norm in every conv layer
# (feat_extract_norm="layer") keeps each utterance's output independent of the padding in its batch.
SIZES = {
    # ~0.1 M parameters: for tests only.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 conv_dim=(32, 32, 32), conv_stride=(10, 8, 4), conv_kernel=(20, 8, 4),
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=False),
    # ~5 M parameters, trainable on a CPU. wav2vec2's standard front end (7 convs, the first at 3,200
    # frames/s) costs most of the CPU time at this size; this one runs its first conv at 1,600
    # frames/s with 128 channels and reaches 50 frames/s in 3 layers (receptive field 330 samples).
    # Measured on a 2-core CPU, 6 x 10 s, encoder frozen: forward+backward 1.9 s, vs 6.6 s with the
    # standard 512 x 7 front end and 2.7 s with 128 x 7 at the same transformer size.
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
                  conv_dim=(128, 128, 128), conv_stride=(10, 8, 4), conv_kernel=(20, 8, 4),
                  num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                  # Pre-layer-norm transformer: trains stably from scratch at a high learning rate.
                  do_stable_layer_norm=True),
    # wav2vec2-base's shape (~95 M parameters) and standard front end.
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                 num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, do_stable_layer_norm=False),
}


@dataclass(frozen=True)
class CTCModelOptions(lora.LoraOptions):
    """The [model] section of a training config for `type = "ctc"` (LoRA fields: lora.py)."""

    type: str = "ctc"  # the model family (asr_sft.models registry)
    name_or_path: str = ""  # hub id, local folder, checkpoint pointer or builtin:<name>
    new_vocab: bool = False  # build a character vocabulary from the training text and re-init the head
    # Keep the convolutional feature encoder fixed: the standard for fine-tuning (it saves memory
    # and time and rarely costs accuracy).
    freeze_feature_encoder: bool = True
    # SpecAugment, applied by the model in training mode only (through its config).
    mask_time_prob: float = 0.05  # fraction of frames that start a time mask
    mask_time_length: int = 10  # frames per time mask (20 ms each)
    mask_feature_prob: float = 0.0  # fraction of hidden channels that start a channel mask
    mask_feature_length: int = 10  # channels per channel mask
    # Probability of skipping each transformer layer in training; forced to 0 under DDP, where
    # skipped layers break gradient synchronisation.
    layerdrop: float = 0.0
    # Hidden, attention and activation dropout; None keeps the checkpoint's.
    dropout: float | None = 0.1
    ctc_loss_reduction: str = "mean"  # "mean": per-utterance loss divided by its label length
    ctc_zero_infinity: bool = True  # an utterance too short for its labels gives loss 0, not inf
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    # Training transcripts mapped to the vocabulary before labelling (and before new_vocab builds
    # one): "upper" / "lower" case them ("keep": as written), and drop_punctuation removes Unicode
    # punctuation except the apostrophe (as HF's CTC examples' chars_to_ignore do).
    text_case: str = "keep"
    drop_punctuation: bool = False

    def __post_init__(self):
        if self.type != NAME:
            raise OptionError(f"model.type must be {NAME!r} for CTC options, got {self.type!r}")
        for name in ("mask_time_prob", "mask_feature_prob", "layerdrop") + (
            ("dropout",) if self.dropout is not None else ()
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise OptionError(f"model.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("mask_time_length", "mask_feature_length"):
            if getattr(self, name) < 1:
                raise OptionError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        check_text_case(self.text_case, TEXT_CASES)
        if self.ctc_loss_reduction not in ("mean", "sum"):
            raise OptionError(f"model.ctc_loss_reduction must be 'mean' or 'sum', got {self.ctc_loss_reduction!r}")
        super().__post_init__()

    def config_overrides(self) -> dict:
        """The options that live in the model config (what from_pretrained accepts as kwargs)."""
        overrides = dict(
            mask_time_prob=self.mask_time_prob, mask_time_length=self.mask_time_length,
            mask_feature_prob=self.mask_feature_prob, mask_feature_length=self.mask_feature_length,
            layerdrop=self.layerdrop, ctc_loss_reduction=self.ctc_loss_reduction,
            ctc_zero_infinity=self.ctc_zero_infinity,
        )
        if self.dropout is not None:
            overrides.update(hidden_dropout=self.dropout, attention_dropout=self.dropout,
                             activation_dropout=self.dropout)
        return overrides


# --- vocabulary and processor ---------------------------------------------------------------------
def build_vocab(texts: Iterable[str]) -> dict[str, int]:
    """Character vocabulary of `texts`: <pad>=0 (blank), <unk>=1, "|"=2 (space), then every other
    character in sorted (code point) order. Whitespace of any kind counts as a word boundary."""
    chars: set[str] = set()
    count = 0
    for i, text in enumerate(texts):
        if WORD_DELIMITER in text:
            raise ManifestError(
                f"transcript {i} ({text[:60]!r}) contains {WORD_DELIMITER!r}, the CTC word delimiter; "
                "remove it from the text first"
            )
        chars.update("".join(text.split()))
        count += 1
    if not chars:
        raise ManifestError(f"no characters to build a vocabulary from ({count} transcripts, all empty)")
    return {**{t: i for i, t in enumerate(SPECIAL_TOKENS)},
            **{c: i for i, c in enumerate(sorted(chars), start=len(SPECIAL_TOKENS))}}


def text_problem(text: str) -> str | None:
    """Why a transcript cannot be a CTC target (None if it can): it holds the word delimiter, or
    no characters at all."""
    if WORD_DELIMITER in text:
        return f"the transcript contains {WORD_DELIMITER!r}, the CTC word delimiter"
    if not "".join(text.split()):
        return "the transcript has no characters"
    return None


def make_tokenizer(vocab: dict[str, int]) -> Wav2Vec2CTCTokenizer:
    """A CTC character tokenizer for `vocab` (which must hold <pad>, <unk> and "|")."""
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ModelError(f"CTC vocabulary lacks the special token(s) {missing}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ModelError("CTC vocabulary ids must be 0..N-1, each used once")
    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer reads its vocabulary from a file
        path = Path(tmp) / "vocab.json"
        path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        # bos/eos None: a CTC vocabulary has neither, and naming them would add tokens to it.
        return Wav2Vec2CTCTokenizer(str(path), bos_token=None, eos_token=None, unk_token=UNK_TOKEN,
                                    pad_token=PAD_TOKEN, word_delimiter_token=WORD_DELIMITER)


def make_feature_extractor() -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                    do_normalize=True, return_attention_mask=True)


def make_processor(vocab: dict[str, int], out_dir: str | Path | None = None) -> Wav2Vec2Processor:
    """Tokenizer for `vocab` + 16 kHz normalising feature extractor; saved to out_dir if given."""
    processor = Wav2Vec2Processor(feature_extractor=make_feature_extractor(), tokenizer=make_tokenizer(vocab))
    if out_dir is not None:
        processor.save_pretrained(str(out_dir))
    return processor


def make_labels(processor: Wav2Vec2Processor, texts: Sequence[str]) -> torch.Tensor:
    """(B, L) int64 character ids, "|" between words, padded with -100 (ignored by the CTC loss)."""
    tokens = [processor.tokenizer(" ".join(t.split())).input_ids for t in texts]
    labels = torch.full((len(tokens), max(map(len, tokens), default=0)), -100, dtype=torch.long)
    for i, ids in enumerate(tokens):
        labels[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return labels


# --- loading --------------------------------------------------------------------------------------
def _has_file(name_or_path: str, filename: str) -> bool:
    if Path(name_or_path).is_dir():
        return (Path(name_or_path) / filename).is_file()
    return cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False) is not None


def load_ctc_model(
    name_or_path: str | Path, vocab: dict[str, int] | None = None, options: CTCModelOptions | None = None
) -> tuple[torch.nn.Module, Wav2Vec2Processor]:
    """(model, processor) of a CTC checkpoint (hub id or local folder).

    With `vocab` different from the checkpoint's tokenizer, or when the checkpoint has no tokenizer,
    the processor gets a tokenizer for `vocab` and the model a freshly initialised lm_head of that
    size; every other weight is the checkpoint's.
    """
    options = options or CTCModelOptions()
    name = resolve_model(name_or_path)
    try:
        if not _has_file(name, "config.json"):
            raise ModelError(f"{name}: no model there (no config.json in the folder or the hub cache)")
        has_tokenizer = _has_file(name, "vocab.json")
        if vocab is None and not has_tokenizer:
            raise ModelError(f"{name}: the checkpoint has no tokenizer (vocab.json); pass a vocabulary "
                             "(e.g. build_vocab of the training transcripts)")
        # float32 master weights whatever the checkpoint stores (transformers 5 would otherwise keep
        # an fp16 checkpoint in fp16); mixed precision is accelerate's job.
        model = AutoModelForCTC.from_pretrained(name, dtype=torch.float32, **options.config_overrides())
        feature_extractor = (AutoFeatureExtractor.from_pretrained(name)
                             if _has_file(name, "preprocessor_config.json") else make_feature_extractor())
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(name) if has_tokenizer else None
    except (OSError, ValueError) as err:
        raise ModelError(f"{name}: cannot load a CTC model ({err})") from err
    if vocab is not None and (tokenizer is None or tokenizer.get_vocab() != vocab):
        tokenizer = make_tokenizer(vocab)
        reset_head(model, len(vocab))
    elif len(tokenizer) > model.lm_head.out_features:
        raise ModelError(f"{name}: tokenizer has {len(tokenizer)} tokens but the model only "
                         f"{model.lm_head.out_features} outputs")
    model.config.pad_token_id = tokenizer.pad_token_id  # the CTC blank
    if options.freeze_feature_encoder:
        model.freeze_feature_encoder()
    if options.gradient_checkpointing:  # renamed activation checkpointing in transformers 5.x
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    return model, Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def reset_head(model: torch.nn.Module, vocab_size: int) -> None:
    """Replace model.lm_head by a new (hidden -> vocab_size) layer, initialised like the model's own
    (normal(0, initializer_range) weights, zero bias), and record the size in the config."""
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, vocab_size, device=old.weight.device, dtype=old.weight.dtype)
    torch.nn.init.normal_(head.weight, mean=0.0, std=model.config.initializer_range)
    torch.nn.init.zeros_(head.bias)
    model.lm_head = head
    model.config.vocab_size = vocab_size
    log.info("re-initialised the CTC head (lm_head): %d -> %d outputs", old.out_features, vocab_size)


# --- random initialisation ------------------------------------------------------------------------
def init_ctc_model(
    out_dir: str | Path, size: str = "tiny", vocab: dict[str, int] | None = None,
    texts: Iterable[str] | None = None, seed: int = 0, overwrite: bool = False,
) -> Path:
    """Write a randomly initialised wav2vec2 CTC model of `size` (a SIZES key) + processor to
    out_dir (safetensors), loadable with from_pretrained. The vocabulary is `vocab`, or built from
    `texts`. The folder appears complete or not at all."""
    if size not in SIZES:
        raise ModelError(f"unknown wav2vec2 size {size!r}; choose one of {', '.join(SIZES)}")
    if vocab is None:
        if texts is None:
            raise ModelError("init_ctc_model needs a vocabulary or the transcripts to build one from")
        vocab = build_vocab(texts)
    processor = make_processor(vocab)
    defaults = CTCModelOptions()
    config = Wav2Vec2Config(
        vocab_size=len(vocab), pad_token_id=vocab[PAD_TOKEN], bos_token_id=None, eos_token_id=None,
        feat_extract_norm="layer", architectures=["Wav2Vec2ForCTC"],
        **defaults.config_overrides(), **SIZES[size],
    )
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(config)
    with staged_dir(out_dir, overwrite) as tmp:
        model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
    n = sum(p.numel() for p in model.parameters())
    log.info("wrote a random %s wav2vec2 CTC model (%.2f M parameters, %d tokens) to %s",
             size, n / 1e6, len(vocab), out_dir)
    return Path(out_dir)


# --- decoding -------------------------------------------------------------------------------------
def greedy_decode(
    ids: torch.Tensor, lengths: torch.Tensor | None, id_to_token: dict[int, str], blank_id: int,
    skip_ids: Iterable[int] = (),
) -> list[str]:
    """Best-path CTC decoding of (B, frames) argmax ids, the first lengths[b] frames of each row:
    collapse repeats, drop the blank (and skip_ids), map "|" to a space, squeeze spaces."""
    skip = set(skip_ids) | {blank_id}
    texts = []
    for b, row in enumerate(ids.tolist()):
        row = row if lengths is None else row[: int(lengths[b])]
        collapsed = [t for i, t in enumerate(row) if i == 0 or t != row[i - 1]]
        chars = [id_to_token[t] for t in collapsed if t not in skip]
        texts.append(" ".join("".join(chars).replace(WORD_DELIMITER, " ").split()))
    return texts


def model_inputs(processor: Wav2Vec2Processor,
                 waves: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """input_values (B, T) as the checkpoint's feature extractor makes them (computed with torch, on
    the waves' device) and the (B, T) int64 mask of real samples."""
    if processor.feature_extractor.do_normalize:
        return normalize_waveforms(list(waves))
    values, lengths = pad_batch(list(waves))
    return values, sample_mask(lengths, values.shape[1]).long()


@torch.inference_mode()
def decode_batch(model: torch.nn.Module, processor: Wav2Vec2Processor,
                 waves: Sequence[torch.Tensor], options: DecodeOptions | None = None) -> list[str]:
    """Greedy transcripts of 16 kHz mono waves (samples,), computed on the model's device and dtype
    (CTC decoding takes none of `options`: it is always greedy).

    The model is put in eval mode for the call (no dropout, no SpecAugment) and restored after.
    """
    param = next(model.parameters())
    values, mask = model_inputs(processor, [w.to(param.device) for w in waves])
    # Checkpoints whose extractor says return_attention_mask=False (group-norm wav2vec2-base) were
    # trained on zero padding without a mask, and are meant to be run that way.
    attention_mask = mask if processor.feature_extractor.return_attention_mask else None
    was_training = model.training
    model.eval()
    try:
        logits = model(values.to(param.dtype), attention_mask=attention_mask).logits
    finally:
        model.train(was_training)
    frames = output_frames(model.config, mask.sum(dim=1)).clamp(max=logits.shape[1])
    return greedy_texts(processor.tokenizer, logits.argmax(dim=-1).cpu(), frames.cpu())


def greedy_texts(tokenizer: Wav2Vec2CTCTokenizer, ids: torch.Tensor, lengths: torch.Tensor | None) -> list[str]:
    """greedy_decode of (B, frames) argmax ids with `tokenizer`'s vocabulary: its pad token is the
    blank, its other special tokens (but "|") are dropped."""
    id_to_token = {i: t for t, i in tokenizer.get_vocab().items()}
    specials = [tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens
                if t != WORD_DELIMITER]
    return greedy_decode(ids, lengths, id_to_token, tokenizer.pad_token_id, specials)


def output_frames(config, sample_lengths: torch.Tensor) -> torch.Tensor:
    """Frames the convolutional feature encoder makes of `sample_lengths` samples (each conv layer:
    floor((L - kernel) / stride) + 1), as the model's own output-length rule."""
    lengths = sample_lengths
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def count_infeasible(config, sample_lengths: torch.Tensor, labels: torch.Tensor) -> int:
    """Utterances whose labels cannot fit the model's output frames (CTC needs a blank between
    repeated characters): their loss is infinite and zero_infinity turns it into 0."""
    frames = output_frames(config, sample_lengths)
    valid = labels >= 0
    repeats = ((labels[:, 1:] == labels[:, :-1]) & valid[:, 1:]).sum(-1)
    return int(((valid.sum(-1) + repeats) > frames).sum())


# --- the family interface (asr_sft.models) --------------------------------------------------------
Options = CTCModelOptions


def handles(config) -> bool:
    return any(name.endswith("ForCTC") for name in (config.architectures or []))


def load(options: CTCModelOptions, texts: Iterable[str], num_processes: int = 1):
    """(model, processor) to train: a new vocabulary from `texts` when options.new_vocab; LoRA
    updates (with lm_head trained whole) when options.lora_rank."""
    lora.refuse_adapter(options.name_or_path)
    text_map = (options.text_case, options.drop_punctuation)
    vocab = None
    if options.new_vocab:  # built from the text as training will see it
        vocab = build_vocab(m for m in (map_text(t, *text_map) for t in texts) if text_problem(m) is None)
    if num_processes > 1 and options.layerdrop > 0:
        log.warning("model.layerdrop=%s ignored under DDP (skipped layers break gradient sync)", options.layerdrop)
        options = replace(options, layerdrop=0.0)
    model, processor = load_ctc_model(options.name_or_path, vocab=vocab, options=options)
    processor.text_map = text_map  # read by collate, check_rows, oov_rate
    return lora.add_lora(model, options, options.name_or_path, train_whole=("lm_head",)), processor


def map_text(text: str, case: str = "keep", drop_punctuation: bool = False) -> str:
    """`text` as model.text_case / model.drop_punctuation map it for training (see CTCModelOptions)."""
    return change_case(without_punctuation(text) if drop_punctuation else text, case)


def _training_text(processor, text: str) -> str:
    return map_text(text, *getattr(processor, "text_map", ("keep", False)))


def load_for_inference(name_or_path: str | Path, options: DecodeOptions):
    """(model, processor) of a checkpoint, or of a LoRA checkpoint: its base with the adapter on it."""
    folder = resolve_model(name_or_path)
    if not lora.is_adapter_dir(folder):
        return load_ctc_model(folder)
    processor = Wav2Vec2Processor.from_pretrained(folder)
    model, _ = load_ctc_model(lora.adapter_base(folder), vocab=processor.tokenizer.get_vocab())
    return lora.load_adapter(model, folder), processor


def check_rows(processor: Wav2Vec2Processor, rows: Sequence[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Rows CTC can train on, and the others with the reason (text_problem)."""
    kept, dropped = [], []
    for row in rows:
        if (problem := text_problem(_training_text(processor, row["text"]))) is not None:
            dropped.append((row, problem))
        else:
            kept.append(row)
    return kept, dropped


def collate(processor: Wav2Vec2Processor, rows: Sequence[dict], waves: Sequence[torch.Tensor]) -> dict:
    """Model inputs exactly as decoding builds them (model_inputs), CTC labels (pad -> -100) and
    the real sample counts (for count_infeasible)."""
    values, mask = model_inputs(processor, waves)
    texts = [_training_text(processor, r["text"]) for r in rows]
    batch = {"input_values": values, "labels": make_labels(processor, texts)}
    # Group-norm checkpoints (wav2vec2-base) were trained without a mask and decode without one.
    if processor.feature_extractor.return_attention_mask:
        batch["attention_mask"] = mask
    return {**batch, "sample_lengths": mask.sum(-1)}


def loss(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, int]]:
    """CTC loss of a collated batch (model may be DDP-wrapped), and how many utterances were
    infeasible (too many labels for their frames)."""
    from asr_sft.models import unwrap

    batch = dict(batch)
    lengths = batch.pop("sample_lengths")
    infeasible = count_infeasible(unwrap(model).config, lengths, batch["labels"])
    return model(**batch).loss, {"infeasible_utterances": infeasible}


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def freeze_schedule(model: torch.nn.Module, options: CTCModelOptions) -> list[tuple[int, list[torch.nn.Parameter]]]:
    """Nothing is frozen for a number of steps (freeze_feature_encoder freezes the convolutions for good)."""
    return []


# --- vocabulary coverage (the oov_rate hook; asr_sft.training.guard) ------------------------------
def _oov_counts(processor: Wav2Vec2Processor, texts: Iterable[str]) -> tuple[dict[str, int], int]:
    """({character: count} of characters of `texts` the vocabulary lacks, characters counted),
    spaces aside, after the tokenizer's own case rule (do_lower_case upper-cases the input)."""
    tokenizer = processor.tokenizer
    vocab = tokenizer.get_vocab()
    upper = getattr(tokenizer, "do_lower_case", False)
    missing: dict[str, int] = {}
    total = 0
    for text in texts:
        text = _training_text(processor, text)
        chars = "".join((text.upper() if upper else text).split())
        total += len(chars)
        for c in chars:
            if c == WORD_DELIMITER or c not in vocab:  # a literal "|" would train as a word boundary
                missing[c] = missing.get(c, 0) + 1
    return missing, total


def oov_rate(processor: Wav2Vec2Processor, texts: Iterable[str]) -> float:
    """The share of the characters of `texts` (spaces aside) that would train as <unk> (or, for
    "|", as a word boundary): 0.84 for lower-case text under an upper-case vocabulary."""
    missing, total = _oov_counts(processor, texts)
    return sum(missing.values()) / total if total else 0.0


def oov_characters(processor: Wav2Vec2Processor, texts: Iterable[str], n: int = 8) -> list[str]:
    """The `n` most common characters of `texts` outside the vocabulary, most common first."""
    missing, _ = _oov_counts(processor, texts)
    return sorted(missing, key=lambda c: -missing[c])[:n]
