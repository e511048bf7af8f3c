"""Subcommands that make or convert models: init-model, convert, export, merge-adapter."""

from __future__ import annotations

from pathlib import Path

from asr_sft.cli.common import parser_kwargs


# --- init-model -----------------------------------------------------------------------------------
def _add_init_model(sub) -> None:
    p = sub.add_parser(
        "init-model",
        help="write a randomly initialised model + processor to a folder (offline stand-in for a hub id)",
        **parser_kwargs("asr-sft init-model --arch wav2vec2 --size small --out exp/models/w2v-small "
                         "--vocab-from data/manifests/train.jsonl"),
    )
    p.add_argument("--arch", choices=["wav2vec2", "whisper"], required=True)
    p.add_argument("--size", choices=["tiny", "small", "base"], default="tiny",
                   help="tiny: tests; small: ~5 M (wav2vec2) / ~20 M (whisper), CPU-trainable; "
                        "base: wav2vec2-base / whisper-base shape (default: tiny)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (must not exist or be empty)")
    p.add_argument("--vocab-from", type=Path, help="wav2vec2: manifest whose transcripts give the characters")
    p.add_argument("--tokenizer", help="whisper: folder (or checkpoint) with a multilingual WhisperTokenizer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(func=_run_init_model)


def _run_init_model(args) -> int:
    from asr_sft.errors import ModelError

    if args.arch == "wav2vec2":
        from asr_sft.data.manifest import read_manifest
        from asr_sft.models.ctc import init_ctc_model

        if args.vocab_from is None:
            raise ModelError("--arch wav2vec2 needs --vocab-from MANIFEST (its transcripts give the vocabulary)")
        texts = [r["text"] for r in read_manifest(args.vocab_from, check_audio=False)]
        out = init_ctc_model(args.out, args.size, texts=texts, seed=args.seed, overwrite=args.overwrite)
    else:
        from asr_sft.models.whisper import init_whisper_model

        if args.tokenizer is None:
            raise ModelError("--arch whisper needs --tokenizer DIR (a folder with a Whisper tokenizer)")
        out = init_whisper_model(args.out, args.size, tokenizer_dir=args.tokenizer, seed=args.seed,
                                 overwrite=args.overwrite)
    print(f"wrote a random {args.size} {args.arch} model to {out}")
    return 0



# --- convert --------------------------------------------------------------------------------------
def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a CTranslate2 (faster-whisper) Whisper folder into a Hugging Face folder",
        **parser_kwargs("asr-sft convert --ct2 ~/models/faster-whisper-small.en --out exp/models/small.en"),
    )
    p.add_argument("--ct2", type=Path, required=True,
                   help="folder with model.bin, config.json and tokenizer.json (float16/float32; int8 and "
                        "int16 weights are dequantised to float32)")
    p.add_argument("--out", type=Path, required=True, help="Hugging Face folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    from asr_sft.models.convert.ctranslate2 import ct2_to_hf

    out = ct2_to_hf(args.ct2, args.out, overwrite=args.overwrite)
    print(f"wrote a Hugging Face Whisper folder to {out} (load it with --model {out})")
    return 0


# --- export ---------------------------------------------------------------------------------------
# asr_sft.models.convert.export.QUANTIZATIONS, spelled out so that building the parser imports no torch
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
                 "float32")


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a Whisper model or fine-tuned checkpoint for serving (CTranslate2 / faster-whisper)",
        **parser_kwargs("asr-sft export --model exp/demo/adapt/checkpoints/best --format ct2 "
                        "--quantization int8 --out exp/demo/ct2"),
    )
    p.add_argument("--model", required=True,
                   help="model folder, checkpoint pointer (exp/run/checkpoints/best) or builtin:<name>")
    p.add_argument("--format", choices=["ct2"], default="ct2", help="ct2: CTranslate2, as faster-whisper loads")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                   help="weight type of the export (default: as the model's weights)")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from asr_sft.models.convert.export import export_ct2
    from asr_sft.models.resolve import resolve_model

    out = export_ct2(resolve_model(args.model), args.out, quantization=args.quantization,
                     overwrite=args.overwrite)
    print(f"wrote a CTranslate2 model to {out}: faster_whisper.WhisperModel({str(out)!r}) serves it")
    return 0


# --- merge-adapter --------------------------------------------------------------------------------
def _add_merge_adapter(sub) -> None:
    p = sub.add_parser(
        "merge-adapter",
        help="fold a LoRA checkpoint's adapter into its base: an ordinary checkpoint (to export or train on)",
        **parser_kwargs("asr-sft merge-adapter --adapter exp/run/checkpoints/best --out exp/run/merged"),
    )
    p.add_argument("--adapter", required=True, help="LoRA checkpoint folder (or a checkpoints/best pointer)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(func=_run_merge_adapter)


def _run_merge_adapter(args) -> int:
    from asr_sft.models.lora import merge_adapter

    out = merge_adapter(args.adapter, args.out, overwrite=args.overwrite)
    print(f"wrote the merged model to {out} (use it with --model {out})")
    return 0


SUBCOMMANDS = [_add_init_model, _add_convert, _add_export, _add_merge_adapter]
