"""Benchmark the scoring core on one CPU core: 100,000 synthetic utterances of ~20 words.

    python bench/bench_scoring.py [--utterances 100000] [--resamples 1000]

Prints wall and CPU seconds for normalise + align + aggregate with each normaliser (no bootstrap),
jiwer 4's process_words on the same text as a baseline, and the bootstrap, group and paired tests
with 1,000 resamples, then checks the targets (CPU seconds on one core): scoring 100,000
utterances <= SCORING_TARGET_S with every normaliser, and 1,000 bootstrap resamples over 100,000
utterances <= BOOTSTRAP_TARGET_S (--check: exit status 1 when one is missed). References are LibriSpeech-style (upper case, no punctuation); hypotheses
are Whisper-style (sentence case, commas, final period) with ~10% word errors, and 5% of each
have numbers ("TWENTY FIVE" vs "25") or contractions ("DON'T" vs "do not"), so that whisper_en
takes its slower paths some of the time, as on real output.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

SCORING_TARGET_S = 5.0  # CPU seconds, one core: normalise + align + aggregate 100,000 utterances
BOOTSTRAP_TARGET_S = 10.0  # CPU seconds, one core: 1,000 resamples over 100,000 utterances
SPEAKERS = 1000
ACCENTS = ("us", "england", "scotland", "india", "nigeria")
NUMBERS = [("TWENTY FIVE", "25"), ("NINETEEN NINETY NINE", "1999"), ("THREE HUNDRED", "300"),
           ("FIRST", "1st")]
CONTRACTIONS = [("DON'T", "do not"), ("IT'S", "it is"), ("I'M", "I am"), ("CAN'T", "can not")]


def synthetic(utterances: int, seed: int = 0):
    """(refs, hyps_a, hyps_b, speakers, accents): system B makes ~20% fewer errors than A."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    vocab = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))).upper()
                    for _ in range(12000)})
    refs, hyps_a, hyps_b, speakers, accents = [], [], [], [], []
    for k in range(utterances):
        words = [rng.choice(vocab) for _ in range(rng.randint(15, 25))]
        extra = rng.random()
        if extra < 0.05:
            spoken, written = rng.choice(NUMBERS)
        elif extra < 0.10:
            spoken, written = rng.choice(CONTRACTIONS)
        else:
            spoken = written = None
        position = rng.randrange(len(words))
        ref = words[:position] + ([spoken] if spoken else []) + words[position:]
        refs.append(" ".join(ref))
        hyps_a.append(_whisper_style(_corrupt(words, rng, 0.10), position, written, rng))
        hyps_b.append(_whisper_style(_corrupt(words, rng, 0.08), position, written, rng))
        speakers.append(f"spk{k % SPEAKERS}")
        accents.append(ACCENTS[(k % SPEAKERS) % len(ACCENTS)])
    return refs, hyps_a, hyps_b, speakers, accents


def _corrupt(words: list[str], rng: random.Random, rate: float) -> list[str]:
    out = []
    for w in words:
        roll = rng.random()
        if roll < rate * 0.6:
            out.append(w[::-1])  # substitution
        elif roll < rate * 0.8:
            continue  # deletion
        elif roll < rate:
            out += [w, "uh" if rng.random() < 0.3 else w[:3]]  # insertion (some fillers)
        else:
            out.append(w)
    return out


def _whisper_style(words: list[str], position: int, written: str | None, rng: random.Random) -> str:
    words = [w.lower() for w in words]
    if written:
        words.insert(min(position, len(words)), written)
    if len(words) > 6:
        words[rng.randrange(2, len(words) - 2)] += ","
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."


def timed(label: str, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<58} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    return result, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    import jiwer
    import numpy as np

    from asr_sft.evaluation import scoring

    from asr_sft.evaluation import text

    refs, hyps_a, hyps_b, speakers, accents = synthetic(args.utterances)
    n_words = sum(len(r.split()) for r in refs)
    from importlib.metadata import version

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"{args.utterances} utterances, {n_words / args.utterances:.1f} reference words each; "
          f"numpy {np.__version__}, jiwer {version('jiwer')}, rapidfuzz {version('rapidfuzz')}, "
          f"transformers {version('transformers')}; one core (affinity {cores})")
    text.normalize_whisper_en("warm up")  # imports transformers (~2 s), not part of scoring
    text.normalize_whisper_basic("warm up")
    fields = {"speaker": speakers, "accent": accents}

    print("\nnormalise + align + aggregate (word and char alignments, summary; no bootstrap)")
    results = {}
    for name in ("none", "librispeech", "whisper_basic", "whisper_en"):
        scores, cpu = timed(f"  asr_sft score_texts, normalizer={name}",
                            lambda: _score(scoring, refs, hyps_a, name, fields))
        results[name] = (scores, cpu)
        s = scores.summary()
        print(f"{'':<60}WER {100 * s.wer:6.2f}%  CER {100 * s.cer:6.2f}%  errors {s.errors}")
    out, jiwer_cpu = timed("  jiwer.process_words (its default transforms only)",
                           lambda: jiwer.process_words(refs, hyps_a))
    print(f"{'':<60}WER {100 * out.wer:6.2f}%")
    print(f"  ratio cpu asr_sft(none) / jiwer = {results['none'][1] / jiwer_cpu:.2f} "
          "(asr_sft also aligns characters for CER)")
    sample = refs[:5000] + hyps_a[:5000]
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    reference = EnglishTextNormalizer(text.load_spellings())
    _, ref_cpu = timed(f"  transformers EnglishTextNormalizer on {len(sample):,} strings",
                       lambda: [reference(t) for t in sample])
    _, ours_cpu = timed(f"  asr_sft whisper_en on the same {len(sample):,} strings",
                        lambda: [text.normalize_whisper_en(t) for t in sample])
    print(f"  whisper_en: {1e6 * ours_cpu / len(sample):.1f} us/string vs transformers "
          f"{1e6 * ref_cpu / len(sample):.1f} us/string")

    scores = results["whisper_en"][0]
    print(f"\nbootstrap, {args.resamples} resamples over {len(scores)} utterances")
    timed(f"  bootstrap_wer, {SPEAKERS} speaker clusters",
          lambda: scoring.bootstrap_wer(scores, resamples=args.resamples, seed=0))
    _, bootstrap_cpu = timed(f"  bootstrap_wer, {len(scores)} utterance clusters (no speakers)",
                             lambda: scoring.bootstrap_wer(scores, resamples=args.resamples, seed=0,
                                                           cluster_field=None))
    timed(f"  group_breakdown by accent ({len(ACCENTS)} groups)",
          lambda: scoring.group_breakdown(scores, "accent", resamples=args.resamples, seed=0))
    timed(f"  group_breakdown by speaker ({SPEAKERS} groups)",
          lambda: scoring.group_breakdown(scores, "speaker", resamples=args.resamples, seed=0))
    scores_b = _score(scoring, refs, hyps_b, "whisper_en", fields)
    test, _ = timed("  paired_bootstrap A vs B, speaker clusters",
                    lambda: scoring.paired_bootstrap(scores, scores_b, resamples=args.resamples, seed=0))
    print(f"{'':<60}delta {100 * test.delta:+.2f} points [{100 * test.low:+.2f}, {100 * test.high:+.2f}] "
          f"p={test.p_value:.4f}")

    # Targets are for 100,000 utterances and 1,000 resamples; other sizes are scaled linearly.
    scale = args.utterances / 100_000
    checks = [(f"score_texts normalizer={name}", cpu, SCORING_TARGET_S * scale) for name, (_, cpu) in results.items()]
    checks.append(("bootstrap, utterance clusters", bootstrap_cpu,
                   BOOTSTRAP_TARGET_S * scale * args.resamples / 1000))
    print("\ntargets (cpu seconds on one core; a busy machine inflates them)")
    missed = 0
    for label, cpu, target in checks:
        missed += cpu > target
        print(f"  {label:<56} {cpu:6.2f} s  <= {target:5.2f} s  {'ok' if cpu <= target else 'MISSED'}")
    if args.check and missed:
        raise SystemExit(1)


def _score(scoring, refs, hyps, normalizer, fields):
    scores = scoring.score_texts(refs, hyps, normalizer=normalizer, fields=fields)
    scores.summary()
    return scores


if __name__ == "__main__":
    main()
