"""Subcommands that fetch and prepare data: download, prepare, synth, validate, features, split, noisy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_sft.cli.common import parser_kwargs, positive_int


# --- download -------------------------------------------------------------------------------------
def _add_download(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download and verify corpora (resumable, checksummed)",
        **parser_kwargs("asr-sft download librispeech --splits dev-clean,test-clean --dest data/"),
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
        **parser_kwargs("asr-sft prepare librispeech --root data/ --out data/manifests"),
    )
    corpora = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    ls = corpora.add_parser(
        "librispeech", help="LibriSpeech layout (also our synthetic corpora): one manifest per split",
        **parser_kwargs("asr-sft prepare librispeech --root data/ --out data/manifests "
                         "--splits dev-clean,test-clean"),
    )
    ls.add_argument("--root", type=Path, required=True, help="folder containing LibriSpeech/")
    ls.add_argument("--out", type=Path, required=True, help="folder for <split>.jsonl manifests")
    ls.add_argument("--splits", help="comma-separated split names (default: every split found)")
    ls.set_defaults(func=_run_prepare_librispeech)
    folder = corpora.add_parser(
        "folder", help="your own audio folder + TSV/CSV table (columns path, text, ...)",
        **parser_kwargs("asr-sft prepare folder --table data/mine/clips.tsv --audio-root data/mine "
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
        **parser_kwargs("asr-sft prepare fsdd --root ../shared/data/fsdd --out data/manifests"),
    )
    fsdd.add_argument("--root", type=Path, required=True, help="folder with recordings/ and metadata.py")
    fsdd.add_argument("--out", type=Path, required=True, help="folder for the manifests")
    fsdd.add_argument("--split", choices=["train", "test"], help="write only this split")
    fsdd.add_argument("--per-speaker-digit", type=positive_int, default=None,
                      help="keep only the first N recordings of each speaker and digit (a balanced subset)")
    fsdd.set_defaults(func=_run_prepare_fsdd)
    _add_prepare_accented(corpora)


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

    for path in prepare_fsdd(args.root, args.out, split=args.split,
                             per_speaker_digit=args.per_speaker_digit).values():
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
        **parser_kwargs("asr-sft synth --out data/synth --accents en-us,en-gb-scotland "
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
        **parser_kwargs(
            "asr-sft validate data/manifests/dev-clean.jsonl --max-duration 20 "
            "--skip-invalid --out data/manifests/dev-clean.clean.jsonl\n"
            "  asr-sft validate a/train.jsonl b/train.jsonl --out mixed/train.jsonl   (merge)"
        ),
    )
    p.add_argument("manifests", type=Path, nargs="+", metavar="manifest")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip and report bad rows instead of failing")
    p.add_argument("--no-check-audio", action="store_true", help="do not check that audio files exist")
    p.add_argument("--deep", action="store_true",
                   help="also decode every audio file once: it must decode to the end, hold finite samples "
                        "and be as long as its row says (what train checks at start)")
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
        check = manifest.check_manifest(path, check_audio=not args.no_check_audio, deep=args.deep)
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
        **parser_kwargs("asr-sft features data/manifests/dev-clean.jsonl --kind whisper_mel"),
    )
    p.add_argument("manifest", type=Path)
    # asr_sft.features.KINDS, spelled out so that building the parser does not import torch
    p.add_argument("--kind", choices=("whisper_mel", "fbank", "wav2vec2"), default="whisper_mel")
    p.add_argument("--n-mels", type=positive_int, default=80, help="mel bins (whisper_mel, fbank)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="utterances per batch")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N utterances")
    p.set_defaults(func=_run_features)


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


# --- accented corpora (prepare <corpus>), split, noisy -------------------------------------------------
def _add_prepare_accented(corpora) -> None:
    cv = corpora.add_parser(
        "commonvoice", help="Common Voice release (a locale folder with clips/ and *.tsv): one manifest per TSV",
        **parser_kwargs("asr-sft prepare commonvoice --root data/cv-corpus-17.0/en --out data/manifests "
                        "--tsvs train,dev,test"),
    )
    cv.add_argument("--root", type=Path, required=True, help="the locale folder (clips/, train.tsv, ...)")
    cv.add_argument("--out", type=Path, required=True, help="folder for commonvoice_<tsv>.jsonl")
    cv.add_argument("--tsvs", default="train,dev,test", help="TSV names to import (default: train,dev,test)")
    cv.add_argument("--limit", type=positive_int, default=None, help="only the first N rows of each TSV")
    cv.set_defaults(func=_run_prepare_accented)
    l2 = corpora.add_parser(
        "l2arctic", help="L2-ARCTIC (<SPEAKER>/wav, <SPEAKER>/transcript): l2arctic.jsonl, accent = L1",
        **parser_kwargs("asr-sft prepare l2arctic --root data/l2arctic_release_v5.0 --out data/manifests"),
    )
    l2.add_argument("--root", type=Path, required=True, help="folder holding the speaker folders")
    l2.add_argument("--out", type=Path, required=True, help="folder for l2arctic.jsonl")
    l2.add_argument("--speakers", default=None, help="comma-separated speaker folders (default: all)")
    l2.set_defaults(func=_run_prepare_accented)
    ed = corpora.add_parser(
        "edacc", help="EdAcc (edacc_v1.0: data/*.wav, dev/stm, test/stm, linguistic_background.csv)",
        **parser_kwargs("asr-sft prepare edacc --root data/edacc_v1.0 --out data/manifests"),
    )
    ed.add_argument("--root", type=Path, required=True, help="the edacc_v1.0 folder (or its parent)")
    ed.add_argument("--out", type=Path, required=True, help="folder for edacc_dev.jsonl, edacc_test.jsonl")
    ed.add_argument("--splits", default="dev,test", help="(default: dev,test)")
    ed.set_defaults(func=_run_prepare_accented)
    saa = corpora.add_parser(
        "speech-accent-archive", help="Speech Accent Archive (speakers_all.csv + recordings/): saa.jsonl",
        **parser_kwargs("asr-sft prepare speech-accent-archive --root data/speech-accent-archive --out data/manifests"),
    )
    saa.add_argument("--root", type=Path, required=True, help="folder with speakers_all.csv and recordings/")
    saa.add_argument("--out", type=Path, required=True, help="folder for saa.jsonl")
    saa.set_defaults(func=_run_prepare_accented)


def _run_prepare_accented(args) -> int:
    from asr_sft.corpora.prepared import format_skipped

    result = _prepare_accented(args)
    for path in result.manifests.values():
        _print_manifest_summary(path)
    for note in result.notes:
        print(f"note: {note}")
    if result.skipped:
        head, *lines = format_skipped(result.skipped).splitlines()
        print(f"{head.rstrip(':')} (all listed in {result.skipped_file}):")
        print("\n".join(lines))
    return 0


def _prepare_accented(args):
    names = lambda text: tuple(s.strip() for s in text.split(",") if s.strip())  # noqa: E731
    if args.corpus == "commonvoice":
        from asr_sft.corpora.commonvoice import prepare_commonvoice

        return prepare_commonvoice(args.root, args.out, names(args.tsvs), limit=args.limit)
    if args.corpus == "l2arctic":
        from asr_sft.corpora.l2arctic import prepare_l2arctic

        return prepare_l2arctic(args.root, args.out, names(args.speakers) if args.speakers else None)
    if args.corpus == "edacc":
        from asr_sft.corpora.edacc import prepare_edacc

        return prepare_edacc(args.root, args.out, names(args.splits))
    from asr_sft.corpora.speech_accent_archive import prepare_speech_accent_archive

    return prepare_speech_accent_archive(args.root, args.out)


def _add_split(sub) -> None:
    p = sub.add_parser(
        "split",
        help="speaker-disjoint train/dev/test per accent (or any field), with minimum sizes and training caps",
        **parser_kwargs("asr-sft split data/manifests/l2arctic.jsonl --out data/l2arctic_split "
                        "--fractions train=0.5,dev=0.25,test=0.25 --text-overlap partition "
                        "--train-caps 10m,1h"),
    )
    p.add_argument("manifests", type=Path, nargs="+", metavar="manifest", help="rows to split (ids unique across them)")
    p.add_argument("--out", type=Path, required=True, help="folder for train/dev/test.jsonl, train_cap-*.jsonl, split_summary.json")
    p.add_argument("--group-by", default="accent", help="row field or custom key to group by (default: accent)")
    p.add_argument("--fractions", default="train=0.8,dev=0.1,test=0.1",
                   help="share of each group's speakers per split (default: train=0.8,dev=0.1,test=0.1)")
    p.add_argument("--min-speakers", default="1",
                   help="per group and split: N for every split, or train=N,dev=N,test=N (default: 1)")
    p.add_argument("--min-minutes", default="0",
                   help="per group and split: M for every split, or train=M,dev=M,test=M (default: 0)")
    p.add_argument("--text-overlap", choices=("drop-train", "partition", "allow"), default="drop-train",
                   help="sentences in both train and dev/test: drop them from train (default), give each "
                        "to one side (partition: read-prompt corpora such as L2-ARCTIC), or allow them")
    p.add_argument("--train-caps", default="", help="nested training subsets per group, e.g. 10m,1h,10h")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--no-check-audio", action="store_true", help="do not check that audio files exist")
    p.set_defaults(func=_run_split)


def _run_split(args) -> int:
    from asr_sft.data.splits import SPLITS, SUMMARY_FILE, SplitOptions, write_splits

    options = SplitOptions(
        group_by=args.group_by, fractions=_per_split(args.fractions, "--fractions", float, SPLITS, every=False),
        min_speakers=_per_split(args.min_speakers, "--min-speakers", int, SPLITS),
        min_minutes=_per_split(args.min_minutes, "--min-minutes", float, SPLITS),
        text_overlap=args.text_overlap, seed=args.seed,
        train_caps=tuple(c.strip() for c in args.train_caps.split(",") if c.strip()),
    )
    summary = write_splits(args.manifests, args.out, options, check_audio=not args.no_check_audio)
    print(summary.format_table())
    for line in summary.left_out:
        print(f"left out: {line}")
    if options.text_overlap == "allow" and summary.shared_sentences:
        print(f"note: {summary.shared_sentences} sentence(s) are in both train and dev/test (--text-overlap allow)")
    print(f"wrote {', '.join(summary.manifests.values())}, {args.out / SUMMARY_FILE}")
    return 0


def _per_split(text: str, option: str, kind, splits, every: bool = True) -> tuple:
    """'2' -> every split 2 (when `every`); 'train=2,test=1' -> those splits."""
    from asr_sft.errors import OptionError

    try:
        if every and "=" not in text:
            return tuple((s, kind(text)) for s in splits)
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return tuple((name.strip(), kind(value)) for name, value in pairs)
    except ValueError as err:
        raise OptionError(f"{option} wants {'N or ' if every else ''}split=N pairs, got {text!r}") from err


def _add_noisy(sub) -> None:
    p = sub.add_parser(
        "noisy",
        help="noisy copies of a test set at fixed SNRs (one manifest per SNR)",
        **parser_kwargs("asr-sft noisy --manifest data/manifests/test.jsonl --snrs 20,10,5,0 "
                        "--noise white --out data/noisy"),
    )
    p.add_argument("--manifest", type=Path, required=True, help="the clean test set")
    p.add_argument("--snrs", required=True, help="comma-separated SNRs in dB, e.g. 20,10,5,0")
    p.add_argument("--noise", required=True,
                   help="white, pink, babble (from the manifest's other utterances), or comma-separated noise files")
    p.add_argument("--out", type=Path, required=True, help="folder for <noise>_snr<N>dB.jsonl and audio")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.set_defaults(func=_run_noisy)


def _run_noisy(args) -> int:
    from asr_sft.data.augment import NOISY_SUMMARY, make_noisy_sets
    from asr_sft.errors import OptionError

    try:
        snrs = [float(s) for s in args.snrs.split(",") if s.strip()]
    except ValueError as err:
        raise OptionError(f"--snrs wants numbers such as 20,10,5,0, got {args.snrs!r}") from err
    noise = [n.strip() for n in args.noise.split(",") if n.strip()]
    sets = make_noisy_sets(args.manifest, snrs, noise, args.out, seed=args.seed)
    print(f"{'snr_db':>7} {'utterances':>10} {'measured':>9}  manifest")
    for s in sets:
        print(f"{s.snr_db:>7g} {s.utterances:>10} {s.mean_measured_snr_db:>9.2f}  {s.manifest}")
    print(f"summary: {args.out / NOISY_SUMMARY}")
    return 0


SUBCOMMANDS = [_add_download, _add_prepare, _add_synth, _add_validate, _add_features, _add_split, _add_noisy]
