"""The `asr-sft` command line. The only module (with recipes) that parses arguments.

Each subcommand has one `_add_<name>` function that declares its arguments (with an example in the
epilog) and one `_run_<name>` function that calls the library. Library errors (AsrSftError) are
printed as one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_sft.errors import AsrSftError


def _parser_kwargs(example: str) -> dict:
    return dict(
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# --- download -------------------------------------------------------------------------------------
def _add_download(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download and verify corpora (resumable, checksummed)",
        **_parser_kwargs("asr-sft download librispeech --splits dev-clean,test-clean --dest data/"),
    )
    p.add_argument("corpus", choices=["librispeech"], help="which corpus")
    p.add_argument("--splits", required=True,
                   help="comma-separated split names, e.g. dev-clean,test-clean")
    p.add_argument("--dest", type=Path, default=Path("data"),
                   help="folder for the archives and the extracted corpus (default: data)")
    p.add_argument("--mirror", default=None,
                   help="base URL to fetch from instead of the default; overrides $ASR_SFT_MIRROR")
    p.add_argument("--no-extract", dest="extract", action="store_false",
                   help="download and verify only")
    p.set_defaults(func=_run_download)


def _run_download(args) -> int:
    from asr_sft.corpora.librispeech import download_librispeech

    for result in download_librispeech(args.splits, args.dest, mirror=args.mirror,
                                       extract=args.extract):
        print(result.describe())
    return 0


# --- prepare --------------------------------------------------------------------------------------
def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a corpus on disk into manifests",
        **_parser_kwargs("asr-sft prepare librispeech --root data/ --out data/manifests"),
    )
    corpora = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    ls = corpora.add_parser(
        "librispeech", help="LibriSpeech layout (also our synthetic corpora): one manifest per split",
        **_parser_kwargs("asr-sft prepare librispeech --root data/ --out data/manifests "
                         "--splits dev-clean,test-clean"),
    )
    ls.add_argument("--root", type=Path, required=True, help="folder containing LibriSpeech/")
    ls.add_argument("--out", type=Path, required=True, help="folder for <split>.jsonl manifests")
    ls.add_argument("--splits", help="comma-separated split names (default: every split found)")
    ls.set_defaults(func=_run_prepare_librispeech)
    folder = corpora.add_parser(
        "folder", help="your own audio folder + TSV/CSV table (columns path, text, ...)",
        **_parser_kwargs("asr-sft prepare folder --table data/mine/clips.tsv --audio-root data/mine "
                         "--out data/manifests/mine.jsonl --corpus mine"),
    )
    folder.add_argument("--table", type=Path, required=True, help=".tsv or .csv with a header row")
    folder.add_argument("--audio-root", type=Path, required=True, help="folder the paths are relative to")
    folder.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    folder.add_argument("--corpus", default="custom", help="corpus name stored in every row")
    folder.add_argument("--skip-invalid", action="store_true",
                        help="skip bad rows (and list them) instead of failing")
    folder.set_defaults(func=_run_prepare_folder)
    fsdd = corpora.add_parser(
        "fsdd", help="Free Spoken Digit Dataset: fsdd_train.jsonl and fsdd_test.jsonl",
        **_parser_kwargs("asr-sft prepare fsdd --root ../shared/data/fsdd --out data/manifests"),
    )
    fsdd.add_argument("--root", type=Path, required=True, help="folder with recordings/ and metadata.py")
    fsdd.add_argument("--out", type=Path, required=True, help="folder for the manifests")
    fsdd.add_argument("--split", choices=["train", "test"], help="write only this split")
    fsdd.set_defaults(func=_run_prepare_fsdd)


def _run_prepare_librispeech(args) -> int:
    from asr_sft.corpora.librispeech import prepare_librispeech

    splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
    for path in prepare_librispeech(args.root, args.out, splits).values():
        _print_manifest_summary(path)
    return 0


def _run_prepare_folder(args) -> int:
    from asr_sft.corpora.folder import import_table

    result = import_table(args.table, args.audio_root, args.out, corpus=args.corpus,
                          skip_invalid=args.skip_invalid)
    _print_manifest_summary(result.manifest)
    if result.skipped:
        print(f"skipped {len(result.skipped)} invalid row(s):")
        for reason in result.skipped:
            print(f"  {reason}")
    return 0


def _run_prepare_fsdd(args) -> int:
    from asr_sft.corpora.fsdd import prepare_fsdd

    for path in prepare_fsdd(args.root, args.out, split=args.split).values():
        _print_manifest_summary(path)
    return 0


def _print_manifest_summary(path: Path) -> None:
    from asr_sft.data.manifest import read_manifest

    rows = read_manifest(path, check_audio=False)  # just written and checked
    hours = sum(r["duration"] for r in rows) / 3600
    speakers = len({r["speaker"] for r in rows if r["speaker"] is not None})
    print(f"{path}: {len(rows)} utterances, {hours:.3f} h, "
          + (f"{speakers} speakers" if speakers else "speakers unknown"))


# --- synth ----------------------------------------------------------------------------------------
def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="synthesize a LibriSpeech-layout corpus with espeak-ng",
        **_parser_kwargs("asr-sft synth --out data/synth --accents en-us,en-gb-scotland "
                         "--speakers-per-accent 4 --utterances-per-speaker 10 --pack dev,test "
                         "--pack-dir data/archives"),
    )
    p.add_argument("--out", type=Path, required=True, help="corpus folder (LibriSpeech/ and manifests/)")
    p.add_argument("--accents", default="en-us",
                   help="comma-separated espeak-ng English voices, e.g. en-us,en-gb,en-gb-scotland,"
                        "en-gb-x-rp,en-gb-x-gbclan,en-gb-x-gbcwmd,en-029,en-us-nyc (default: en-us)")
    p.add_argument("--speakers-per-accent", type=int, default=4, help="(default: 4)")
    p.add_argument("--utterances-per-speaker", type=int, default=10, help="(default: 10)")
    p.add_argument("--chapters-per-speaker", type=int, default=1, help="(default: 1)")
    p.add_argument("--splits", default="train=0.8,dev=0.1,test=0.1", type=_parse_synth_splits,
                   help="speakers of each accent per split: fractions, or whole counts summing to "
                        "--speakers-per-accent (default: train=0.8,dev=0.1,test=0.1)")
    p.add_argument("--sentence-seed", type=int, default=None,
                   help="seed of the sentence generator (default: --seed)")
    p.add_argument("--sentence-offset", type=int, default=0,
                   help="skip the generator's first N sentences for this seed (e.g. a base model's "
                        "training text) (default: 0)")
    p.add_argument("--sentences", type=Path, default=None,
                   help="text file, one sentence per line (Harvard '\"text\",' lines accepted); "
                        "default: the built-in sentence generator")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz (default: 16000)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--num-workers", type=int, default=1,
                   help="worker processes; the output is identical for any number (default: 1)")
    p.add_argument("--pack", default=None,
                   help="comma-separated splits to pack as LibriSpeech-style <split>.tar.gz")
    p.add_argument("--pack-dir", type=Path, default=None,
                   help="folder for the archives and their .sha256/.md5 (default: <out>/archives)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from asr_sft.corpora.synthetic.pack import pack_split
    from asr_sft.corpora.synthetic.synth import SynthOptions, synthesize_corpus

    options = SynthOptions(
        accents=tuple(a.strip() for a in args.accents.split(",") if a.strip()),
        speakers_per_accent=args.speakers_per_accent,
        utterances_per_speaker=args.utterances_per_speaker,
        chapters_per_speaker=args.chapters_per_speaker,
        splits=args.splits,
        sentences=None if args.sentences is None else str(args.sentences),
        sentence_offset=args.sentence_offset,
        sentence_seed=args.sentence_seed,
        sample_rate=args.sample_rate,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    result = synthesize_corpus(args.out, options)
    _print_synth_summary(result)
    for split in [s.strip() for s in (args.pack or "").split(",") if s.strip()]:
        archive = pack_split(args.out, split, args.pack_dir or args.out / "archives")
        print(f"packed {archive.path} ({archive.size / 1e6:.1f} MB) sha256 {archive.sha256} md5 {archive.md5}")
    return 0


def _parse_synth_splits(text: str) -> tuple[tuple[str, float], ...]:
    """'train=0.8,dev=0.1,test=0.1' -> fractions; 'train=2,dev=1,test=1' -> whole counts."""
    pairs = []
    for item in [s.strip() for s in text.split(",") if s.strip()]:
        name, sep, value = item.partition("=")
        try:
            number = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            number = None
        if not sep or not name.strip() or number is None:
            raise argparse.ArgumentTypeError(f"want name=value pairs, got {item!r}")
        pairs.append((name.strip(), number))
    if any(isinstance(v, float) for _, v in pairs):  # one fraction makes them all fractions
        pairs = [(n, float(v)) for n, v in pairs]
    return tuple(pairs)


def _print_synth_summary(result) -> None:
    from collections import defaultdict

    groups = defaultdict(lambda: [set(), 0, 0.0])  # (split, accent) -> speakers, utterances, seconds
    for row in result.rows:
        group = groups[row["split"], row["accent"]]
        group[0].add(row["speaker"])
        group[1] += 1
        group[2] += row["duration"]
    print(f"{'split':<12} {'accent':<16} {'speakers':>8} {'utterances':>10} {'hours':>8}")
    for (split, accent), (speakers, count, seconds) in groups.items():
        print(f"{split:<12} {accent:<16} {len(speakers):>8} {count:>10} {seconds / 3600:>8.3f}")
    total = sum(g[2] for g in groups.values())
    print(f"{'total':<12} {'':<16} {sum(len(g[0]) for g in groups.values()):>8} "
          f"{len(result.rows):>10} {total / 3600:>8.3f}")
    print(f"manifests: {', '.join(str(p) for p in result.manifests.values())}")
    if result.synthesized == 0:
        print(f"{result.corpus_dir}: already complete, nothing synthesized")
    else:
        speed = result.synthesized_seconds / max(result.wall_seconds, 1e-9)
        print(f"synthesized {result.synthesized} utterances ({result.synthesized_seconds / 60:.1f} min of audio) "
              f"in {result.wall_seconds:.1f} s: {speed:.0f}x real time")


# --- validate -------------------------------------------------------------------------------------
def _add_validate(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="validate (and optionally filter, or merge) manifests",
        **_parser_kwargs(
            "asr-sft validate data/manifests/dev-clean.jsonl --max-duration 20 "
            "--skip-invalid --out data/manifests/dev-clean.clean.jsonl\n"
            "  asr-sft validate a/train.jsonl b/train.jsonl --out mixed/train.jsonl   (merge)"
        ),
    )
    p.add_argument("manifests", type=Path, nargs="+", metavar="manifest")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip and report bad rows instead of failing")
    p.add_argument("--no-check-audio", action="store_true", help="do not check that audio files exist")
    p.add_argument("--min-duration", type=float, default=0.0, help="seconds")
    p.add_argument("--max-duration", type=float, default=None, help="seconds")
    p.add_argument("--max-chars-per-second", type=float, default=None)
    p.add_argument("--out", type=Path, default=None, help="write the valid, filtered rows here")
    p.set_defaults(func=_run_validate)


def _run_validate(args) -> int:
    from asr_sft.data import manifest

    options = manifest.FilterOptions(args.min_duration, args.max_duration, args.max_chars_per_second)
    kept = []
    for path in args.manifests:
        check = manifest.check_manifest(path, check_audio=not args.no_check_audio)
        if check.problems and not args.skip_invalid:
            raise manifest.ManifestError(manifest.format_problems(path, check.problems))
        if check.problems:
            print(manifest.format_problems(path, check.problems), file=sys.stderr)
        rows, dropped = manifest.filter_rows(check.rows, options)
        for row, reason in dropped:
            print(f"filtered {row['id']}: {reason}", file=sys.stderr)
        hours = sum(r["duration"] for r in rows) / 3600
        print(f"{path}: {check.lines} rows, {len(check.rows)} valid, {len(dropped)} filtered, "
              f"{len(rows)} kept ({hours:.3f} h)")
        kept += rows
    if args.out:  # one manifest of every kept row; ids must be unique across the inputs
        manifest.write_manifest(args.out, kept, check_audio=not args.no_check_audio)
        print(f"wrote {args.out} ({len(kept)} rows)")
    return 0


# --- features -------------------------------------------------------------------------------------
def _add_features(sub) -> None:
    p = sub.add_parser(
        "features",
        help="extract features for a manifest and print a summary",
        **_parser_kwargs("asr-sft features data/manifests/dev-clean.jsonl --kind whisper_mel"),
    )
    p.add_argument("manifest", type=Path)
    # asr_sft.features.KINDS, spelled out so that building the parser does not import torch
    p.add_argument("--kind", choices=("whisper_mel", "fbank", "wav2vec2"), default="whisper_mel")
    p.add_argument("--n-mels", type=_count, default=80, help="mel bins (whisper_mel, fbank)")
    p.add_argument("--batch-size", type=_count, default=16, help="utterances per batch")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--limit", type=_count, default=None, help="only the first N utterances")
    p.set_defaults(func=_run_features)


def _count(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run_features(args) -> int:
    from asr_sft.data import features
    from asr_sft.data import manifest

    rows = manifest.read_manifest(args.manifest)[: args.limit]
    s = features.summarize_features(rows, args.kind, args.n_mels, args.batch_size, args.device)
    dims = "" if args.kind == "wav2vec2" else f" ({args.n_mels} mel bins)"
    unit = "samples" if args.kind == "wav2vec2" else "frames"
    frames = f"{s.min_frames}" if s.min_frames == s.max_frames else f"{s.min_frames}-{s.max_frames}"
    print(f"{args.manifest}: {args.kind}{dims} on {s.device}, batch size {args.batch_size}")
    print(f"  utterances       {s.utterances}")
    print(f"  audio            {s.audio_seconds:.1f} s ({s.audio_seconds / 3600:.3f} h)")
    print(f"  shape            {frames} x {s.dims} per utterance ({unit} x dims)")
    print(f"  mean / std       {s.mean:.4f} / {s.std:.4f}")
    print(f"  time             {s.total_seconds:.2f} s (loading {s.load_seconds:.2f} s, "
          f"features {s.feature_seconds:.2f} s)")
    print(f"  speed            {s.audio_seconds_per_second:.1f} audio-s/s "
          f"(features alone {s.feature_audio_seconds_per_second:.1f} audio-s/s)")
    return 0


# --- init-model -----------------------------------------------------------------------------------
def _add_init_model(sub) -> None:
    p = sub.add_parser(
        "init-model",
        help="write a randomly initialised model + processor to a folder (offline stand-in for a hub id)",
        **_parser_kwargs("asr-sft init-model --arch wav2vec2 --size small --out exp/models/w2v-small "
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


# --- decode ---------------------------------------------------------------------------------------
def _add_decode(sub) -> None:
    p = sub.add_parser(
        "decode",
        help="transcribe a manifest with a CTC or Whisper checkpoint into hyps.jsonl",
        **_parser_kwargs("asr-sft decode --model exp/run/checkpoints/best --manifest "
                         "data/manifests/test-clean.jsonl --out exp/run/decode/test-clean"),
    )
    p.add_argument("--model", required=True, help="checkpoint folder or hub id (CTC or Whisper)")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for hyps.jsonl and decode.json")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per batch at most (default: 16)")
    p.add_argument("--max-batch-seconds", type=float, help="padded audio seconds per batch at most")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--num-beams", type=int, default=1, help="Whisper beam width (default: 1, greedy)")
    p.add_argument("--max-new-tokens", type=int, default=224, help="Whisper: tokens per utterance at most")
    p.add_argument("--language", default="en", help="Whisper prefix language (default: en)")
    p.add_argument("--warmup", action="store_true", help="decode the first batch once before timing")
    p.set_defaults(func=_run_decode)


def _run_decode(args) -> int:
    import json

    from asr_sft.evaluation.decode import SUMMARY_NAME, DecodeOptions, decode_manifest

    options = DecodeOptions(batch_size=args.batch_size, max_batch_seconds=args.max_batch_seconds,
                            device=args.device, dtype=args.dtype, num_beams=args.num_beams,
                            max_new_tokens=args.max_new_tokens, language=args.language, warmup=args.warmup)
    hyps = decode_manifest(args.model, args.manifest, args.out, options)
    s = json.loads((hyps.parent / SUMMARY_NAME).read_text(encoding="utf-8"))
    print(f"wrote {hyps}: {s['utterances']} utterances, {s['audio_seconds']:.1f} s of audio on {s['device']}; "
          f"loading {s['load_seconds']:.2f} s, decoding {s['decode_seconds']:.2f} s (RTFx {s['rtfx'] or 0:.1f})")
    return 0


# --- train ----------------------------------------------------------------------------------------
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a CTC model (resumes from the latest checkpoint in train.output_dir)",
        **_parser_kwargs(
            "asr-sft train --config recipes/librispeech/conf/wav2vec2_base_100h.toml "
            "train.output_dir=exp/w2v optim.lr=1e-4\n"
            "  accelerate launch --num_processes 2 -m asr_sft.cli train --config X.toml   (DDP)"
        ),
    )
    p.add_argument("--config", type=Path, default=None, help="TOML config (see asr_sft/config.py)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override single config values; unknown keys are rejected")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    import json
    import logging

    from asr_sft.training.config import config_to_dict, load_config

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=2))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from asr_sft.training.loop import train

    result = train(config)
    print(f"trained {result.steps} steps; best dev WER {result.best_wer:.2%} at {result.best_checkpoint}")
    return 0


# --- score ----------------------------------------------------------------------------------------
def _add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score a decode output: WER/CER with S/D/I, icefall-style recogs/errs/wer-summary + wer.json",
        **_parser_kwargs("asr-sft score --hyps exp/run/decode/test-clean/hyps.jsonl "
                         "--normalizer librispeech --out exp/run/decode/test-clean"),
    )
    p.add_argument("--hyps", type=Path, required=True,
                   help="hypotheses: hyps.jsonl (from asr-sft decode), Kaldi text or sclite .trn")
    p.add_argument("--manifest", type=Path, default=None,
                   help="references by id from this manifest (needed unless --hyps is a hyps.jsonl with refs)")
    p.add_argument("--normalizer", default="librispeech",
                   help="text normaliser: whisper_en, whisper_basic, librispeech, none (default: librispeech, "
                        "as the training loop's dev WER)")
    p.add_argument("--out", type=Path, required=True, help="folder for the score files")
    p.add_argument("--name", default=None,
                   help="name in file names and the summary (default: the folder of hyps.jsonl, or the "
                        "file's stem)")
    p.set_defaults(func=_run_score)


def _run_score(args) -> int:
    from asr_sft.evaluation.benchmark import score_file
    from asr_sft.evaluation.report import summary_line, write_score_files

    name = args.name or (args.hyps.parent.name if args.hyps.name == "hyps.jsonl" else args.hyps.stem) or "test"
    scores = score_file(args.hyps, args.manifest, normalizer=args.normalizer)
    info = {"hyps": str(args.hyps.absolute()),
            "manifest": None if args.manifest is None else str(args.manifest.absolute())}
    write_score_files(args.out, scores, name, info)
    print(summary_line(name, scores))
    return 0


# --- bench ----------------------------------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="compare systems on test sets: WER with intervals, groups, paired tests, speed, report.md",
        **_parser_kwargs("asr-sft bench --system base=exp/base --system tuned=exp/tuned "
                         "--system whisper=hyps.trn --testset clean=m1.jsonl --testset accented=m2.jsonl "
                         "--normalizer whisper_en --group-by speaker,accent --out exp/bench"),
    )
    p.add_argument("--system", action="append", required=True, metavar="NAME=PATH",
                   help="repeatable. PATH: a model folder, hub id or builtin:<name> (decoded here), or a "
                        "hypothesis file (hyps.jsonl, Kaldi text, sclite .trn) holding every test set's "
                        "utterances; NAME@TESTSET=FILE gives one test set's hypotheses")
    p.add_argument("--testset", action="append", required=True, metavar="NAME=MANIFEST", help="repeatable")
    p.add_argument("--out", type=Path, required=True, help="folder for results.json, report.md, ...")
    p.add_argument("--normalizer", default="whisper_en",
                   help="whisper_en, whisper_basic, librispeech or none (default: whisper_en); raw WER "
                        "(none) is always reported beside it")
    p.add_argument("--group-by", default="accent,gender,corpus,duration_bucket",
                   help="comma-separated manifest fields to break WER down by ('' for none; default: "
                        "accent,gender,corpus,duration_bucket)")
    p.add_argument("--resamples", type=_count, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--min-speakers", type=int, default=5,
                   help="flag groups with fewer speakers (default: 5)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.add_argument("--batch-size", type=_count, default=16, help="decoding: utterances per batch (default: 16)")
    p.add_argument("--max-batch-seconds", type=float, help="decoding: padded audio seconds per batch at most")
    p.add_argument("--device", default="auto", help="decoding: auto, cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--num-beams", type=_count, default=1, help="Whisper beam width (default: 1, greedy)")
    p.add_argument("--max-new-tokens", type=_count, default=224, help="Whisper: tokens per utterance at most")
    p.add_argument("--language", default="en", help="Whisper prefix language (default: en)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="do not decode a warm-up batch before timing (RTFx then includes start-up costs)")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    import logging

    from asr_sft.evaluation.benchmark import BenchOptions, run_benchmark
    from asr_sft.errors import ScoringError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testsets = dict(_name_value(item, "--testset") for item in args.testset)
    if len(testsets) < len(args.testset):
        raise ScoringError("a --testset name is given twice")
    options = BenchOptions(normalizer=args.normalizer, group_by=tuple(f.strip() for f in args.group_by.split(",")
                                                                      if f.strip()),
                           resamples=args.resamples, seed=args.seed, min_speakers=args.min_speakers,
                           plots=args.plots)
    systems = _bench_systems(args.system)
    decode_options = None
    if any(s.model for s in systems):
        from asr_sft.evaluation.decode import DecodeOptions

        decode_options = DecodeOptions(batch_size=args.batch_size, max_batch_seconds=args.max_batch_seconds,
                                       device=args.device, dtype=args.dtype, num_beams=args.num_beams,
                                       max_new_tokens=args.max_new_tokens, language=args.language,
                                       warmup=args.warmup)
    results = run_benchmark(systems, testsets, args.out, options, decode_options)
    for r in results["results"]:
        s, i = r["summary"], r["interval"]
        rtfx = f", RTFx {r['speed']['rtfx']:.1f}" if r["speed"] and r["speed"]["rtfx"] else ""
        print(f"{r['testset']} {r['system']}: WER {100 * s['wer']:.2f}% [{100 * i['low']:.2f}, "
              f"{100 * i['high']:.2f}] (raw {100 * r['raw']['wer']:.2f}%), CER {100 * s['cer']:.2f}%{rtfx}"
              if s["wer"] is not None else f"{r['testset']} {r['system']}: no reference words")
    for p in results["paired"]:
        print(f"{p['testset']} {p['system_a']} vs {p['system_b']}: {p['verdict']}")
    for w in results["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"report: {args.out / 'report.md'}; everything: {args.out / 'results.json'}")
    return 0


def _name_value(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip() or not value.strip():
        from asr_sft.errors import ScoringError

        raise ScoringError(f"{option} wants NAME=VALUE, got {item!r}")
    return name.strip(), value.strip()


def _bench_systems(items: list[str]) -> list:
    """--system values -> benchmark Systems: an existing file (or NAME@TESTSET=FILE) is hypotheses,
    as is a decode folder (hyps.jsonl, no config.json); anything else is a model (folder, hub id,
    builtin:<name>, or a checkpoints/best pointer)."""
    from asr_sft.evaluation.benchmark import ALL_TESTSETS, System
    from asr_sft.errors import ScoringError
    from asr_sft.models.resolve import follow_pointer

    def hyp_file(path: str) -> str | None:
        folder = Path(path)
        if folder.is_dir() and (folder / "hyps.jsonl").is_file() and not (folder / "config.json").exists():
            return str(folder / "hyps.jsonl")
        return path if folder.is_file() and follow_pointer(folder) is None else None

    models: dict[str, str] = {}
    files: dict[str, list[tuple[str, str]]] = {}
    for item in items:
        key, path = _name_value(item, "--system")
        name, at, testset = key.partition("@")
        if at:
            if hyp_file(path) is None:
                raise ScoringError(f"--system {item}: no hypothesis file {path}")
            files.setdefault(name, []).append((testset, hyp_file(path)))
        elif hyp_file(path):
            files.setdefault(name, []).append((ALL_TESTSETS, hyp_file(path)))
        elif name in models:
            raise ScoringError(f"--system {name}: two models given")
        else:
            models[name] = path
    names = list(dict.fromkeys([_name_value(i, "--system")[0].partition("@")[0] for i in items]))
    return [System(n, model=models.get(n), hyp_files=tuple(files.get(n, ()))) for n in names]


# --------------------------------------------------------------------------------------------------
_SUBCOMMANDS = [_add_download, _add_prepare, _add_synth, _add_validate, _add_features, _add_init_model, _add_decode,
               _add_score, _add_bench,
               _add_train]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-sft",
        description="Supervised fine-tuning of speech recognition models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AsrSftError as err:
        print(f"asr-sft {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
