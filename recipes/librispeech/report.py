"""Stage 5 of recipes/librispeech/run.sh: write <exp>/report.md from the files the earlier stages left.

    python recipes/librispeech/report.py --exp exp/librispeech --test-splits test-clean,test-other \
        [--conf TOML] [--override section.key=value]...

Reads <exp>/train (resolved config: the model; latest and best checkpoints),
<exp>/decode/<split>/wer.json, <exp>/zero_shot/<split>/wer.json (the unadapted model, where stage 4
decoded it) and the stage markers' wall times; every number in the report comes from one of those
files. Published figures are looked up by the model's name (PUBLISHED).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from asr_sft.training import checkpoint as ckpt
from asr_sft.atomic import write_text_atomic
from asr_sft.data.manifest import read_manifest
from asr_sft.errors import ScoringError
from asr_sft.evaluation.results import ScoreResult
from asr_sft.evaluation.scoring import Summary

@dataclass(frozen=True)
class Published:
    model: str  # the model the figures are for
    wer: dict[str, float]  # test split -> WER %
    zero_shot: bool  # the figure is the unadapted model's (compare with the zero-shot column)
    source: str
    steps: int | None = None  # the published fine-tune's updates, when it is one


# Published LibriSpeech WERs by model (REFERENCE.md). wav2vec 2.0: Baevski et al. 2020, Table 1,
# BASE fine-tuned on 100 h labelled, no LM (fairseq base_100h.yaml, max_update 80k). Whisper:
# zero-shot, Open ASR Leaderboard with Whisper's English normaliser.
_W2V = Published("facebook/wav2vec2-base", {"test-clean": 6.1, "test-other": 13.3}, False,
                 "wav2vec 2.0 BASE fine-tuned on 100 h of labelled LibriSpeech, no LM (Baevski et al. "
                 "2020, Table 1; fairseq `base_100h.yaml`, 80k updates of 1,600 s on 8 GPUs, tri-stage lr "
                 "schedule)", steps=80_000)


def _leaderboard(size: str, clean: float, other: float) -> Published:
    return Published(f"openai/whisper-{size}", {"test-clean": clean, "test-other": other}, True,
                     f"Whisper {size} zero-shot, Open ASR Leaderboard, Whisper's English normaliser")


PUBLISHED = {p.model: p for p in (_W2V, _leaderboard("tiny.en", 5.66, 15.45), _leaderboard("base.en", 4.25, 10.35),
                                  _leaderboard("small.en", 3.05, 7.25))}
PUBLISHED["builtin:whisper-tiny.en"] = PUBLISHED["openai/whisper-tiny.en"]  # the same weights, converted
FAMILY_REFERENCE = {"ctc": _W2V}  # another CTC model is compared with wav2vec2-base's figures, and says so


def find_published(model: str, family: str) -> Published | None:
    return PUBLISHED.get(model) or FAMILY_REFERENCE.get(family)
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


def results_section(exp: Path, tests: list[str], published: Published | None, family: str) -> list[str]:
    search = "greedy CTC decoding, no language model" if family == "ctc" else "greedy decoding"
    lines = [f"## Results ({search})", "",
             "| test set | WER % | published WER % | zero-shot WER % | CER % | utterances | ref words | S | D | I "
             "| normaliser |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for split in tests:
        s = read_wer(exp / "decode" / split / "wer.json")
        zero = exp / "zero_shot" / split / "wer.json"
        figure = published.wer.get(split) if published else None
        lines.append(f"| {split} | {percent(s.wer)} | {figure if figure is not None else '-'} | "
                     f"{percent(read_wer(zero).wer) if zero.is_file() else '-'} | "
                     f"{percent(s.cer)} | {s.utterances} | {s.ref_words} | {s.substitutions} | "
                     f"{s.deletions} | {s.insertions} | {s.normalizer} |")
    lines += [""]
    if published:
        lines += [f"Published: {published.source}." + (" Those are the unadapted model's figures: compare them "
                                                       "with the zero-shot column." if published.zero_shot else ""), ""]
    if (exp / "zero_shot").is_dir():
        lines += ["Zero-shot: the unadapted model, decoded and scored here as the fine-tuned one is.", ""]
    lines += ["Per-utterance alignments: `decode/<split>/errs-*`, `recogs-*`, `wer-summary-*`.", ""]
    return lines


def comparability(model: str, config: dict, published: Published | None) -> list[str]:
    if published is None:
        return [f"**No published figures for `{model}`** in this recipe's table.", ""]
    notes = []
    if PUBLISHED.get(model) is not published:
        notes.append(f"the model is `{model}`, not `{published.model}`")
    if not published.zero_shot and config["train"]["max_steps"] != published.steps:
        notes.append(f"train.max_steps={config['train']['max_steps']}, not the published {published.steps}")
    if not notes:
        return []
    return ["**Not comparable with the published numbers:** " + "; ".join(notes) + ".", ""]


def render(exp: Path, conf: str, tests: list[str], overrides: list[str]) -> str:
    train_dir = exp / "train"
    config_path = train_dir / "train_config.json"
    if not config_path.is_file():
        raise SystemExit(f"{config_path}: missing; did stage 3 (train) run?")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model, family = config["model"]["name_or_path"], config["model"]["type"]
    published = find_published(model, family)
    head = ("new character vocabulary and CTC head" if config["model"].get("new_vocab")
            else f"model.type {family}")
    times = stage_seconds(exp)
    lines = [
        "# LibriSpeech 100 h fine-tuning report", "",
        f"- model: `{model}` ({head})",
        f"- config: `{conf}`" + (f" with overrides `{' '.join(overrides)}`" if overrides else ""),
        f"- written: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}", "",
        *comparability(model, config, published),
        *results_section(exp, tests, published, family),
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
    parser.add_argument("--conf", default="recipes/librispeech/conf/wav2vec2_base_100h.toml")
    parser.add_argument("--test-splits", default="test-clean,test-other")
    parser.add_argument("--override", action="append", default=[], help="as given to run.sh")
    args = parser.parse_args(argv)
    tests = [t for t in args.test_splits.split(",") if t]
    text = render(args.exp, args.conf, tests, args.override)
    write_text_atomic(args.exp / "report.md", text)
    print(f"wrote {args.exp / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
