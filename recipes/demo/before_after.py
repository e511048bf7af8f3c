"""Print the demo's before/after table from a benchmark's results.json, and whether the expectation
holds: target-accent WER falls by at least a quarter (relative), source-accent WER rises by no more
than a tenth (relative).

  python recipes/demo/before_after.py exp/demo/bench/results.json --target scottish --source american
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from asr_sft.evaluation.results import BenchmarkResults

MIN_TARGET_GAIN = 0.25  # relative WER reduction expected on the accent adapted to
MAX_SOURCE_LOSS = 0.10  # relative WER increase tolerated on the accent the base model knew


def load(path: Path) -> BenchmarkResults:
    return BenchmarkResults.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path))


def relative(before: float, after: float) -> float:
    return (after - before) / before if before else float("nan")


def row(name: str, testset: str, results: BenchmarkResults) -> tuple[str, float]:
    base, adapted = results.result(testset, "base"), results.result(testset, "adapted")
    b, a = base.summary.wer, adapted.summary.wer
    pair = results.pair(testset, "base", "adapted")
    low, high = adapted.interval.low, adapted.interval.high
    ci = "[n/a]" if math.isnan(low) else f"[{low:.1%}, {high:.1%}]"
    if adapted.interval.resampling == "utterance":
        ci += " (utterances resampled)"
    p = "" if pair is None else "p=n/a" if math.isnan(pair.test.p_value) else f"p={pair.test.p_value:.3f}"
    return (f"| {name} ({testset}) | {b:.1%} | {a:.1%} {ci} | {relative(b, a):+.0%} | {p} |",
            relative(b, a))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--target", required=True, help="test set of the accent adapted to")
    parser.add_argument("--source", required=True, help="test set of the base model's accent")
    args = parser.parse_args()
    results = load(args.results)
    target_line, target_change = row("target accent", args.target, results)
    source_line, source_change = row("source accent", args.source, results)
    print("\n| held-out speakers | base WER | adapted WER [95% CI] | relative change | paired test |")
    print("|---|---|---|---|---|")
    print(target_line)
    print(source_line)
    target_ok = target_change <= -MIN_TARGET_GAIN
    source_ok = source_change <= MAX_SOURCE_LOSS
    print(f"\ntarget accent: WER {'fell' if target_change < 0 else 'rose'} by {abs(target_change):.0%} "
          f"(expected a fall of >= {MIN_TARGET_GAIN:.0%}): {'met' if target_ok else 'NOT met'}")
    print(f"source accent: WER changed by {source_change:+.0%} (expected a rise of <= "
          f"{MAX_SOURCE_LOSS:.0%}): {'met' if source_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
