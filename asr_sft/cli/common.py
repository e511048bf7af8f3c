"""What the subcommand modules share: parser layout and argument types, and the decoding flags
(`decode` and `bench` take the same ones, declared once here)."""

from __future__ import annotations

import argparse


def parser_kwargs(example: str) -> dict:
    return dict(
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def name_value(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip() or not value.strip():
        from asr_sft.errors import ScoringError

        raise ScoringError(f"{option} wants NAME=VALUE, got {item!r}")
    return name.strip(), value.strip()


def add_decode_flags(p: argparse.ArgumentParser) -> None:
    """The decoding options (asr_sft.models.options.DecodeOptions) as flags."""
    p.add_argument("--batch-size", type=positive_int, default=16, help="utterances per batch at most (default: 16)")
    p.add_argument("--max-batch-seconds", type=positive_float, help="padded audio seconds per batch at most")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--num-beams", type=positive_int, default=1, help="Whisper beam width (default: 1, greedy)")
    p.add_argument("--max-new-tokens", type=positive_int, default=224,
                   help="Whisper: tokens per utterance at most (default: 224)")
    p.add_argument("--language", default="en", help="Whisper prefix language (default: en)")
    p.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="Whisper: no temperature fallback for utterances whose text repeats itself or is "
                        "improbable (on by default, as in openai/whisper)")
    p.add_argument("--variable-length", action=argparse.BooleanOptionalAction, default=None,
                   help="Whisper: encoder windows as long as each batch's longest utterance, not 30 s "
                        "(default: as the checkpoint was trained)")


def decode_options(args, warmup: bool):
    from asr_sft.models.options import DecodeOptions

    return DecodeOptions(batch_size=args.batch_size, max_batch_seconds=args.max_batch_seconds,
                         device=args.device, dtype=args.dtype, num_beams=args.num_beams,
                         max_new_tokens=args.max_new_tokens, language=args.language, warmup=warmup,
                         fallback=args.fallback, variable_length=args.variable_length)
