"""Stage 5 of recipes/librispeech/run.sh: write <exp>/report.md from the files the earlier stages left.

    python recipes/librispeech/report.py --exp exp/librispeech --model facebook/wav2vec2-base \
        --test-splits test-clean,test-other [--override section.key=value]...

Reads <exp>/train (resolved config, latest and best checkpoints), <exp>/decode/<split>/wer.json and
the stage markers' wall times; every number in the report comes from one of those files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

from asr_sft.training import checkpoint as ckpt
from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest
from asr_sft.errors import ScoringError
from asr_sft.evaluation.results import ScoreResult
from asr_sft.evaluation.scoring import Summary

# wav2vec 2.0 paper (Baevski et al. 2020), Table 1: BASE fine-tuned on 100 h labelled, no LM.
PUBLISHED_WER = {"test-clean": 6.1, "test-other": 13.3}
PUBLISHED_MODEL = "facebook/wav2vec2-base"
PUBLISHED_STEPS = 80_000  # fairseq base_100h.yaml max_update
STAGES = ("download", "prepare", "train", "decode", "report")


def read_wer(path: Path) -> Summary:
    """The summary of an `asr-sft score` wer.json."""
    try:
        return ScoreResult.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path)).summary
    except (OSError, json.JSONDecodeError, ScoringError) as err:
        raise SystemExit(f"{path}: not a wer.json of asr-sft score ({err})") from None


def stage_seconds(exp: Path) -> dict[str, float]:
    """{stage name: wall seconds} from the .stageN.NAME.done markers (recipes/stages.sh writes 'seconds S' first)."""
    times = {}
    for marker in sorted(exp.glob(".stage*.done")):
        name = marker.name.split(".")[2]
        lines = marker.read_text(encoding="utf-8").splitlines()
        words = lines[0].split() if lines else []
        if len(words) == 2 and words[0] == "seconds":
            times[name] = float(words[1])
    return times


def train_set_seconds(config: dict) -> float:
    rows = read_manifest(config["data"]["train_manifest"], check_audio=False)
    return sum(r["duration"] for r in rows)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def percent(rate: float) -> str:
    return "n/a" if rate is None or not math.isfinite(rate) else f"{100 * rate:.2f}"


def training_section(train_dir: Path, config: dict, times: dict) -> list[str]:
    latest, best = ckpt.read_pointer(train_dir, "latest"), ckpt.read_pointer(train_dir, "best")
    if latest is None or best is None:
        raise SystemExit(f"{train_dir}: no complete latest/best checkpoint; did stage 3 finish?")
    state = ckpt.load_trainer_state(latest)["state"]
    best_metrics = ckpt.read_metrics(best)
    train_s = times.get("train")
    audio = state["audio_seconds"]
    lines = [
        "## Training",
        "",
        f"- steps: {state['step']} of train.max_steps={config['train']['max_steps']} "
        f"({config['optim']['grad_accum']} micro-batch(es) of <= {config['data']['max_batch_seconds']:g} "
        "padded seconds per step)",
        f"- audio trained on: {hours(audio)} (real, unpadded; this process), "
        f"{audio / train_set_seconds(config):.1f} passes over the training manifest",
        f"- best checkpoint: `{best}` (dev WER {percent(best_metrics.get('dev_wer'))}%, "
        f"CER {percent(best_metrics.get('dev_cer'))}% on {best_metrics.get('dev_utterances')} dev "
        f"utterances, normaliser {best_metrics.get('normalizer')})",
        f"- steps skipped for a non-finite gradient: {state['nonfinite_steps']}; utterances too short "
        f"for their labels: {state['counts'].get('infeasible_utterances', 0)}",
    ]
    if train_s:
        lines.append(f"- training wall time: {hours(train_s)} ({audio / train_s:.1f} audio-seconds per "
                     "second, evaluations and checkpoints included)")
    return lines + [""]


def results_section(exp: Path, tests: list[str]) -> list[str]:
    lines = ["## Results (greedy CTC decoding, no language model)", "",
             "| test set | WER % | published WER % | CER % | utterances | ref words | S | D | I | normaliser |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for split in tests:
        s = read_wer(exp / "decode" / split / "wer.json")
        published = PUBLISHED_WER.get(split)
        lines.append(f"| {split} | {percent(s.wer)} | {published if published is not None else '-'} | "
                     f"{percent(s.cer)} | {s.utterances} | {s.ref_words} | {s.substitutions} | "
                     f"{s.deletions} | {s.insertions} | {s.normalizer} |")
    lines += ["", "Published: wav2vec 2.0 BASE fine-tuned on 100 h of labelled LibriSpeech, no LM "
              "(Baevski et al. 2020, Table 1; fairseq `base_100h.yaml`, 80k updates of 1,600 s on 8 GPUs, "
              "tri-stage lr schedule). Per-utterance alignments: `decode/<split>/errs-*`, "
              "`recogs-*`, `wer-summary-*`.", ""]
    return lines


def comparability(model: str, config: dict) -> list[str]:
    notes = []
    if model != PUBLISHED_MODEL:
        notes.append(f"the model is `{model}`, not `{PUBLISHED_MODEL}`")
    if config["train"]["max_steps"] != PUBLISHED_STEPS:
        notes.append(f"train.max_steps={config['train']['max_steps']}, not the published "
                     f"{PUBLISHED_STEPS}")
    if not notes:
        return []
    return ["**Not comparable with the published numbers:** " + "; ".join(notes) + ".", ""]


def render(exp: Path, model: str, conf: str, tests: list[str], overrides: list[str]) -> str:
    train_dir = exp / "train"
    config_path = train_dir / "train_config.json"
    if not config_path.is_file():
        raise SystemExit(f"{config_path}: missing; did stage 3 (train) run?")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    times = stage_seconds(exp)
    lines = [
        "# LibriSpeech 100 h fine-tuning report", "",
        f"- model: `{model}` (new character vocabulary and CTC head)",
        f"- config: `{conf}`" + (f" with overrides `{' '.join(overrides)}`" if overrides else ""),
        f"- written: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}", "",
        *comparability(model, config),
        *results_section(exp, tests),
        *training_section(train_dir, config, times),
        "## Wall time per stage", "",
        "| stage | time |", "|---|---|",
        *[f"| {name} | {hours(times[name])} |" for name in STAGES if name in times],
        "",
        "## Resolved config", "",
        f"From `{config_path}` (also saved inside every checkpoint).", "",
        "```json", json.dumps(config, indent=2), "```", "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--model", required=True, help="what stage 3 fine-tuned (for the report)")
    parser.add_argument("--conf", default="recipes/librispeech/conf/wav2vec2_base_100h.toml")
    parser.add_argument("--test-splits", default="test-clean,test-other")
    parser.add_argument("--override", action="append", default=[], help="as given to run.sh")
    args = parser.parse_args(argv)
    tests = [t for t in args.test_splits.split(",") if t]
    text = render(args.exp, args.model, args.conf, tests, args.override)
    write_text_atomic(args.exp / "report.md", text)
    print(f"wrote {args.exp / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
