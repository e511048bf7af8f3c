"""Subcommands that decode and score: decode (also routed between adapters), score, bench, pseudo-label."""

from __future__ import annotations

import sys
from pathlib import Path

from asr_sft.cli.common import add_decode_flags, decode_options, name_value, parser_kwargs, positive_int


# --- decode ---------------------------------------------------------------------------------------
def _add_decode(sub) -> None:
    p = sub.add_parser(
        "decode",
        help="transcribe a manifest with a CTC or Whisper checkpoint into hyps.jsonl",
        **parser_kwargs("asr-sft decode --model exp/run/checkpoints/best --manifest "
                         "data/manifests/test-clean.jsonl --out exp/run/decode/test-clean"),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="checkpoint folder or hub id (CTC or Whisper)")
    which.add_argument("--adapters", metavar="GROUP=DIR,...",
                       help="LoRA adapters by group: each utterance is decoded with the adapter of its "
                            "--route-by value (asr_sft/evaluation/routing.py); hyps.jsonl says which per row")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for hyps.jsonl and decode.json")
    p.add_argument("--route-by", default="accent", help="with --adapters: the row field that picks the adapter "
                                                        "(default: accent)")
    p.add_argument("--fallback", dest="fallback_model", default=None, metavar="MODEL",
                   help="with --adapters: model for groups without an adapter, e.g. a pooled adapter "
                        "(default: the adapters' base model; not --no-fallback, the temperature fallback)")
    p.add_argument("--group", "--accent", dest="route_group", default=None, metavar="GROUP",
                   help="with --adapters: decode every utterance with this group's adapter")
    add_decode_flags(p)
    p.add_argument("--warmup", action="store_true", help="decode the first batch once before timing")
    p.set_defaults(func=_run_decode)


def _run_decode(args) -> int:
    import json

    from asr_sft.evaluation.decode import SUMMARY_NAME, decode_manifest

    options = decode_options(args, warmup=args.warmup)
    if args.adapters is not None:
        return _run_routed(args, options)
    if args.fallback_model is not None or args.route_group is not None:
        from asr_sft.errors import OptionError

        raise OptionError("--fallback and --group/--accent route between --adapters; give --adapters")
    hyps = decode_manifest(args.model, args.manifest, args.out, options)
    s = json.loads((hyps.parent / SUMMARY_NAME).read_text(encoding="utf-8"))
    print(f"wrote {hyps}: {s['utterances']} utterances, {s['audio_seconds']:.1f} s of audio on {s['device']}; "
          f"loading {s['load_seconds']:.2f} s, decoding {s['decode_seconds']:.2f} s (RTFx {s['rtfx'] or 0:.1f})")
    if s.get("errors"):
        print(f"warning: {len(s['errors'])} utterance(s) could not be decoded and have empty hypotheses "
              f"(listed under \"errors\" in {hyps.parent / SUMMARY_NAME}), e.g. {s['errors'][0]['id']}: "
              f"{s['errors'][0]['error']}", file=sys.stderr)
    return 0


def _run_routed(args, options) -> int:
    """decode --adapters: every row with its group's adapter (asr_sft.evaluation.routing)."""
    import json
    from collections import Counter

    from asr_sft.evaluation.decode import SUMMARY_NAME
    from asr_sft.evaluation.routing import RoutingOptions, decode_routed

    adapters = tuple(name_value(item, "--adapters") for item in args.adapters.split(",") if item.strip())
    routing = RoutingOptions(adapters=adapters, route_by=args.route_by, fallback=args.fallback_model,
                             group=args.route_group)
    hyps = decode_routed(args.manifest, args.out, routing, options)
    s = json.loads((hyps.parent / SUMMARY_NAME).read_text(encoding="utf-8"))
    routes = Counter(json.loads(line)["route"] for line in hyps.read_text(encoding="utf-8").splitlines())
    print(f"wrote {hyps}: {s['utterances']} utterances; " + ", ".join(
        f"{route} {n} (with {s['routes'][route]['model']})" for route, n in routes.items()))
    if s["routing"]["groups_without_adapter"]:
        print(f"{args.route_by} values without an adapter, decoded with "
              f"{'the fallback' if args.fallback_model else 'the base model'}: "
              + ", ".join(s["routing"]["groups_without_adapter"]))
    if s.get("errors"):
        print(f"warning: {len(s['errors'])} utterance(s) could not be decoded and have empty hypotheses "
              f"(listed in {hyps.parent / SUMMARY_NAME})", file=sys.stderr)
    return 0


# --- pseudo-label ---------------------------------------------------------------------------------
def _add_pseudo_label(sub) -> None:
    p = sub.add_parser(
        "pseudo-label",
        help="transcribe unlabelled audio with a teacher model and keep the confident transcripts "
             "as a training manifest",
        **parser_kwargs("asr-sft pseudo-label --teacher builtin:whisper-base --manifest "
                         "data/split/train.jsonl --out exp/pseudo --agreement-model builtin:whisper-tiny.en"),
    )
    p.add_argument("--teacher", required=True, help="model folder, hub id or builtin:<name>")
    p.add_argument("--manifest", type=Path, required=True,
                   help="the audio; its text is the hidden true transcript, used only to score the filter")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for pseudo.jsonl, candidates.jsonl, pseudo_label.json")
    p.add_argument("--min-avg-logprob", type=_float_or_none, default=-0.5,
                   help="drop transcripts below this average token log-probability ('none': no check; "
                        "default: -0.5)")
    p.add_argument("--max-compression-ratio", type=_float_or_none, default=2.4,
                   help="drop transcripts that repeat themselves ('none': no check; default: 2.4)")
    p.add_argument("--max-words-per-second", type=_float_or_none, default=5.0,
                   help="drop transcripts with more words than the audio can hold ('none'; default: 5)")
    p.add_argument("--min-words", type=positive_int, default=1, help="(default: 1)")
    p.add_argument("--agreement-model", default=None,
                   help="a second model; drop transcripts it disagrees with (see --min-agreement)")
    p.add_argument("--min-agreement", type=float, default=0.8,
                   help="keep when 1 - WER(teacher -> agreement model) is at least this (default: 0.8)")
    p.add_argument("--normalizer", default="whisper_en",
                   help="for word counts, agreement and WER (default: whisper_en)")
    p.add_argument("--group-by", default="accent", help="report counts per this row field ('' for none)")
    p.add_argument("--no-references", dest="references", action="store_false",
                   help="the manifest's text is a placeholder: report no WER")
    add_decode_flags(p)
    p.set_defaults(func=_run_pseudo_label)


def _float_or_none(text: str) -> float | None:
    return None if text.strip().lower() in ("none", "off", "") else float(text)


def _run_pseudo_label(args) -> int:
    import logging

    from asr_sft.evaluation.pseudo_label import PSEUDO_NAME, REPORT_NAME, PseudoLabelOptions, pseudo_label

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = PseudoLabelOptions(
        min_avg_logprob=args.min_avg_logprob, max_compression_ratio=args.max_compression_ratio,
        max_words_per_second=args.max_words_per_second, min_words=args.min_words,
        agreement_model=args.agreement_model, min_agreement=args.min_agreement, normalizer=args.normalizer,
        group_by=args.group_by, references=args.references)
    r = pseudo_label(args.teacher, args.manifest, args.out, options, decode_options(args, warmup=False))
    print(f"kept {r.kept} of {r.utterances} utterances ({r.kept_seconds / 60:.1f} min of audio); dropped: "
          + (", ".join(f"{k} {n}" for k, n in r.dropped_by.items() if n) or "none"))
    if r.wer_all is not None:
        kept = "n/a" if r.wer_kept is None else f"{100 * r.wer_kept:.2f}%"
        dropped = "n/a" if r.wer_dropped is None else f"{100 * r.wer_dropped:.2f}%"
        print(f"teacher WER against the true transcripts: all {100 * r.wer_all:.2f}%, kept {kept}, dropped {dropped}")
    print(f"wrote {args.out / PSEUDO_NAME if r.kept else '(no pseudo.jsonl: nothing kept)'}, {args.out / REPORT_NAME}")
    return 0


# --- score ----------------------------------------------------------------------------------------
def _add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score a decode output: WER/CER with S/D/I, icefall-style recogs/errs/wer-summary + wer.json",
        **parser_kwargs("asr-sft score --hyps exp/run/decode/test-clean/hyps.jsonl "
                         "--normalizer librispeech --out exp/run/decode/test-clean\n"
                         "  asr-sft score --refs ref.trn --hyps hyp.trn --out exp/score"),
    )
    p.add_argument("--hyps", type=Path, required=True,
                   help="hypotheses: hyps.jsonl (from asr-sft decode), Kaldi text or sclite .trn")
    refs = p.add_mutually_exclusive_group()
    refs.add_argument("--manifest", type=Path, default=None,
                      help="references by id from this manifest")
    refs.add_argument("--refs", type=Path, default=None,
                      help="references by id from an sclite .trn or Kaldi text file (no audio needed; "
                           "speakers from trn ids). Without --manifest or --refs, --hyps must be a hyps.jsonl "
                           "with refs")
    p.add_argument("--normalizer", default="librispeech",
                   help="text normaliser: whisper_en, whisper_en_digits, whisper_basic, librispeech, none "
                        "(default: librispeech, as the training loop's dev WER)")
    p.add_argument("--out", type=Path, required=True, help="folder for the score files")
    p.add_argument("--name", default=None,
                   help="name in file names and the summary (default: the folder of hyps.jsonl, or the "
                        "file's stem)")
    p.set_defaults(func=_run_score)


def _run_score(args) -> int:
    from asr_sft.evaluation.benchmark import score_file_result
    from asr_sft.evaluation.report import summary_line, write_score_files

    name = args.name or (args.hyps.parent.name if args.hyps.name == "hyps.jsonl" else args.hyps.stem) or "test"
    scores, result = score_file_result(args.hyps, name, args.manifest, normalizer=args.normalizer, refs=args.refs)
    write_score_files(args.out, scores, result)
    print(summary_line(name, scores))
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


# --- bench ----------------------------------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="compare systems on test sets: WER with intervals, groups, paired tests, speed, report.md",
        **parser_kwargs("asr-sft bench --system base=exp/base --system tuned=exp/tuned "
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
                   help="whisper_en, whisper_en_digits (spoken digits, phone numbers), whisper_basic, librispeech "
                        "or none (default: whisper_en); raw WER (none) is always reported beside it")
    p.add_argument("--group-by", default="accent,gender,corpus,duration_bucket",
                   help="comma-separated manifest fields to break WER down by ('' for none; default: "
                        "accent,gender,corpus,duration_bucket)")
    p.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--min-speakers", type=int, default=5,
                   help="flag groups with fewer speakers, and resample their utterances, not speakers, for "
                        "intervals and paired tests (default: 5)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    add_decode_flags(p)
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="do not decode a warm-up batch before timing (RTFx then includes start-up costs)")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    import logging

    from asr_sft.evaluation.benchmark import BenchOptions, run_benchmark
    from asr_sft.errors import ScoringError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testsets = dict(name_value(item, "--testset") for item in args.testset)
    if len(testsets) < len(args.testset):
        raise ScoringError("a --testset name is given twice")
    options = BenchOptions(normalizer=args.normalizer, group_by=tuple(f.strip() for f in args.group_by.split(",")
                                                                      if f.strip()),
                           resamples=args.resamples, seed=args.seed, min_speakers=args.min_speakers,
                           plots=args.plots)
    systems = _bench_systems(args.system)
    decoding = None
    if any(s.model for s in systems):
        decoding = decode_options(args, warmup=args.warmup)
    results = run_benchmark(systems, testsets, args.out, options, decoding)
    for r in results.results:
        print(_result_line(r))
    for p in results.paired:
        print(f"{p.testset} {p.system_a} vs {p.system_b}: {p.verdict}")
    for w in results.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"report: {args.out / 'report.md'}; everything: {args.out / 'results.json'}")
    return 0


def _result_line(r) -> str:
    """`testset system: WER x% [low, high] (raw y%), CER z%, RTFx n` for a benchmark SystemResult."""
    import math

    def pct(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{100 * x:.2f}"

    s, i = r.summary, r.interval
    if math.isnan(s.wer):
        return f"{r.testset} {r.system}: no reference words"
    interval = f"[{pct(i.low)}, {pct(i.high)}]" + (" (utterances resampled)" if i.resampling == "utterance" else "")
    rtfx = f", RTFx {r.speed.rtfx:.1f}" if r.speed and r.speed.rtfx else ""
    return (f"{r.testset} {r.system}: WER {pct(s.wer)}% {interval} (raw {pct(r.raw.wer)}%), "
            f"CER {pct(s.cer)}%{rtfx}")


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
        key, path = name_value(item, "--system")
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
    names = list(dict.fromkeys([name_value(i, "--system")[0].partition("@")[0] for i in items]))
    return [System(n, model=models.get(n), hyp_files=tuple(files.get(n, ()))) for n in names]


SUBCOMMANDS = [_add_decode, _add_score, _add_bench, _add_pseudo_label]
