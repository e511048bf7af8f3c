"""Print a demo's before/after table from a benchmark's results.json (systems `base` and
`adapted`), and whether its expectations hold:
  - target accent: WER falls by at least --min-target-gain (relative);
  - source accent (optional): WER rises by no more than --max-source-loss (relative);
  - real speech (optional, the forgetting check): WER rises by no more than --max-real-rise
    points (absolute) and the paired test finds no significant difference.

  python recipes/demo/before_after.py exp/demo/bench/results.json --target scottish \
      --source american --real real --min-target-gain 0.6 --max-real-rise 1.0
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from asr_sft.evaluation.results import BenchmarkResults

MIN_TARGET_GAIN = 0.25  # default: relative WER reduction expected on the accent adapted to
MAX_SOURCE_LOSS = 0.10  # default: relative WER increase tolerated on the accent the base model knew
MAX_REAL_RISE = 1.0  # default: WER points (absolute) tolerated on real human speech
SIGNIFICANCE = 0.05  # a paired p-value below this is a significant difference


def load(path: Path) -> BenchmarkResults:
    return BenchmarkResults.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path))


def relative(before: float, after: float) -> float:
    return (after - before) / before if before else float("nan")


def compare(testset: str, results: BenchmarkResults) -> dict:
    """WERs of base and adapted on a test set, the adapted interval and the paired p-value."""
    base, adapted = results.result(testset, "base"), results.result(testset, "adapted")
    pair = results.pair(testset, "base", "adapted")
    return {"base": base.summary.wer, "adapted": adapted.summary.wer, "interval": adapted.interval,
            "p": math.nan if pair is None else pair.test.p_value}


def row(name: str, testset: str, c: dict) -> str:
    low, high = c["interval"].low, c["interval"].high
    ci = "[n/a]" if math.isnan(low) else f"[{low:.1%}, {high:.1%}]"
    if c["interval"].resampling == "utterance":
        ci += " (utterances resampled)"
    p = "p=n/a" if math.isnan(c["p"]) else f"p={c['p']:.3f}"
    return (f"| {name} ({testset}) | {c['base']:.1%} | {c['adapted']:.1%} {ci} | "
            f"{relative(c['base'], c['adapted']):+.0%} | {100 * (c['adapted'] - c['base']):+.1f} | {p} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--target", required=True, help="test set of the accent adapted to")
    parser.add_argument("--source", help="test set of the base model's accent")
    parser.add_argument("--real", help="test set of real human speech (the forgetting check)")
    parser.add_argument("--min-target-gain", type=float, default=MIN_TARGET_GAIN)
    parser.add_argument("--max-source-loss", type=float, default=MAX_SOURCE_LOSS)
    parser.add_argument("--max-real-rise", type=float, default=MAX_REAL_RISE, help="WER points")
    args = parser.parse_args()
    results = load(args.results)
    sets = [("target accent", args.target), ("source accent", args.source), ("real speech", args.real)]
    found = {name: compare(testset, results) for name, testset in sets if testset}
    print("\n| held-out test set | base WER | adapted WER [95% CI] | relative change | points | paired test |")
    print("|---|---|---|---|---|---|")
    for name, testset in sets:
        if testset:
            print(row(name, testset, found[name]))
    print()
    target = found["target accent"]
    change = relative(target["base"], target["adapted"])
    print(f"target accent: WER {'fell' if change < 0 else 'rose'} by {abs(change):.0%} (expected a fall of "
          f">= {args.min_target_gain:.0%}): {'met' if change <= -args.min_target_gain else 'NOT met'}")
    if "source accent" in found:
        c = found["source accent"]
        change = relative(c["base"], c["adapted"])
        print(f"source accent: WER changed by {change:+.0%} (expected a rise of <= {args.max_source_loss:.0%}): "
              f"{'met' if change <= args.max_source_loss else 'NOT met'}")
    if "real speech" in found:
        c = found["real speech"]
        rise = 100 * (c["adapted"] - c["base"])
        significant = not math.isnan(c["p"]) and c["p"] < SIGNIFICANCE and rise > 0
        ok = rise <= args.max_real_rise and not significant
        print(f"real speech: WER changed by {rise:+.1f} points (expected a rise of <= {args.max_real_rise:g} "
              f"points, not significant; p={c['p']:.3f}): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
