"""Stage 5 of recipes/synthetic_pretrain: write the best checkpoint as the package's built-in base
model (fp16 safetensors + processor + model card).

  python recipes/synthetic_pretrain/export.py --exp exp/synthetic_pretrain --data data/pretrain \
      --out asr_sft/assets/base_model
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from asr_sft.training.checkpoint import read_pointer
from asr_sft.data.manifest import read_manifest
from asr_sft.atomic import staged_dir
from asr_sft.models.ctc import load_ctc_model


def corpus_facts(data: Path) -> dict:
    facts = {}
    for split in ("train", "dev", "test"):
        rows = read_manifest(data / "synth" / "manifests" / f"{split}.jsonl", check_audio=False)
        facts[split] = {"utterances": len(rows), "speakers": len({r["speaker"] for r in rows}),
                        "hours": round(sum(r["duration"] for r in rows) / 3600, 3),
                        "distinct_sentences": len({r["text"] for r in rows})}
    return facts


def training_facts(train_dir: Path) -> dict:
    log = [json.loads(line) for line in (train_dir / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "dev_wer" in r]
    steps = max(r["step"] for r in log)
    latest, best = read_pointer(train_dir, "latest"), read_pointer(train_dir, "best")
    start = (train_dir / "train_config.json").stat().st_mtime
    return {"steps": steps, "best_checkpoint": best.name,
            "wall_minutes": round((latest.stat().st_mtime - start) / 60, 1),
            "dev_curve": [(r["step"], round(r["dev_wer"], 4), round(r["dev_cer"], 4)) for r in evals],
            "config": json.loads((best / "train_config.json").read_text())}


def write_card(out: Path, corpus: dict, training: dict, test: dict, params: int) -> None:
    curve = "\n".join(f"| {s} | {w:.1%} | {c:.1%} |" for s, w, c in training["dev_curve"])
    text = f"""# builtin:wav2vec2-small-en-us

A small wav2vec2 CTC model ({params / 1e6:.1f} M parameters, character vocabulary) trained **from
scratch** on synthetic American English speech (espeak-ng `en-us`), shipped inside asr_sft so that
the demo and tests can fine-tune a real pretrained model offline. Load it with
`load_ctc_model("builtin:wav2vec2-small-en-us")` or `model.name_or_path = "builtin:wav2vec2-small-en-us"`.

It is not a speech recogniser for human speech: it has only ever heard a formant synthesizer.

## Data
espeak-ng en-us, voices drawn from variants m1..m7/f1..f5 x speaking rate x pitch
(`asr-sft synth --accents en-us --speakers-per-accent 60 --utterances-per-speaker 100
--splits train=52,dev=4,test=4 --seed 1`). Text: the package's sentence generator
(`asr_sft/sentences.py`, written for this project, Apache-2.0), seed 1, first 6,000 sentences, all
distinct, none shared between splits.

| split | speakers | utterances | hours | distinct sentences |
|---|---|---|---|---|
""" + "\n".join(f"| {k} | {v['speakers']} | {v['utterances']} | {v['hours']} | {v['distinct_sentences']} |"
                for k, v in corpus.items()) + f"""

## Training
`bash recipes/synthetic_pretrain/run.sh` (config `recipes/synthetic_pretrain/conf/small_en_us.toml`):
{training['steps']} steps (of {training['config']['train']['max_steps']} planned; the run stops at its
wall-clock budget `train.max_minutes` = {training['config']['train']['max_minutes']:g}, so the learning rate had not
decayed to 0) in {training['wall_minutes']} minutes of wall time on a 2-core CPU
({platform.processor() or platform.machine()}), AdamW lr {training['config']['optim']['lr']},
{training['config']['data']['max_batch_seconds']} padded seconds per step. Best checkpoint by dev WER:
{training['best_checkpoint']}. Exported {datetime.now(timezone.utc):%Y-%m-%d} as fp16 safetensors.

| step | dev WER | dev CER |
|---|---|---|
{curve}

## Held-out test speakers (4 unseen en-us voices, unseen sentences)
WER {test.get('wer', float('nan')):.2%}, CER {test.get('cer', float('nan')):.2%}
(normaliser {test.get('normalizer', '?')}, {test.get('utterances', '?')} utterances).
"""
    (out / "README.md").write_text(text)
    (out / "card.json").write_text(json.dumps(
        {"corpus": corpus, "training": training, "test": test, "parameters": params}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    train_dir = args.exp / "train"
    best = read_pointer(train_dir, "best")
    model, processor = load_ctc_model(best)
    test = json.loads((args.exp / "decode-test" / "wer.json").read_text())
    with staged_dir(args.out, overwrite=True) as tmp:
        model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        write_card(tmp, corpus_facts(args.data), training_facts(train_dir), test,
                   sum(p.numel() for p in model.parameters()))
        for path in tmp.iterdir():  # save_pretrained may leave files private; these are package data
            path.chmod(0o644)
    print(f"exported {best} -> {args.out}")


if __name__ == "__main__":
    main()
