"""Randomly initialised models of real shapes, built in memory (no hub, no files).

wav2vec2-base: transformers' Wav2Vec2Config defaults, which are wav2vec2-base's (= asr_sft.models.ctc
SIZES["base"]): group-norm front end, post-LN transformer, 768 x 12, and like facebook/wav2vec2-base
no attention mask (its feature extractor says return_attention_mask=False). The [model] options
(SpecAugment, layerdrop, dropout) are the LibriSpeech recipe's.

whisper-small: OpenAI's shape (d_model 768, 12 + 12 layers, 12 heads, FFN 3072, 80 mels, 51,865 ids).
Its tokenizer is synthetic (the GPU machine has no hub and the real one is not in the repo): a
byte-level BPE WhisperTokenizer with the multilingual id layout (50,257 text ids, <|endoftext|>
50257, <|startoftranscript|> 50258, 99 languages from <|en|> 50259, <|transcribe|> 50359,
<|notimestamps|> 50363, timestamps to 51864) and no merges, so the output layer, the prefix and
generate are the real ones; text tokens are placeholders (random weights emit arbitrary ids anyway),
and with no merges a text encodes to one token per character (training uses that to give labels a
realistic length).
"""

from __future__ import annotations

import torch
from transformers import (
    AddedToken,
    Wav2Vec2Config,
    Wav2Vec2ForCTC,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from asr_sft.models import ctc, whisper

TEXT_TOKENS = 50257  # GPT-2 byte-level BPE ids of the multilingual Whisper vocabulary
VOCAB_SIZE = 51865  # every multilingual Whisper up to large-v2
N_LANGUAGES = 99  # language tokens of the 51,865-id vocabulary (large-v3 adds <|yue|>)
TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>
WHISPER_SMALL = dict(d_model=768, encoder_layers=12, decoder_layers=12, encoder_attention_heads=12,
                     decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)


# --- wav2vec2 -------------------------------------------------------------------------------------
def ctc_processor(texts, return_attention_mask: bool):
    """The project's CTC processor (character vocabulary of `texts`)."""
    processor = ctc.make_processor(ctc.build_vocab(texts))
    processor.feature_extractor.return_attention_mask = return_attention_mask
    return processor


def wav2vec2_model(size: str, options: ctc.CTCModelOptions, vocab_size: int, device: str) -> Wav2Vec2ForCTC:
    """A random wav2vec2 CTC model of ctc.SIZES[size], float32, CNN frozen as options say."""
    config = Wav2Vec2Config(vocab_size=vocab_size, pad_token_id=0, bos_token_id=None, eos_token_id=None,
                            architectures=["Wav2Vec2ForCTC"], **options.config_overrides(), **ctc.SIZES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = Wav2Vec2ForCTC(config)
    if options.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


# --- Whisper --------------------------------------------------------------------------------------
def _byte_tokens() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in its id order (printable bytes first)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(others))]


def synthetic_whisper_tokenizer() -> WhisperTokenizer:
    """A WhisperTokenizer with the multilingual id layout (see the module docstring)."""
    vocab = {char: i for i, char in enumerate(_byte_tokens())}
    letters, i = "abcdefghijklmnopqrstuvwxyz", 0
    while len(vocab) < TEXT_TOKENS:  # placeholder tokens "Ġab", "ab", ...: unique byte-level strings
        word, k = "", i
        while True:
            word, k = letters[k % 26] + word, k // 26
            if k == 0:
                break
        for token in ("Ġ" + word, word):
            if len(vocab) < TEXT_TOKENS and token not in vocab:
                vocab[token] = len(vocab)
        i += 1
    specials = (["<|startoftranscript|>"] + [f"<|{code}|>" for code in list(LANGUAGES)[:N_LANGUAGES]]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                   "<|notimestamps|>"] + [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS)])
    # <|endoftext|> (unk, bos, eos, pad) is added first, as id 50257.
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>", extra_special_tokens=specials)
    if len(tokenizer) < VOCAB_SIZE:  # a transformers that ignored the keyword: add them in order
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    expected = {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259,
                "<|transcribe|>": 50359, "<|notimestamps|>": 50363, "<|30.00|>": 51864}
    found = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    if found != expected or len(tokenizer) != VOCAB_SIZE:
        raise RuntimeError(f"synthetic Whisper tokenizer has the wrong id layout ({len(tokenizer)} ids; {found}) "
                           "under this transformers version")
    return tokenizer


def whisper_processor() -> WhisperProcessor:
    """The synthetic tokenizer and an 80-bin WhisperFeatureExtractor."""
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=whisper.N_MELS),
                            tokenizer=synthetic_whisper_tokenizer())


def whisper_model(size: str, processor: WhisperProcessor, device: str) -> WhisperForConditionalGeneration:
    """A random Whisper ("small": OpenAI's shape; else asr_sft.models.whisper.SIZES[size]), float32,
    SDPA attention, with the generation config and en/transcribe prefix the project sets (which are
    also set on processor's tokenizer)."""
    tokenizer = processor.tokenizer
    generation = whisper.make_generation_config(tokenizer)
    shape = WHISPER_SMALL if size == "small" else whisper.SIZES[size]
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=whisper.N_MELS, max_source_positions=1500,
        max_target_positions=whisper.MAX_TARGET_POSITIONS,
        decoder_start_token_id=generation.decoder_start_token_id, pad_token_id=generation.pad_token_id,
        bos_token_id=generation.bos_token_id, eos_token_id=generation.eos_token_id,
        begin_suppress_tokens=generation.begin_suppress_tokens, architectures=["WhisperForConditionalGeneration"],
        attn_implementation="sdpa", **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config)
    model.generation_config = generation
    whisper.set_prefix(model, processor, "en", "transcribe")
    return model
