"""Whisper decoding with openai/whisper's guard against runaway output, and a check of a
checkpoint's special token ids against its tokenizer.

    transcribe(model, processor, waves, features, options) -> [Transcript]   one batch
    check_special_ids(model, processor, where) -> [what was fixed]            at load time
    compression_ratio(text) -> float

Greedy (or beam) decoding first. An utterance whose text repeats itself (gzip compression ratio >
2.4: "the end of the end of the end of ...") or whose average log-probability per token is below
-1.0 is decoded again, alone with the others that failed, by sampling at 0.2, 0.4, ... 1.0 until an
attempt passes both checks (openai/whisper transcribe.py `decode_with_fallback`). When none passes,
the attempt kept is the most probable of those that do not repeat themselves (faster-whisper's rule),
so a fallback never swaps a greedy transcript for a less likely sample. Unlike openai/whisper, one
sample is drawn per temperature (not best_of=5), and there is no no-speech skip: every utterance
gets a transcript.

Log-probabilities are those of openai/whisper: of the chosen tokens at temperature 1 after token
suppression, the end token included, averaged over the text tokens + 1. They come from one
teacher-forced pass of the decoder over each finished sequence (any search, beams included, and no
per-step score tensors kept). Sampling draws each utterance's tokens from its own generator, seeded
by options.fallback_seed and the utterance's waveform, so an utterance decodes to the same text in
whichever batch it is.

Generation goes through transformers' GenerationMixin.generate with one generation config built
per call (`max_length` = prefix + max_new_tokens), the prefix from the tokenizer (as make_labels
uses) and the encoder run once per batch: no "max_new_tokens and max_length" or generation-config
deprecation warnings per batch, and a fallback re-decode does not run the encoder again.
"""

from __future__ import annotations

import copy
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutput

from asr_sft.errors import ModelError
from asr_sft.data.audio import SAMPLE_RATE
from asr_sft.models.options import DecodeOptions, Transcript

log = logging.getLogger(__name__)

SOT, EOT = "<|startoftranscript|>", "<|endoftext|>"
LOGIT_CELLS = 1 << 26  # decoder positions x vocabulary scored at once (~256 MB of float32 logits)


def compression_ratio(text: str) -> float:
    """UTF-8 bytes of `text` over their zlib-compressed bytes (openai/whisper's definition): ~1 for
    ordinary sentences, far above 2.4 for text that repeats itself."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


@dataclass(frozen=True)
class _Attempt:
    text: str
    tokens: int
    hit_max_tokens: bool
    temperature: float
    compression_ratio: float
    avg_logprob: float | None


TOKEN_CAP_SLACK = 16  # tokens allowed beyond max_tokens_per_second x seconds (short clips, numbers)


def _token_cap(waves: Sequence[torch.Tensor], limit: int, options: DecodeOptions) -> int:
    """Tokens to generate at most for these waves: `limit`, or fewer for short audio."""
    if options.max_tokens_per_second is None or not waves:
        return limit
    seconds = max(len(w) for w in waves) / SAMPLE_RATE
    return max(1, min(limit, math.ceil(options.max_tokens_per_second * seconds) + TOKEN_CAP_SLACK))


# --- one batch ------------------------------------------------------------------------------------
@torch.inference_mode()
def transcribe(model, processor, waves: Sequence[torch.Tensor], features: torch.Tensor,
               options: DecodeOptions = DecodeOptions()) -> list[Transcript]:
    """Transcripts of one batch: `features` (B, n_mels, frames) as the encoder takes them, `waves`
    the 16 kHz waveforms they came from (they seed the fallback sampling)."""
    tokenizer = processor.tokenizer
    prefix = torch.tensor([tokenizer.prefix_tokens], dtype=torch.long, device=features.device)
    hidden = model.get_encoder()(features).last_hidden_state
    limit = min(options.max_new_tokens, model.config.max_target_positions - prefix.shape[1])
    checking = options.fallback and (options.compression_ratio_threshold is not None
                                     or options.logprob_threshold is not None)
    temperatures = (0.0, *options.fallback_temperatures) if checking else (0.0,)
    tried: list[list[_Attempt]] = [[] for _ in waves]
    todo = list(range(len(waves)))
    for step, temperature in enumerate(temperatures):
        seeds = [_seed(waves[i], options.fallback_seed, step) for i in todo] if temperature > 0 else None
        max_new = _token_cap([waves[i] for i in todo], limit, options)
        scoring = checking and options.logprob_threshold is not None
        # Greedy: the chosen tokens' log-probabilities come out of the search itself; sampled or
        # beam attempts are scored by one teacher-forced pass.
        recorder = _GreedyLogprobs() if scoring and temperature == 0 and options.num_beams == 1 else None
        tokens = _generate(model, hidden[todo], prefix, max_new, options.num_beams, temperature, seeds, recorder)
        if recorder is not None:
            logprobs = recorder.averages(tokens, _eos_ids(model.generation_config)[0])
        elif scoring:
            logprobs = _avg_logprobs(model, hidden[todo], prefix, tokens)
        else:
            logprobs = [None] * len(todo)
        for row, ids, logprob in zip(todo, tokens.tolist(), logprobs):
            tried[row].append(_attempt(tokenizer, model.generation_config, ids, max_new, temperature, logprob))
        todo = [row for row in todo if checking and _fails(tried[row][-1], options)]
        if not todo:
            break
    return [_choose(attempts, options, checking) for attempts in tried]


def _generate(model, hidden: torch.Tensor, prefix: torch.Tensor, max_new: int, num_beams: int,
              temperature: float, seeds: Sequence[int] | None,
              recorder: LogitsProcessor | None = None) -> torch.Tensor:
    """(B, <= max_new) generated token ids after the prefix, padded with the end token: beam search
    (or greedy) at temperature 0, else one sample per row drawn with the row's own generator.
    `recorder` runs last among the logits processors (generate appends custom ones)."""
    gen = copy.deepcopy(model.generation_config)
    gen.max_length, gen.max_new_tokens = prefix.shape[1] + max_new, None  # one length setting
    gen.do_sample, gen.num_beams = False, num_beams if temperature == 0 else 1
    gen.return_dict_in_generate = False
    processors = LogitsProcessorList()
    if temperature > 0:
        processors.append(_SeededSampler(temperature, seeds, hidden.device))
    if recorder is not None:
        processors.append(recorder)
    batch = hidden.shape[0]
    # The encoder takes no mask; an all-ones one tells `generate` so (pad = end token: it cannot infer one).
    mask = torch.ones(batch, hidden.shape[1], dtype=torch.long, device=hidden.device)
    out = GenerationMixin.generate(model, encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                   decoder_input_ids=prefix.expand(batch, -1), attention_mask=mask,
                                   generation_config=gen, logits_processor=processors)
    return out[:, prefix.shape[1]:]


class _SeededSampler(LogitsProcessor):
    """Draws each row's next token from softmax(scores / temperature) with that row's generator and
    leaves only that token possible, so greedy search takes it. Runs after token suppression. A
    row's draws depend on its seed alone, not on the rows beside it. The draw is an exponential
    race (argmax of p / E with E ~ Exp(1) per token), which samples from p exactly and needs one
    vector of noise per row, not a multinomial per row."""

    def __init__(self, temperature: float, seeds: Sequence[int], device: torch.device):
        self.temperature = temperature
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        noise = torch.empty_like(probs)
        for row, generator in zip(noise, self.generators):
            row.exponential_(generator=generator)
        picks = (probs / noise).argmax(dim=-1, keepdim=True)
        return torch.full_like(scores, -math.inf).scatter_(1, picks, 0.0)


class _GreedyLogprobs(LogitsProcessor):
    """Records, at each step, the log-probability at temperature 1 (after token suppression, the
    processors before it) of the token greedy search takes: each row's maximum. The same numbers
    _avg_logprobs computes with a second, teacher-forced pass, without that pass."""

    def __init__(self):
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        x = scores.float()  # the max of log_softmax, without materialising it
        self.steps.append(x.max(dim=-1).values - x.logsumexp(dim=-1))
        return scores

    def averages(self, tokens: torch.Tensor, eot: int) -> list[float]:
        counted, text_tokens = _counted(tokens, eot)
        picked = torch.stack(self.steps[:tokens.shape[1]], dim=1)
        return (torch.where(counted, picked, 0.0).sum(dim=1) / (text_tokens + 1)).tolist()


def _counted(tokens: torch.Tensor, eot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of the tokens up to and including each row's first end token, text tokens per row)."""
    is_end = tokens == eot
    counted = (is_end.cumsum(dim=1) - is_end.long()) == 0
    return counted, (counted & ~is_end).sum(dim=1)


def _seed(wave: torch.Tensor, seed: int, step: int) -> int:
    """A sampling seed from the fallback seed, the temperature's index and the waveform itself."""
    digest = zlib.crc32(wave.detach().to("cpu", torch.float32).numpy().tobytes())
    return (digest * 1_000_003 + seed * 7_919 + step) % (1 << 63)


def _avg_logprobs(model, hidden: torch.Tensor, prefix: torch.Tensor, tokens: torch.Tensor) -> list[float]:
    """Per row: the summed log-probability of its tokens up to and including the first end token,
    at temperature 1 after token suppression, over (text tokens + 1), from one teacher-forced pass."""
    gen = model.generation_config
    eot = _eos_ids(gen)[0]
    batch, steps = tokens.shape
    start = prefix.shape[1] - 1  # the logits at this position predict the first generated token
    inputs = torch.cat([prefix.expand(batch, -1), tokens[:, :-1]], dim=1)
    counted, text_tokens = _counted(tokens, eot)
    suppress, begin = list(gen.suppress_tokens or []), list(gen.begin_suppress_tokens or [])
    rows = max(1, LOGIT_CELLS // (steps * model.config.vocab_size))
    sums = []
    for lo in range(0, batch, rows):
        hi = min(batch, lo + rows)
        logits = model(encoder_outputs=(hidden[lo:hi],), decoder_input_ids=inputs[lo:hi],
                       use_cache=False).logits[:, start:].float()
        if suppress:
            logits[:, :, suppress] = -math.inf
        if begin:
            logits[:, 0, begin] = -math.inf
        picked = logits.log_softmax(dim=-1).gather(-1, tokens[lo:hi, :, None]).squeeze(-1)
        sums.append(torch.where(counted[lo:hi], picked, 0.0).sum(dim=1))
    return (torch.cat(sums) / (text_tokens + 1)).tolist()


def _attempt(tokenizer, gen, ids: list[int], max_new: int, temperature: float,
             avg_logprob: float | None) -> _Attempt:
    eos = set(_eos_ids(gen))
    end = next((k for k, t in enumerate(ids) if t in eos), None)
    text_ids = ids if end is None else ids[:end]
    text = tokenizer.decode(text_ids, skip_special_tokens=True).strip()
    return _Attempt(text, len(text_ids), end is None and len(ids) >= max_new, temperature,
                    compression_ratio(text), avg_logprob)


def _fails(a: _Attempt, options: DecodeOptions) -> bool:
    too_repetitive = (options.compression_ratio_threshold is not None
                      and a.compression_ratio > options.compression_ratio_threshold)
    too_unlikely = (options.logprob_threshold is not None and a.avg_logprob is not None
                    and a.avg_logprob < options.logprob_threshold)
    return too_repetitive or too_unlikely


def _choose(attempts: list[_Attempt], options: DecodeOptions, checking: bool) -> Transcript:
    """The first attempt that passes; when none does, the most probable of those that do not
    repeat themselves (of all, when every one does)."""
    failed = checking and _fails(attempts[-1], options)
    kept = attempts[-1]
    if failed:
        threshold = options.compression_ratio_threshold
        fluent = [a for a in attempts if threshold is None or a.compression_ratio <= threshold]
        kept = max(fluent or attempts, key=lambda a: -math.inf if a.avg_logprob is None else a.avg_logprob)
    return Transcript(kept.text, kept.tokens, kept.hit_max_tokens, kept.temperature, len(attempts), failed,
                      kept.compression_ratio, kept.avg_logprob)


def _eos_ids(config) -> list[int]:
    eos = config.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


# --- load time ------------------------------------------------------------------------------------
def check_special_ids(model, processor, where: str) -> list[str]:
    """Make the model's end and decoder-start ids (generation config and model config) agree with
    its tokenizer's <|endoftext|> and <|startoftranscript|>; return what was changed (each also
    logged as a warning). A mismatch makes every utterance decode to max_new_tokens without a word.
    Refuses (ModelError) what cannot be fixed without guessing: a tokenizer without those tokens,
    ids outside the model's vocabulary, or several end ids of which none is the tokenizer's."""
    tokenizer = processor.tokenizer
    eot, sot = _token_id(tokenizer, EOT), _token_id(tokenizer, SOT)
    if eot is None or sot is None:
        raise ModelError(f"{where}: the tokenizer has no {EOT if eot is None else SOT} token; "
                         "it is not a Whisper tokenizer")
    vocab = model.config.vocab_size
    if max(eot, sot) >= vocab:
        raise ModelError(f"{where}: the tokenizer's {EOT}={eot} / {SOT}={sot} are outside the model's "
                         f"vocabulary of {vocab}; the tokenizer belongs to another model")
    fixes = []
    for name, config in (("generation_config", model.generation_config), ("config", model.config)):
        eos = _eos_ids(config)
        if eot not in eos:
            if len(eos) > 1:
                raise ModelError(f"{where}: {name}.eos_token_id={eos}, none of them the tokenizer's {EOT} "
                                 f"({eot}); fix the checkpoint's {name}")
            fixes.append(f"{name}.eos_token_id {eos[0] if eos else None} -> {eot} (the tokenizer's {EOT})")
            config.eos_token_id = eot
        if config.decoder_start_token_id != sot:
            fixes.append(f"{name}.decoder_start_token_id {config.decoder_start_token_id} -> {sot} "
                         f"(the tokenizer's {SOT})")
            config.decoder_start_token_id = sot
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = eot  # Whisper pads with the end token
    for fix in fixes:
        log.warning("%s: special token ids disagreed with the tokenizer; fixed %s", where, fix)
    return fixes


def _token_id(tokenizer, token: str) -> int | None:
    """The token's id, None when the tokenizer lacks it (Whisper's unknown token is <|endoftext|> itself)."""
    i = tokenizer.convert_tokens_to_ids(token)
    return None if i is None or (i == tokenizer.unk_token_id and token != tokenizer.unk_token) else int(i)
